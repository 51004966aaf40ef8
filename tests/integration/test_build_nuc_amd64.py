"""A real build of nuc-amd64 (Intel NUC): firmware from non-free-firmware, Wi-Fi and
Ethernet drivers, Intel microcode in the initramfs. Slow (large firmware packages), so it
runs in `make test-all`.

k3s is a stand-in (TEST DOUBLE) from a local HTTP fixture, as in tests/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EPOCH, require_build_capability
from tests.helpers.image import fat_read, partitions, squash_list
from tests.helpers.k3s_fixture import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_nuc_image_has_firmware_drivers_and_microcode(
        k3s_server: Served, build_cache: Path, tmp_path: Path) -> None:
    require_build_capability()
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, OSB_K3S_CHANNEL_URL=k3s_server.channel_url,
               OSB_K3S_RELEASE_URL=k3s_server.release_url)
    r = subprocess.run([sys.executable, "-m", "osbuilder", "build", "--board", "nuc-amd64",
                        "--out", str(tmp_path), "--cache-dir", str(build_cache)],
                       env=env, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-4000:]
    img = Path(r.stdout.strip().splitlines()[-1])
    label, parts = partitions(img)
    assert label == "gpt" and parts[1].size == 2048 << 20
    files = squash_list(img, parts[1])

    def has(prefix: str) -> bool:
        return any(f.startswith(prefix) for f in files)

    for fw in ("usr/lib/firmware/iwlwifi-", "usr/lib/firmware/rtl_nic/",
               "usr/lib/firmware/i915/", "usr/lib/firmware/intel-ucode/"):
        assert has(fw), f"no {fw}* in the image"
    mods = [f for f in files if f.startswith("usr/lib/modules/") and ".ko" in f]
    for drv in ("iwlwifi", "e1000e", "igc", "r8169", "nvme"):
        assert any(f"/{drv}.ko" in m for m in mods), f"driver {drv} missing"
    for tool in ("usr/sbin/wpa_supplicant", "usr/sbin/iw"):
        assert tool in files
    # Wi-Fi runs as wpa_supplicant@<iface> (the wifi applier); Debian's D-Bus daemon is not
    # enabled (the preset): neither its wants link nor its D-Bus alias
    assert "usr/lib/systemd/system/wpa_supplicant@.service" in files
    for link in ("etc/systemd/system/multi-user.target.wants/wpa_supplicant.service",
                 "etc/systemd/system/dbus-fi.w1.wpa_supplicant1.service"):
        assert link not in files, link
    initrd = fat_read(img, parts[0], "osb/a/initrd.img")
    assert initrd[:6] == b"070701", "no early (uncompressed) microcode cpio in front"
    assert b"kernel/x86/microcode/GenuineIntel.bin" in initrd[:1 << 22]
