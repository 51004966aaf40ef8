"""The node's install path refuses every bad bundle before RAUC writes a slot: a bundle
signed by another CA (RAUC's signature check, the host's real RAUC), for another board,
older than the running version, or with a payload changed after signing. Each test
fails if its check is taken out of `osbuilder-agent upgrade` (issue 15): the RAUC double
records whether `install` was reached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from osbuilder.host.keys import init_keys
from osbuilder.node.paths import AgentPaths
from osbuilder.node.upgrade.actions import upgrade
from osbuilder.shared.errors import OsbError
from tests.helpers.rauc_double import install_double

pytestmark = pytest.mark.skipif(
    not (shutil.which("rauc") and shutil.which("mksquashfs") and shutil.which("unsquashfs")),
    reason="needs rauc and squashfs-tools on the host (run `make deps`)")

PAYLOAD = os.urandom(1 << 16)  # incompressible: stored as is, so a flipped byte is findable


def bundle(tmp: Path, keys: Path, name: str, version: str = "1.2.0",
           compatible: str = "osbuilder-qemu-amd64") -> Path:
    content = tmp / f"content-{name}"
    content.mkdir()
    (content / "rootfs.img").write_bytes(PAYLOAD)
    (content / "manifest.raucm").write_text(
        f"[update]\ncompatible={compatible}\nversion={version}\n\n[bundle]\nformat=verity\n"
        "\n[image.rootfs]\nfilename=rootfs.img\n")
    out = tmp / name
    subprocess.run(["rauc", "bundle", f"--cert={keys / 'signing.cert.pem'}",
                    f"--key={keys / 'signing.key.pem'}", str(content), str(out)],
                   check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bundles")
    init_keys(tmp / "fleet", "fleet")
    init_keys(tmp / "other", "someone else")
    tampered = bundle(tmp, tmp / "fleet", "tampered.raucb")
    data = bytearray(tampered.read_bytes())
    at = data.index(PAYLOAD[1000:1032]) + 5
    data[at] ^= 0xFF
    tampered.write_bytes(bytes(data))
    return {"ca": tmp / "fleet/ca.cert.pem",
            "good": bundle(tmp, tmp / "fleet", "good.raucb"),
            "foreign": bundle(tmp, tmp / "other", "foreign.raucb"),
            "other-board": bundle(tmp, tmp / "fleet", "pi.raucb",
                                  compatible="osbuilder-rpi-arm64"),
            "older": bundle(tmp, tmp / "fleet", "old.raucb", version="1.0.9"),
            "tampered": tampered}


@pytest.fixture
def node(tmp_path: Path, fleet: dict[str, Path], monkeypatch: pytest.MonkeyPatch
         ) -> AgentPaths:
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text('ID=osbuilder\nIMAGE_VERSION="1.1.0"\n')
    (root / "etc/rauc").mkdir(parents=True)
    (root / "etc/rauc/system.conf").write_text("[system]\ncompatible=osbuilder-qemu-amd64\n")
    esp = tmp_path / "esp"
    (esp / "loader/entries").mkdir(parents=True)
    (esp / "loader/entries/osb-a.conf").write_text(
        "title osbuilder 1.1.0 (slot A)\nsort-key osbuilder\nversion 1\n"
        "linux /osb/a/vmlinuz\ninitrd /osb/a/initrd.img\noptions osb.slot=a\n")
    (tmp_path / "cmdline").write_text("root=PARTLABEL=OSB_ROOT_A ro osb.slot=a rauc.slot=a\n")
    install_double(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("RAUC_DOUBLE_DIR", str(tmp_path))
    monkeypatch.setenv("RAUC_DOUBLE_KEYRING", str(fleet["ca"]))
    monkeypatch.setenv("RAUC_DOUBLE_MOUNT", str(root / "run/rauc/bundle"))
    monkeypatch.setenv("RAUC_DOUBLE_ENTRIES", str(esp / "loader/entries"))
    return AgentPaths(root=root, cmdline=tmp_path / "cmdline", boot_dir=esp,
                      state_dir=root / "var/lib/osbuilder",
                      download_dir=root / "data/osbuilder/upgrade",
                      bootloader_file=tmp_path / "none")


def calls(paths: AgentPaths) -> list[str]:
    log = paths.cmdline.parent / "calls"
    return [json.loads(line)[0] for line in log.read_text().splitlines()] if log.exists() else []


def refused(paths: AgentPaths, bundle: Path, why: str) -> None:
    with pytest.raises(OsbError, match=why):
        upgrade(paths, str(bundle), allow_downgrade=False, do_reboot=False)
    assert "install" not in calls(paths), "a refused bundle reached `rauc install`"
    record = json.loads(paths.upgrade_record.read_text())
    assert record["state"] == "failed"
    assert not (paths.boot_dir / "loader/entries/osb-b+3.conf").exists()


def test_a_good_bundle_is_installed(node: AgentPaths, fleet: dict[str, Path]) -> None:
    assert upgrade(node, str(fleet["good"]), allow_downgrade=False, do_reboot=False) == 0
    assert calls(node) == ["info", "mount", "install"]
    assert json.loads(node.upgrade_record.read_text())["state"] == "rebooting"


def test_signature_of_another_ca_is_refused(node: AgentPaths, fleet: dict[str, Path]) -> None:
    refused(node, fleet["foreign"], r"foreign.raucb: rejected by RAUC")


def test_bundle_for_another_board_is_refused(node: AgentPaths, fleet: dict[str, Path]) -> None:
    refused(node, fleet["other-board"], r"bundle is for 'osbuilder-rpi-arm64'")


def test_older_bundle_is_refused_unless_allowed(node: AgentPaths,
                                                fleet: dict[str, Path]) -> None:
    refused(node, fleet["older"], r"older than the running 1.1.0: refusing a downgrade")
    assert upgrade(node, str(fleet["older"]), allow_downgrade=True, do_reboot=False) == 0


def test_payload_changed_after_signing_is_refused(node: AgentPaths,
                                                  fleet: dict[str, Path]) -> None:
    refused(node, fleet["tampered"], r"rootfs.img does not match its signed sha256")
