"""Stage node-package: install the node side of the osbuilder package (and the shared
core it imports, schemas included) into the image; never the host side (osbuilder.SIDES).

Its dependencies are Debian python3-* packages from the board's package sets, never pip.
Byte-code is compiled here with the image's own python3, because the root is read-only,
as unchecked-hash pycs: the source never changes under a booted slot, so an import need
not read and hash it. Debian's own pycs (compiled by the packages' postinst, as checked-
hash ones because SOURCE_DATE_EPOCH is set) are switched to unchecked the same way. Then
the agent's modules, with the standard library its boot imports, go into one zip that its
entry script puts first on sys.path (osbuilder.host.stages.agent_modules).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import osbuilder
from osbuilder.host.chroot import chroot_run
from osbuilder.host.context import BuildContext
from osbuilder.host.stages import agent_modules

PACKAGE_DIR = Path(osbuilder.__file__).resolve().parent
SITE = agent_modules.DIST_PACKAGES.lstrip("/")  # where the image's python3-* packages live
# PEP 552: the 4-byte flags after the magic number; bit 0 hash-based, bit 1 check source
PYC_CHECKED_HASH = 0b11
PYC_UNCHECKED_HASH = 0b01
NODE_SIDES = ("node", "shared")
# -I (isolated): no script folder (/usr/bin) and no user site on sys.path, no PYTHON*
# variables. An agent that runs as root should not import what lies there, and every
# import at boot then looks in fewer folders (807 stat calls of a first boot's agent).
# -S (no site module; agent_modules.PYTHON_FLAGS says why): the entry adds the one folder
# of site's the agent needs.
# The zip first: the agent's modules and those its boot imports, read as one file
# (osbuilder.host.stages.agent_modules says why).
ENTRY = f"""#!/usr/bin/python3 {agent_modules.PYTHON_FLAGS}
# osbuilder node agent (installed by the osbuilder build, node-package stage)
import sys

sys.path.insert(0, "/{agent_modules.ZIP}")
sys.path.append("{agent_modules.DIST_PACKAGES}")
from osbuilder.node.agent_cli import main

sys.exit(main())
"""


def module_name(rel: Path) -> str:
    """osbuilder.<dotted path> of a file (or folder) relative to the package folder."""
    parts = rel.with_suffix("").parts if rel.suffix == ".py" else rel.parts
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("osbuilder", *parts))


def node_files(package: Path = PACKAGE_DIR) -> list[Path]:
    """The package's files that belong on a node, relative to the package folder: node and
    shared modules, and the data files of their folders (the schemas)."""
    out = []
    for f in sorted(package.rglob("*")):
        rel = f.relative_to(package)
        if not f.is_file() or "__pycache__" in rel.parts or f.suffix == ".pyc":
            continue
        owner = module_name(rel) if f.suffix == ".py" else module_name(rel.parent)
        if osbuilder.side_of(owner) in NODE_SIDES:
            out.append(rel)
    return out


def install_node_package(ctx: BuildContext) -> None:
    dest = ctx.rootfs / SITE / "osbuilder"
    if dest.exists():
        shutil.rmtree(dest)
    for rel in node_files():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PACKAGE_DIR / rel, dest / rel)
    entry = ctx.rootfs / "usr/bin/osbuilder-agent"
    entry.write_text(ENTRY)
    entry.chmod(0o755)
    # a fixed hash seed: marshal writes sets in iteration order (reproducible bytes)
    chroot_run(ctx.rootfs, ["python3", "-m", "compileall", "-q",
                            "--invalidation-mode", "unchecked-hash", f"/{SITE}/osbuilder"],
               env={**ctx.env, "PYTHONHASHSEED": "0"})
    n = unchecked_pycs(ctx.rootfs / "usr/lib")
    ctx.progress.say(f"    {n} checked-hash pycs of the image made unchecked")
    tag, mods = agent_modules.parse_listing(
        chroot_run(ctx.rootfs, ["python3", agent_modules.PYTHON_FLAGS, "-c",
                                agent_modules.LIST_SCRIPT]))
    files = agent_modules.entries(ctx.rootfs, mods, tag)
    agent_modules.write_zip(ctx.rootfs / agent_modules.ZIP, files)
    ctx.progress.say(f"    /{agent_modules.ZIP}: {len(files)} files")


def unchecked_pycs(tree: Path) -> int:
    """Flip every checked-hash pyc under tree to unchecked-hash (the flags word only: the
    source hash and the code stay as compiled); returns how many were flipped."""
    flipped = 0
    for pyc in sorted(tree.glob("python3*/**/__pycache__/*.pyc")):
        with pyc.open("r+b") as f:
            head = f.read(8)
            if len(head) == 8 and int.from_bytes(head[4:8], "little") == PYC_CHECKED_HASH:
                f.seek(4)
                f.write(PYC_UNCHECKED_HASH.to_bytes(4, "little"))
                flipped += 1
    return flipped
