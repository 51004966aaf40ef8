"""`rauc` for unit tests of the node's install path: TEST DOUBLE, never in an image.

`rauc info` is the host's real RAUC (the signature check our code relies on, against the
test fleet's CA). `mount`, `install` and `status` need root, dm-verity and a slot layout
this machine lacks, so the double does what our code relies on them for:
- mount: the bundle's payload files readable under the mount point (real RAUC mounts the
  bundle's squashfs there through dm-verity; the double unpacks it with unsquashfs, so a
  changed byte reaches our own sha256 check instead of an I/O error);
- install: records the call and, like RAUC calling our backend's set-primary, makes the
  inactive slot the next boot with 3 tries (a `osb-b+3.conf` entry of higher priority);
- status mark-*: recorded.
Every call is logged to $RAUC_DOUBLE_DIR/calls.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SCRIPT = r'''#!/usr/bin/python3
import json, os, subprocess, sys
d = os.environ["RAUC_DOUBLE_DIR"]
args = sys.argv[1:]
with open(os.path.join(d, "calls"), "a") as f:
    f.write(json.dumps(args) + "\n")
if args[0] == "info":
    os.execv(REAL, [REAL, "info", "--keyring=" + os.environ["RAUC_DOUBLE_KEYRING"], *args[1:]])
if args[0] == "mount":
    mnt = os.environ["RAUC_DOUBLE_MOUNT"]
    subprocess.run(["rm", "-rf", mnt], check=True)
    os.makedirs(os.path.dirname(mnt), exist_ok=True)
    r = subprocess.run(["unsquashfs", "-no-xattrs", "-d", mnt, args[1]], capture_output=True)
    sys.exit(0 if r.returncode == 0 else 1)
if args[0] == "install":
    entries = os.environ["RAUC_DOUBLE_ENTRIES"]
    with open(os.path.join(entries, "osb-b+3.conf"), "w") as f:
        f.write("title osbuilder new (slot B)\nsort-key osbuilder\nversion 2\n"
                "linux /osb/b/vmlinuz\ninitrd /osb/b/initrd.img\noptions osb.slot=b\n")
    sys.exit(0)
sys.exit(0)
'''


def install_double(bin_dir: Path) -> Path:
    real = shutil.which("rauc")
    assert real, "the host's rauc (make deps) checks the signatures"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "rauc"
    script.write_text(SCRIPT.replace("REAL", repr(os.path.realpath(real))))
    script.chmod(0o755)
    return script
