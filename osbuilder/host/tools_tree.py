"""A cached Debian trixie tree to run the trust chain's build tools in, like mkosi's tools
tree: bookworm (the build host's release) has no ukify and no systemd-measure (systemd
252). Made once with mmdebstrap under <cache>/tools/, keyed by its package list, suite,
mirror and arch; reused by every build that signs.

Commands run chrooted in a private mount namespace: the build's work folder is bound at
/osb/work and the keys folder read-only at /osb/keys, so the private keys are read where
they are and nothing stays mounted (or copied) when the command ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from osbuilder.host.context import BuildContext
from osbuilder.shared.run import output, run

SUITE = "trixie"
# ukify (with systemd-measure from systemd: PCR 11 predictions signed with the PCR key;
# it dlopen()s tss2 to compute the policy digest), sbsign for the PE signatures
PACKAGES = ("systemd-ukify", "systemd", "python3-cryptography", "sbsigntool",
            "libtss2-esys-3.0.2-0t64", "libtss2-rc0t64", "libtss2-mu-4.0.1-0t64")
WORK, KEYS = "/osb/work", "/osb/keys"
# mount, then chroot; the values come as arguments, never into the script text
ENTER = ('set -e; t="$1"; w="$2"; k="$3"; shift 3; '
         'mount -t proc proc "$t/proc"; mount --bind /dev "$t/dev"; '
         'mount --bind "$w" "$t/osb/work"; '
         'if [ -n "$k" ]; then mount --bind "$k" "$t/osb/keys"; '
         'mount -o remount,bind,ro "$t/osb/keys"; fi; '
         'exec chroot "$t" /usr/bin/env -i PATH=/usr/sbin:/usr/bin LC_ALL=C.UTF-8 '
         'SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" TZ=UTC "$@"')


def host_arch() -> str:
    return output(["dpkg", "--print-architecture"]).strip()


def tree_argv(mirror: str, arch: str, out: Path) -> list[str]:
    return ["mmdebstrap", "--variant=apt", "--mode=root", "--format=directory",
            f"--architectures={arch}", f"--include={','.join(PACKAGES)}",
            "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*", SUITE, str(out), mirror]


def ensure(ctx: BuildContext) -> Path:
    """The tools tree for this build's mirror, made now if it is not cached."""
    arch = host_arch()
    argv = tree_argv(ctx.board.mirror, arch, Path("OUT"))
    key = hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:16]
    tree = ctx.options.cache_dir / "tools" / f"{SUITE}-{arch}-{key}"
    if (tree / "usr/bin/ukify").is_file():
        return tree
    ctx.progress.say(f"    tools tree: mmdebstrap {SUITE}/{arch} ({', '.join(PACKAGES)}), once "
                     "per cache")
    part = tree.with_name(tree.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.parent.mkdir(parents=True, exist_ok=True)
    ctx.cleanup.callback(shutil.rmtree, part, True)
    run(tree_argv(ctx.board.mirror, arch, part), env=ctx.env)
    for d in (WORK, KEYS):
        (part / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    os.replace(part, tree)
    return tree


def tools_run(tree: Path, work: Path, keys: Path | None, argv: Sequence[str],
              env: dict[str, str]) -> str:
    """argv inside the tools tree (paths as /osb/work/... and /osb/keys/...); its stdout."""
    proc = run(["unshare", "--mount", "--propagation=private", "--fork", "/bin/sh", "-c",
                ENTER, "osb-tools", tree, work, keys or "", *argv],
               env={"SOURCE_DATE_EPOCH": env.get("SOURCE_DATE_EPOCH", "0")}, capture=True)
    return proc.stdout.decode()
