"""The machine-id saved on data once (osbuilder/node/machine_id.py), as the unit it
replaces did: cp /etc/machine-id /data/etc/machine-id when none is saved yet."""

from __future__ import annotations

from pathlib import Path

from osbuilder.node.machine_id import save_machine_id

ID = "0123456789abcdef0123456789abcdef\n"


def node(tmp_path: Path, etc_id: str) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "etc/machine-id").write_text(etc_id)
    return tmp_path


def test_first_boot_saves_the_generated_id(tmp_path: Path) -> None:
    root = node(tmp_path, ID)
    assert save_machine_id(root, is_mount=lambda p: True)
    saved = root / "data/etc/machine-id"
    assert saved.read_text() == ID
    assert saved.stat().st_mode & 0o777 == 0o444


def test_a_saved_id_is_never_replaced(tmp_path: Path) -> None:
    root = node(tmp_path, ID)
    (root / "data/etc").mkdir()
    (root / "data/etc/machine-id").write_text("f" * 32 + "\n")
    assert not save_machine_id(root, is_mount=lambda p: True)
    assert (root / "data/etc/machine-id").read_text() == "f" * 32 + "\n"


def test_nothing_without_data_mounted_or_without_an_id(tmp_path: Path) -> None:
    root = node(tmp_path, ID)
    assert not save_machine_id(root, is_mount=lambda p: False)  # the live installer
    (root / "etc/machine-id").write_text("uninitialized\n")
    assert not save_machine_id(root, is_mount=lambda p: True)
    (root / "etc/machine-id").write_bytes(b"\xff" * 32)  # torn: no traceback either
    assert not save_machine_id(root, is_mount=lambda p: True)
    assert not (root / "data/etc/machine-id").exists()
