"""rootfs backend `dib`: diskimage-builder builds the root file system (`disk-image-create
-t tar`) from the user's elements; osbuilder's own stages take it from there.

osbuilder adds its element `osbuilder-rootfs` (dib-elements/), passes the board's package
list with `-p` and derives DIB's settings from the board (release, arch, mirror), so a
board behaves the same with either backend. The tarball is cached under
<cache>/rootfs keyed by every input: DIB's version, the argv, the settings and the bytes
of every element folder given. DIB's full output goes to a log under <cache>/dib/logs; a
failure names the element whose hook failed and that log.

DIB needs a loop device even for `-t tar` (it formats and mounts a build file system), and
sudo; the mmdebstrap and tarball backends need neither.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from osbuilder.host.boards import Board, DibSpec
from osbuilder.host.context import BuildContext
from osbuilder.host.settings import DEFAULT_CACHE
from osbuilder.shared.errors import CommandError, OsbError
from osbuilder.shared.run import output, require_tools, run

OSB_ELEMENTS = Path(__file__).resolve().parents[1] / "dib-elements"
OSB_ELEMENT = "osbuilder-rootfs"
TOOL = "disk-image-create"
# `make dib` installs requirements-dib.txt here
DIB_VENV = DEFAULT_CACHE / "dib-venv"
HOST_TOOLS = {"debootstrap": "debootstrap", "sudo": "sudo", "losetup": "mount"}
# DIB logs each hook it starts: "<time> | dib-run-parts Running /tmp/in_target.d/install.d/50-x"
HOOK_OUTPUT_LINES = 20
RUNNING = re.compile(r"dib-run-parts Running (\S+/)?([a-z-]+\.d)/([^/\s]+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class DibRun:
    """One disk-image-create invocation, as data (what the cache key is made of)."""

    argv: tuple[str, ...]  # disk-image-create's arguments, without `-o OUT`
    env: tuple[tuple[str, str], ...]
    element_dirs: tuple[Path, ...]


def find_dib() -> Path:
    found = shutil.which(TOOL)
    if found:
        return Path(found)
    venv_tool = DIB_VENV / "bin" / TOOL
    if venv_tool.is_file():
        return venv_tool
    raise OsbError(f"rootfs backend dib: diskimage-builder's {TOOL} is neither on PATH nor "
                   f"in {DIB_VENV}: run `make dib` (pip-installs requirements-dib.txt there) "
                   "or `pip install diskimage-builder`")


def plan(board: Board, spec: DibSpec) -> DibRun:
    """What to run for board: pure, so the unit tests see exactly what DIB gets."""
    missing = [p for p in spec.element_paths if not p.is_dir()]
    if missing:
        raise OsbError(f"{board.source}: at rootfs.element_paths: no such folder "
                       f"{', '.join(map(str, missing))}")
    if OSB_ELEMENT in spec.elements:
        raise OsbError(f"{board.source}: at rootfs.elements: {OSB_ELEMENT} is added by "
                       "osbuilder; do not list it")
    env = {
        "DIB_RELEASE": board.suite,
        "DIB_DISTRIBUTION_MIRROR": board.mirror,
        "DIB_DEBIAN_COMPONENTS": ",".join(board.components),
        # the same sources as the mmdebstrap backend: the suite alone, from the board's
        # mirror (DIB's default adds -updates and security.debian.org)
        "DIB_APT_SOURCES_CONF": f"default:deb {board.mirror} {board.suite} "
                                + " ".join(board.components),
        **dict(spec.env),
        "DIB_OSBUILDER_KERNEL_PACKAGE": board.kernel.package,
    }
    argv = ("-a", board.arch, "-t", "tar", "-p", ",".join(board.all_packages()),
            *spec.elements, OSB_ELEMENT)
    return DibRun(argv, tuple(sorted(env.items())), (*spec.element_paths, OSB_ELEMENTS))


def tree_digest(folders: Iterable[Path]) -> str:
    """Hash of every file's path, mode and bytes under folders (element hooks change the
    rootfs as much as package lists do)."""
    h = hashlib.sha256()
    for folder in folders:
        h.update(str(folder).encode() + b"\0")
        for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
            h.update(str(path.relative_to(folder)).encode() + b"\0")
            if path.is_symlink():
                h.update(b"link:" + os.readlink(path).encode())
            else:
                h.update(oct(path.stat().st_mode).encode() + path.read_bytes())
    return h.hexdigest()


def cache_key(run_: DibRun, dib_version: str) -> str:
    data = [dib_version, list(run_.argv), run_.env, tree_digest(run_.element_dirs)]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:20]


def failed_hook(log: str) -> tuple[str, str, list[str]] | None:
    """(phase, hook, its first output lines) DIB was running when it stopped: the last
    `dib-run-parts Running` line of the log."""
    found = list(RUNNING.finditer(log))
    if not found:
        return None
    last = found[-1]
    lines = log[last.end():].strip("\n").splitlines()[:HOOK_OUTPUT_LINES]
    return last.group(2), last.group(3), [line.partition(" | ")[2] or line for line in lines]


def element_of(phase: str, hook: str, element_dirs: Iterable[Path]) -> str | None:
    """The element that ships phase/hook, searched in the folders DIB searched."""
    for folder in element_dirs:
        for candidate in sorted(folder.glob(f"*/{phase}/{hook}")):
            return candidate.parent.parent.name
    return None


def explain_failure(log_path: Path, element_dirs: Iterable[Path]) -> str:
    text = log_path.read_text(errors="replace")
    where = failed_hook(text)
    if where is None:
        tail = text.strip().splitlines()[-HOOK_OUTPUT_LINES:]
        return (f"disk-image-create failed before running any element hook; full log: "
                f"{log_path}\n" + "\n".join(tail))
    phase, hook, lines = where
    element = element_of(phase, hook, element_dirs)
    who = f"element {element!r}" if element else "an element"
    return (f"{who} failed in its hook {phase}/{hook}; full log: {log_path}\n"
            "  its output (first lines):\n" + "\n".join(f"    {line}" for line in lines))


def build_dib_tarball(ctx: BuildContext, spec: DibSpec) -> Path:
    """Return the cached rootfs tarball for ctx.board, building it with DIB if needed."""
    tool = find_dib()
    require_tools(HOST_TOOLS)
    run_ = plan(ctx.board, spec)
    version = output([tool, "--version"]).strip()
    builtin = sorted(tool.parent.parent.glob("lib/python3*/site-packages/diskimage_builder/"
                                             "elements"))
    key = cache_key(run_, version)
    cache = ctx.options.cache_dir
    tarball = cache / "rootfs" / f"{ctx.board.name}-dib-{key}.tar"
    if tarball.is_file() and not ctx.options.refresh:
        ctx.progress.say(f"    cached rootfs {tarball.name} (diskimage-builder {version})")
        return tarball
    try:
        loop = output(["losetup", "-f"]).strip()
    except CommandError as exc:
        raise OsbError("rootfs backend dib: no free loop device: diskimage-builder formats "
                       "and mounts its build file system on one even for -t tar (the "
                       f"mmdebstrap and tarball backends need none)\n{exc}") from exc
    logs = cache / "dib" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    out = tarball.with_name(f"{tarball.stem}.part")  # DIB writes OUT.tar and OUT.d/
    made = tarball.with_name(f"{out.name}.tar")
    ctx.cleanup.callback(made.unlink, missing_ok=True)
    ctx.cleanup.callback(shutil.rmtree, tarball.with_name(f"{out.name}.d"), ignore_errors=True)
    log = logs / f"{tarball.stem}.log"
    env = {**ctx.env, **dict(run_.env),
           "ELEMENTS_PATH": ":".join(str(d) for d in run_.element_dirs),
           "DIB_IMAGE_CACHE": str(cache / "dib" / "image-cache"),
           # DIB calls its helpers (dib-run-parts, element-info) by name
           "PATH": f"{tool.parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
    ctx.progress.say(f"    diskimage-builder {version}: {' '.join(spec.elements)} + "
                     f"{OSB_ELEMENT}, {len(ctx.board.all_packages())} packages "
                     f"(build file system on {loop}; log {log})")
    try:
        run([tool, "-o", out, *run_.argv], env=env, log_file=log)
    except CommandError as exc:
        raise OsbError(f"rootfs backend dib: disk-image-create exited {exc.returncode}: "
                       + explain_failure(log, [*run_.element_dirs, *builtin])) from exc
    os.replace(made, tarball)
    return tarball
