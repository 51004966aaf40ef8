"""The quick-start image (no config) flashed onto a used disk and booted: the console shows
a one-time password, the first login with it must choose a new one, the journal never held
it, and after a reboot the chosen password still works and no new one is shown.

The target file is filled where a used SD card would hold old bytes (boot, slot B, data)
before `osbuilder flash` writes only the image's data: the boot proves that the holes
the file systems rely on read as zeros.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Build
from tests.helpers.image import partitions
from tests.helpers.live_vm import vm

# about 5 min under TCG: in make test-all, so that make test stays under 45 min
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOOT_S = 400
NEW_PASSWORD = "Edge-node 7 chose this"
OTP = re.compile(r"one-time password for user osb:  ([a-z2-9]{4}(?:-[a-z2-9]{4}){3})")


def used_disk(image: Path, dest: Path) -> Path:
    """A 4 GiB disk file with old bytes where the image has partitions."""
    _, parts = partitions(image)
    with dest.open("wb") as f:
        f.truncate(4 << 30)
        for p in parts:  # the first 64 MiB of each: FAT tables, ext4 metadata, slot B
            f.seek(p.start)
            f.write(b"\xa5" * min(p.size, 64 << 20))
    return dest


def test_one_time_password_then_the_chosen_one(qemu_amd64_build: Build, tmp_path: Path
                                               ) -> None:
    disk = used_disk(qemu_amd64_build.image, tmp_path / "disk.img")
    r = subprocess.run([sys.executable, "-m", "osbuilder", "flash",
                        str(qemu_amd64_build.image), str(disk), "--force"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    print("\n" + "\n".join(line for line in r.stderr.splitlines() if "wrote" in line))
    with vm(disk, tmp_path, "first") as v:
        m = v.wait_for(OTP.pattern, BOOT_S)
        otp = m.group(1)
        v.wait_for(r"\S+ login: ", BOOT_S)
        mark = len(v.console())
        v.type("osb\n")
        v.wait_for(r"[Pp]assword: ?", 60, since=mark)
        v.type(f"{otp}\n")
        v.wait_for(r"required to change your password immediately", 120, since=mark)
        v.wait_for(r"[Cc]urrent password: ?", 60, since=mark)
        v.type(f"{otp}\n")
        v.wait_for(r"New password: ?", 60, since=mark)
        v.type(f"{NEW_PASSWORD}\n")
        v.wait_for(r"Retype new password: ?", 60, since=mark)
        v.type(f"{NEW_PASSWORD}\n")
        v.wait_for(r"\w@[\w.-]+:\S*[$#] ", 120, since=mark)
        sudo = f"echo '{NEW_PASSWORD}' | sudo -S -p '' "
        assert v.shell(f"{sudo}journalctl -b --no-pager | grep -c '{otp}'").strip() \
            .endswith("0")
        # the path unit saved the chosen hash on /var; then reboot
        v.shell("sleep 2")
        out = v.shell(f"{sudo}cat /var/lib/osbuilder/local-password.json")
        assert '"one_time": false' in out, out
        v.type(f"{sudo}systemctl reboot\n")
        v.wait_for(r"reboot: Restarting system", 180)
        mark = len(v.console())
        v.wait_for(r"osbuilder-agent: osb: the password chosen at the first login", BOOT_S,
                   since=mark)
        v.wait_for(r"\S+ login: ", BOOT_S, since=mark)
        assert "one-time password" not in v.console()[mark:]
        v.login("osb", NEW_PASSWORD)
        assert "uid=1000(osb)" in v.shell("id")
