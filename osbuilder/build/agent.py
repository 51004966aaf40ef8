"""Stage agent: install the osbuilder package (pure Python) and its schemas into the image.

Its dependencies are Debian python3-* packages from the board's package sets, never pip.
Byte-code is compiled here with the image's own python3, because the root is read-only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from osbuilder.chroot import chroot_run
from osbuilder.context import BuildContext

PACKAGE_DIR = Path(__file__).resolve().parent.parent
SCHEMA_DIR = PACKAGE_DIR.parent / "config-schema"
SITE = "usr/lib/python3/dist-packages"
ENTRY = """#!/usr/bin/python3
# osbuilder node agent (installed by the osbuilder build, agent stage)
import sys

from osbuilder.agent.cli import main

sys.exit(main())
"""


def install_agent(ctx: BuildContext) -> None:
    dest = ctx.rootfs / SITE / "osbuilder"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(PACKAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    schemas = ctx.rootfs / "usr/share/osbuilder/config-schema"
    schemas.mkdir(parents=True, exist_ok=True)
    for f in sorted(SCHEMA_DIR.glob("*.json")):
        shutil.copyfile(f, schemas / f.name)
    entry = ctx.rootfs / "usr/bin/osbuilder-agent"
    entry.write_text(ENTRY)
    entry.chmod(0o755)
    chroot_run(ctx.rootfs, ["python3", "-m", "compileall", "-q",
                            "--invalidation-mode", "unchecked-hash", f"/{SITE}/osbuilder"],
               env=ctx.env)
