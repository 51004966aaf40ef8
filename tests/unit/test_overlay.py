"""jinja2 overlay rendering and layering."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from osbuilder import live
from osbuilder.boards import load_board
from osbuilder.build.overlay import OVERLAYS_DIR, apply_layer, render
from osbuilder.errors import OsbError


def variables(board: str = "qemu-amd64") -> dict[str, Any]:
    return {
        "board": load_board(board),
        "image": {"version": "1.2.3", "build_id": "1700000000", "kernel_version": "6.12"},
        "labels": {"boot": "OSB_BOOT", "data": "OSB_DATA", "root_a": "OSB_ROOT_A",
                   "root_b": "OSB_ROOT_B"},
        "persistent": ("rancher",),
        "live": live.template_vars(),
    }


def test_undefined_variable_is_an_error() -> None:
    with pytest.raises(OsbError, match=r"overlay template t\.j2: 'nope' is undefined"):
        render("{{ nope }}", {}, "t.j2")


def test_layer_renders_copies_and_keeps_exec_bit(tmp_path: Path) -> None:
    layer, root = tmp_path / "layer", tmp_path / "root"
    (layer / "etc").mkdir(parents=True)
    (layer / "etc/hello.j2").write_text("v={{ image.version }} b={{ board.name }}\n")
    (layer / "etc/plain").write_text("{{ not rendered }}\n")
    (layer / "etc/tool").write_text("#!/bin/sh\n")
    (layer / "etc/tool").chmod(0o755)
    (root / "etc").mkdir(parents=True)
    (root / "etc/hello").symlink_to("/nonexistent/target")
    written = apply_layer(layer, root, variables())
    assert sorted(map(str, written)) == ["etc/hello", "etc/plain", "etc/tool"]
    assert (root / "etc/hello").read_text() == "v=1.2.3 b=qemu-amd64\n"
    assert not (root / "etc/hello").is_symlink()
    assert (root / "etc/plain").read_text() == "{{ not rendered }}\n"
    assert os.access(root / "etc/tool", os.X_OK)
    assert (root / "etc/plain").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("board", ["qemu-amd64", "nuc-amd64"])
def test_shipped_overlay_renders(tmp_path: Path, board: str) -> None:
    apply_layer(OVERLAYS_DIR / "common", tmp_path, variables(board))
    fstab = (tmp_path / "etc/fstab").read_text()
    assert "LABEL=OSB_DATA  /data" in fstab and "x-systemd.growfs" in fstab
    modules = (tmp_path / "etc/initramfs-tools/modules").read_text().split()
    assert {"squashfs", "overlay", "ext4"} <= set(modules)
    assert set(load_board(board).initramfs_modules) <= set(modules)
    script = (tmp_path / "etc/initramfs-tools/scripts/local-bottom/osbuilder").read_text()
    assert 'mount -o bind "$D/etc/rancher" "${rootmnt}/etc/rancher"' in script
    assert os.access(tmp_path / "etc/initramfs-tools/scripts/local-bottom/osbuilder", os.X_OK)
    assert "{{" not in script
