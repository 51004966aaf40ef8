"""`osbuilder-agent install` up to the disk: what the live config decides, what is
refused before anything is written, the config the installed node gets, the install
plan the build records. (Writing a disk: tests/e2e/test_iso_install_qemu_amd64.py.)"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuilder.host.boards import load_board
from osbuilder.node.install.installer import install, installed_config
from osbuilder.node.paths import AgentPaths
from osbuilder.shared import live
from osbuilder.shared.errors import OsbError
from osbuilder.shared.install_plan import PATH, InstallPlan
from osbuilder.shared.nodeconfig.source_text import cmdline
from tests.unit.test_agent_boot import FACTS, node

PLAN = InstallPlan(board="qemu-amd64", version="1.0.0", kernel_version="6.12.0-cloud-amd64",
                   efi_arch="x64", boot_mib=256, root_mib=1024, data_mib=128,
                   root_part_type="4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
                   kernel_options="root=PARTLABEL=OSB_ROOT_A ro osb.slot=a")
LIVE = "boot=osblive osb.live=OSB_LIVE osb.slot=live osb.mode=live ro"


def live_node(tmp_path: Path, config: dict[str, Any], cmdline: str = LIVE,
              efi: bool = True) -> AgentPaths:
    paths = node(tmp_path, config, cmdline)
    if efi:
        (paths.root / "sys/firmware/efi").mkdir(parents=True)
    (paths.root / PATH).parent.mkdir(parents=True, exist_ok=True)
    (paths.root / PATH).write_text(PLAN.to_json())
    squashfs = tmp_path / "root.squashfs"
    squashfs.write_bytes(b"hsqs")
    record = paths.root / live.RECORD.lstrip("/")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f"{squashfs}\n")
    return paths


def test_live_boot_without_device_stays_live(tmp_path: Path) -> None:
    paths = live_node(tmp_path, {"k3os": {"password": "pw"}})
    assert install(paths, FACTS, auto=True, reboot=False, inp=io.StringIO("")) == 0


def test_install_mode_without_device_asks(tmp_path: Path) -> None:
    paths = live_node(tmp_path, {}, cmdline=LIVE.replace("osb.mode=live", "osb.mode=install"))
    out = io.StringIO()
    # no answers typed: nothing is installed (the console installer ran and gave up)
    assert install(paths, FACTS, auto=True, reboot=False, inp=io.StringIO(""), out=out) == 1
    assert "osbuilder installer" in out.getvalue()


def test_unconfirmed_device_is_not_written(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    paths = live_node(tmp_path, {"k3os": {"install": {"device": "/dev/osb-none"}}})
    assert install(paths, FACTS, auto=True, reboot=False, inp=io.StringIO("n\n"),
                   out=io.StringIO()) == 1
    assert "not confirmed (set install.silent" in capsys.readouterr().out


def test_refusals_name_the_key(tmp_path: Path) -> None:
    cfg: dict[str, Any] = {"k3os": {"install": {"device": "/dev/osb-none", "silent": True}}}
    paths = live_node(tmp_path / "no-efi", cfg, efi=False)
    with pytest.raises(OsbError, match=r"did not boot through UEFI.*install\.force_efi: true"):
        install(paths, FACTS, auto=True, reboot=False)
    cfg["k3os"]["install"]["force_efi"] = True
    paths = live_node(tmp_path / "force-efi", cfg, efi=False)
    with pytest.raises(OsbError, match=r"install\.device /dev/osb-none: No such file"):
        install(paths, FACTS, auto=True, reboot=False)
    paths = live_node(tmp_path / "file", {"k3os": {"install": {
        "device": str(tmp_path / "file/cmdline"), "silent": True, "force": True}}})
    with pytest.raises(OsbError, match=r"install refused, nothing written:\n  install\.device "
                                       r".*cmdline: not a block device"):
        install(paths, FACTS, auto=True, reboot=False)


def test_not_live_and_bad_config(tmp_path: Path) -> None:
    paths = node(tmp_path / "disk", {"k3os": {"install": {"device": "/dev/vda",
                                                          "silent": True}}}, "osb.slot=a")
    (paths.root / "sys/firmware/efi").mkdir(parents=True)
    (paths.root / PATH).parent.mkdir(parents=True, exist_ok=True)
    (paths.root / PATH).write_text(PLAN.to_json())
    with pytest.raises(OsbError, match="was not booted live"):
        install(paths, FACTS, auto=False, reboot=False)
    paths = live_node(tmp_path / "bad", {"k3os": {"install": {"device": 7}}})
    with pytest.raises(OsbError, match=r"config is invalid, nothing installed: "
                                       r"k3os\.install\.device"):
        install(paths, FACTS, auto=True, reboot=False)


def test_installed_config_drops_install_block() -> None:
    merged: dict[str, Any] = {"hostname": "n",
                              "k3os": {"password": "x", "install": {"device": "/dev/vda"}}}
    text = installed_config(merged)
    assert text.startswith("# written by osbuilder-agent install")
    assert yaml.safe_load(text) == {"hostname": "n", "k3os": {"password": "x"}}
    assert merged["k3os"]["install"] == {"device": "/dev/vda"}, "input left alone"
    assert yaml.safe_load(installed_config({"k3os": {"install": {"device": "x"}}})) == {}


def test_plan_lays_out_the_boards_disk(tmp_path: Path) -> None:
    board = load_board("qemu-amd64")
    built = board.disk_layout("seed")
    assert PLAN.layout("seed") == built
    assert PLAN.min_disk_mib == built.total_mib
    (tmp_path / PATH).parent.mkdir(parents=True)
    (tmp_path / PATH).write_text(PLAN.to_json())
    assert InstallPlan.load(tmp_path) == PLAN
    (tmp_path / PATH).write_text('{"board": "x"}')
    with pytest.raises(OsbError, match="not an install plan of this osbuilder version"):
        InstallPlan.load(tmp_path)
    with pytest.raises(OsbError, match="systemd-boot boards only"):
        InstallPlan.load(tmp_path / "none")


def test_live_cmdline_is_control_not_config() -> None:
    src, control = cmdline(LIVE + " osb.install.device=/dev/sda osb.install.silent=1")
    assert control == {"live": "OSB_LIVE", "slot": "live", "mode": "live"}
    assert src is not None
    assert src.data == {"k3os": {"install": {"device": "/dev/sda", "silent": True}}}


def test_live_kernel_options() -> None:
    opts = live.kernel_options("http://h/x.squashfs", "install", ["ttyS0,115200"], ["quiet"])
    assert opts == ("boot=osblive osb.live=http://h/x.squashfs osb.slot=live "
                    "osb.mode=install ro systemd.gpt_auto=0 "
                    "systemd.wants=osbuilder-install.service console=ttyS0,115200 quiet")
    with pytest.raises(ValueError, match="expected one of live, install"):
        live.kernel_options("OSB_LIVE", "disk", [], [])
