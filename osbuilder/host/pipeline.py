"""The build driver: checks before any work, then the stages (osbuilder.host.stages) in a
private temp dir inside the output dir; only a finished build is moved into place."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from osbuilder.host.binfmt import ensure_binfmt
from osbuilder.host.boards import Board
from osbuilder.host.checksums import update_sums
from osbuilder.host.context import Artifact, BuildContext
from osbuilder.host.download import sha256_file
from osbuilder.host.formats import FORMATS, check_formats
from osbuilder.host.progress import Progress
from osbuilder.host.settings import BuildOptions
from osbuilder.host.stages import FINAL_STAGES, FORMAT_STAGES, ROOT_STAGES, STAGES
from osbuilder.host.trust_plan import TrustPlan, plan_trust
from osbuilder.shared.errors import CommandError, OsbError
from osbuilder.shared.run import require_tools

HOST_TOOLS = {
    "mmdebstrap": "mmdebstrap", "mksquashfs": "squashfs-tools", "mkfs.vfat": "dosfstools",
    "mcopy": "mtools", "mkfs.ext4": "e2fsprogs", "sfdisk": "fdisk", "unshare": "util-linux",
    "dpkg-query": "dpkg", "zstd": "zstd", "tar": "tar", "dd": "coreutils",
    "qemu-img": "qemu-utils",
}
MIN_FREE_BYTES = 4 << 30


def preflight(board: Board, options: BuildOptions) -> TrustPlan:
    check_formats(board, options.formats)  # before the output folder exists
    trust = plan_trust(board, options)  # keys that do not chain stop the build here
    require_tools(HOST_TOOLS)
    if trust.verity:
        require_tools({"veritysetup": "cryptsetup-bin"})
    for f in options.formats:
        require_tools(FORMATS[f].tools)
    if options.sign_key is not None:
        require_tools({"rauc": "rauc"})
    if os.geteuid() != 0:
        raise OsbError("osbuilder build must run as root (mmdebstrap --mode=root, chroot); "
                       "try: sudo make image")
    out = options.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OsbError(f"--out {out}: cannot create the output directory: {exc.strerror}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise OsbError(f"--out {out}: output directory is not writable")
    free = shutil.disk_usage(out).free
    if free < MIN_FREE_BYTES:
        raise OsbError(f"--out {out}: only {free >> 20} MiB free, a build needs "
                       f"{MIN_FREE_BYTES >> 20} MiB")
    return trust


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [p for p in points if p.startswith(prefix)]


def remove_work(work: Path) -> None:
    busy = mounts_under(work)
    if busy:  # never delete through a mount point (it could be the host's /dev)
        raise OsbError(f"not removing {work}: still mounted: {', '.join(busy)}")
    shutil.rmtree(work, ignore_errors=True)


def run_build(board: Board, options: BuildOptions, progress: Progress) -> list[Artifact]:
    trust = preflight(board, options)
    for note in trust.notes:
        progress.say(f"note: {note}")
    emulation = ensure_binfmt(board.arch)
    if emulation:
        progress.say(f"{board.arch} on this host through qemu-user: {emulation}")
    work = Path(tempfile.mkdtemp(prefix=f".osbuilder-{board.name}-", dir=options.out_dir))
    ctx = BuildContext(board=board, options=options, work=work, progress=progress,
                       trust=trust)
    stages = (STAGES + [(f"format {f}", FORMAT_STAGES[f]) for f in options.formats]
              + FINAL_STAGES)
    try:
        with ctx.cleanup:
            for i, (name, stage) in enumerate(stages, 1):
                with progress.stage(name, i, len(stages)):
                    if ctx.root_cached and name in ROOT_STAGES:
                        progress.say("    in the cached root")
                    else:
                        stage(ctx)
            final = []
            manifest = work / f"{ctx.basename}.manifest.json"
            for art in [*ctx.artifacts, Artifact("manifest", manifest)]:
                dest = options.out_dir / art.path.name
                os.replace(art.path, dest)
                final.append(Artifact(art.kind, dest, art.sha256 or sha256_file(dest)))
            update_sums(options.out_dir, {a.path.name: a.sha256 for a in final})
            return final
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OsbError(f"no space left on device while building in {work}") from exc
        raise
    except CommandError as exc:
        if "No space left on device" in exc.stderr_tail:
            raise OsbError(f"no space left on device while building in {work}:\n{exc}") from exc
        raise
    finally:
        remove_work(work)
