"""Parsing behind `osbuilder-agent status`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuilder.node.paths import AgentPaths
from osbuilder.node.status import MountFact, Status, find_mount
from osbuilder.node.sysinfo import cmdline_args, os_release
from osbuilder.node.upgrade import slot_report as report
from osbuilder.shared.file_writes import write_json

MOUNTINFO = """\
22 1 254:2 / / ro,relatime shared:1 - squashfs /dev/vda2 ro,errors=continue
25 22 254:4 / /data rw,noatime shared:5 - ext4 /dev/vda4 rw
26 22 0:30 / /var rw,relatime shared:6 - overlay osb-var rw,lowerdir=/var,upperdir=/data/var
27 22 0:31 / /etc rw,relatime shared:7 - overlay osb-etc rw,lowerdir=/etc
"""


def test_find_mount() -> None:
    assert find_mount(MOUNTINFO, "/") == MountFact("/dev/vda2", "squashfs", True)
    assert find_mount(MOUNTINFO, "/data") == MountFact("/dev/vda4", "ext4", False)
    assert find_mount(MOUNTINFO, "/var") == MountFact("osb-var", "overlay", False)
    assert find_mount(MOUNTINFO, "/nope") is None


def test_cmdline_and_os_release() -> None:
    args = cmdline_args("root=PARTLABEL=OSB_ROOT_A ro osb.slot=a console=ttyS0,115200")
    assert args["osb.slot"] == "a" and args["root"] == "PARTLABEL=OSB_ROOT_A" and "ro" in args
    rel = os_release('# c\nIMAGE_VERSION="1.2.3"\nVARIANT_ID=qemu-amd64\n')
    assert rel == {"IMAGE_VERSION": "1.2.3", "VARIANT_ID": "qemu-amd64"}


def test_oneline() -> None:
    s = Status("a", "1.0", "qemu-amd64", MountFact("/dev/vda2", "squashfs", True),
               None, None, 2**30, 4 * 2**30)
    line = s.oneline()
    assert line.startswith("osbuilder-agent: status slot=a version=1.0 board=qemu-amd64")
    assert "root=/dev/vda2:squashfs:ro data=- data_fs=- data_part=1.00GiB disk=4.00GiB" in line


def test_json_keeps_mounts_and_upgrade_facts_as_objects(tmp_path: Path) -> None:
    """`status --json`: each field by name, a mount and the upgrade facts as objects (as
    dataclasses.asdict gave them when these were dataclasses), tuples as lists."""
    paths = AgentPaths(boot_dir=tmp_path / "esp", state_dir=tmp_path / "state")
    (paths.boot_dir / "loader/entries").mkdir(parents=True)
    (paths.boot_dir / "loader/entries/osb-a.conf").write_text("title osbuilder 1.0 (slot A)\n")
    s = Status("a", "1.0", "qemu-amd64", MountFact("/dev/vda2", "squashfs", True), None,
               None, None, None, sources=("cmdline",), upgrade=report.gather(paths, "a"))
    out = json.loads(json.dumps(s.as_dict()))
    assert list(out) == list(Status._fields)
    assert out["root"] == {"source": "/dev/vda2", "fstype": "squashfs", "read_only": True}
    assert out["data"] is None and out["sources"] == ["cmdline"]
    assert out["upgrade"]["slots"][0] == {"slot": "a", "version": "1.0", "state": "good",
                                          "tries_left": None}


def test_text_reports_both_slots_and_the_last_upgrade(tmp_path: Path) -> None:
    paths = AgentPaths(boot_dir=tmp_path / "esp", state_dir=tmp_path / "state")
    entries = paths.boot_dir / "loader/entries"
    entries.mkdir(parents=True)
    (entries / "osb-a.conf").write_text("title osbuilder 1.1.0 (slot A)\nversion 3\n")
    (entries / "osb-b+0-3.conf").write_text("title osbuilder 1.2.0 (slot B)\nversion 2\n")
    write_json(paths.upgrade_record, {"state": "failed", "to_version": "1.2.0",
                                      "error": "health gate: node n1 Ready=False"})
    facts = report.gather(paths, "a")
    s = Status("a", "1.1.0", "qemu-amd64", None, None, None, None, None, upgrade=facts)
    text = s.text()
    assert "slot a:    1.1.0 good (booted) (next boot)" in text
    assert "slot b:    1.2.0 bad, 0 tries left" in text
    (entries / "osb-b+0-3.conf").rename(entries / "osb-b+1-2.conf")
    text = Status("a", "1.1.0", "qemu-amd64", None, None, None, None, None,
                  upgrade=report.gather(paths, "a")).text()
    assert "slot b:    1.2.0 trial, 1 tries left" in text
    assert "upgrade:   failed to 1.2.0: health gate: node n1 Ready=False" in text


def test_unreadable_esp_leaves_the_upgrade_part_out(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`status` also runs as an ordinary user, who may not read the 0700 ESP."""
    paths = AgentPaths(boot_dir=tmp_path / "esp", state_dir=tmp_path / "state")

    def denied(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "is_dir", denied)
    assert report.gather(paths, "a") is None


def test_text_says_who_judged_the_config() -> None:
    s = Status("a", "1.0", "qemu-amd64", None, None, None, None, None, result="applied",
               sources=("/boot/efi/config.yaml",), judged_by="build")
    assert "config:    applied from /boot/efi/config.yaml (judged by build)" in s.text()
