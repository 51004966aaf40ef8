"""jinja2 overlay rendering and layering."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.context import BuildContext
from osbuilder.host.stages.overlay import OVERLAYS_DIR, apply_layer, layers, render, template_vars
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.errors import OsbError
from tests.helpers.shipped_units import unit_keys


def variables(board: str = "qemu-amd64") -> dict[str, Any]:
    """What the overlay stage gives templates, for a build of `board` 1.2.3."""
    ctx = SimpleNamespace(board=load_board(board), kernel_version="6.12",
                          options=SimpleNamespace(version="1.2.3", source_date_epoch=1700000000))
    return template_vars(cast(BuildContext, ctx))


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
    # growth is osbuilder-grow-data.service's, after the login prompt: not fstab's, which
    # would hold local-fs.target (and the boot) for it
    assert "LABEL=OSB_DATA  /data" in fstab and "x-systemd.growfs" not in fstab
    # carried, not force-loaded: udev and the kernel load them on demand (a file listing
    # modules would have initramfs-tools modprobe each on every boot)
    assert not (tmp_path / "etc/initramfs-tools/modules").exists()
    hook = (tmp_path / "etc/initramfs-tools/hooks/osbuilder").read_text()
    assert "manual_add_modules squashfs overlay ext4 vfat nls_cp437 nls_ascii\n" in hook
    carried = " ".join(load_board(board).initramfs_modules)
    assert f"\nmanual_add_modules {carried}\n" in hook
    assert os.access(tmp_path / "etc/initramfs-tools/hooks/osbuilder", os.X_OK)
    script = (tmp_path / "etc/initramfs-tools/scripts/local-bottom/osbuilder").read_text()
    assert 'mount -o bind "$D/etc/rancher" "${rootmnt}/etc/rancher"' in script
    assert os.access(tmp_path / "etc/initramfs-tools/scripts/local-bottom/osbuilder", os.X_OK)
    assert "{{" not in script


def test_agent_unit_waits_for_its_mounts_not_local_fs() -> None:
    """osbuilder-boot.service starts once the folders the agent reads and writes are
    mounted, not after local-fs.target and the static device nodes' chain before it (the
    network waits for the agent: docs/benchmarks.md)."""
    keys = unit_keys("osbuilder-boot.service")
    assert "local-fs.target" not in " ".join(keys["After"]).split()
    mounts = [Path(m) for v in keys["WantsMountsFor"] for m in v.split()]
    paths = AgentPaths()
    for used in (paths.boot_dir, paths.state_dir, paths.download_dir,
                 Path("/etc/rancher/k3s"), Path("/tmp")):
        assert any(used.is_relative_to(m) for m in mounts), used


def test_mbr_u_boot_board_names_slots_by_partuuid(tmp_path: Path) -> None:
    v = variables("rpi-arm64")
    for layer in ("common", "mbr", "u-boot"):
        apply_layer(OVERLAYS_DIR / layer, tmp_path, v)
    conf = (tmp_path / "etc/rauc/system.conf").read_text()
    assert "bootloader=custom" in conf
    assert "device=/dev/disk/by-partuuid/6f736231-03\ntype=raw\nbootname=b" in conf
    assert (tmp_path / "etc/fw_env.config").read_text().splitlines()[-1] == \
        "/boot/efi/osbuilder.env 0x0 0x4000"
    assert "ExecStart=/usr/bin/osbuilder-agent grow-data" in \
        (tmp_path / "usr/lib/systemd/system/osbuilder-grow-data.service").read_text()
    assert not (tmp_path / "usr/lib/repart.d").exists()  # systemd-repart refuses MBR


def test_gpt_board_slots_by_partlabel_and_repart(tmp_path: Path) -> None:
    for layer in ("common", "gpt"):
        apply_layer(OVERLAYS_DIR / layer, tmp_path, variables())
    conf = (tmp_path / "etc/rauc/system.conf").read_text()
    assert "bootloader-custom-backend=/usr/lib/osbuilder/rauc-bootloader-backend" in conf
    assert "device=/dev/disk/by-partlabel/OSB_ROOT_A\ntype=raw\nbootname=a" in conf
    # osbuilder's own definitions: in /usr/lib/repart.d, Debian's systemd-repart.service
    # would run them early on every boot
    repart = (tmp_path / "usr/lib/osbuilder/repart.d/50-osbuilder-data.conf").read_text()
    assert "Type=linux-generic\nLabel=OSB_DATA" in repart
    assert not (tmp_path / "usr/lib/repart.d").exists()
    unit = (tmp_path / "usr/lib/systemd/system/osbuilder-grow-data.service").read_text()
    assert "--definitions=/usr/lib/osbuilder/repart.d" in unit
    assert "WantedBy=sysinit.target" in unit and "Before=k3s.service" in unit


def test_package_set_layers_only_on_boards_with_the_set() -> None:
    names = [p.name for p in layers(load_board("ec2-amd64"))]
    assert names == ["common", "gpt", "cloud-init"]
    # cloud-init off until the config names data sources: the data-sources layer's marker
    assert [p.name for p in layers(load_board("qemu-amd64"))] == ["common", "gpt", "cloud-init",
                                                                  "data-sources"]
    assert [p.name for p in layers(load_board("rpi-arm64"))] == ["common", "mbr", "u-boot",
                                                                 "cloud-init", "data-sources"]
    assert (OVERLAYS_DIR / "data-sources/etc/cloud/cloud-init.disabled").is_file()
    cfg = (OVERLAYS_DIR / "cloud-init/etc/cloud/cloud.cfg.d/90-osbuilder.cfg").read_text()
    # cloud-init must leave to the agent what the agent owns
    for line in ("preserve_hostname: true", "users: []", "network: {config: disabled}",
                 "cloud_init_modules: [seed_random, bootcmd, write_files]"):
        assert line in cfg
