"""The live boot's initramfs scripts as the overlay renders them: valid sh, and the names
the agent and the formats rely on."""

from __future__ import annotations

import subprocess
from pathlib import Path

from osbuilder.host.stages.overlay import OVERLAYS_DIR, apply_layer
from osbuilder.shared import live
from tests.unit.test_overlay import variables

SCRIPTS = ("etc/initramfs-tools/scripts/osblive",
           "etc/initramfs-tools/scripts/local-bottom/osbuilder",
           "etc/initramfs-tools/hooks/osbuilder")


def test_live_scripts_render_to_valid_sh(tmp_path: Path) -> None:
    apply_layer(OVERLAYS_DIR / "common", tmp_path, variables())
    for rel in SCRIPTS:
        r = subprocess.run(["sh", "-n", str(tmp_path / rel)], capture_output=True, text=True)
        assert r.returncode == 0, f"{rel}: {r.stderr}"
    osblive = (tmp_path / SCRIPTS[0]).read_text()
    assert "osb_live_medium OSB_LIVE" in osblive
    assert f"mount -t iso9660 -o ro \"$dev\" {live.MEDIUM_DIR}" in osblive
    assert f"squashfs={live.MEDIUM_DIR}/{live.SQUASHFS_ON_MEDIUM}" in osblive
    assert f"squashfs={live.RAM_DIR}/root.squashfs" in osblive
    assert f'echo "$squashfs" >{live.RECORD}' in osblive
    bottom = (tmp_path / SCRIPTS[1]).read_text()
    assert bottom.count('[ "$slot" = live ]') == 3
    conf = (tmp_path / "etc/initramfs-tools/conf.d/osbuilder.conf").read_text()
    assert "BUSYBOX=n" in conf
    hook = (tmp_path / "etc/initramfs-tools/hooks/osbuilder").read_text()
    assert "manual_add_modules loop isofs sr_mod\n" in hook
    assert "virtio_net" in hook  # qemu-amd64's network driver: PXE fetches the root
    unit = (tmp_path / "usr/lib/systemd/system/osbuilder-install.service").read_text()
    assert "ConditionKernelCommandLine=osb.slot=live" in unit
    assert "ExecStart=/usr/bin/osbuilder-agent install --auto" in unit
