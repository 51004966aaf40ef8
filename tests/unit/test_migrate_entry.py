"""How a migration is started and what config the migrated node gets: the live system's
osb.mode=migrate (the ISO's third entry; PXE with serve-pxe --args) and
`osbuilder-agent migrate-k3os` refuse before writing; k3OS's system config becomes the
boot partition's config.yaml in osbuilder's spelling, with k3OS's file kept beside it."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osbuilder.node.install.installer import install
from osbuilder.node.install.k3os_disk import install_hint
from osbuilder.node.install.k3os_state import read_state
from osbuilder.node.install.migrate_steps import HEADER, ORIGINAL, boot_configs
from osbuilder.shared import live
from osbuilder.shared.errors import OsbError
from tests.helpers.k3os_disk import K3osNode, make_disk, state_tree
from tests.unit.test_agent_boot import FACTS
from tests.unit.test_install_main import LIVE, live_node

MIGRATE = LIVE.replace("osb.mode=live", "osb.mode=migrate")
# what k3OS's interactive installer writes (camelCase JSON tags, rancher/k3os
# pkg/cliinstall/install.go; seen in https://github.com/rancher/k3os/issues/739)
CAMEL = b"""sshAuthorizedKeys:
- github:someone
k3os:
  password: $6$salt$hash
  serverUrl: https://10.0.0.1:6443
  token: K10abc::server:def
  install:
    device: /dev/sda
"""


def test_the_system_config_in_osbuilders_spelling_and_the_original_beside(
        tmp_path: Path) -> None:
    tree = state_tree(tmp_path / "state", K3osNode(system_config=CAMEL.decode()))
    (tree / "k3os/data/var/lib/rancher/k3s/agent/pod-manifests").mkdir()
    configs = boot_configs(read_state(tree))
    assert configs[ORIGINAL] == CAMEL  # byte for byte
    text = configs["config.yaml"].decode()
    assert text.startswith(HEADER)
    assert yaml.safe_load(text) == {
        "ssh_authorized_keys": ["github:someone"],
        "k3os": {"password": "$6$salt$hash", "server_url": "https://10.0.0.1:6443",
                 "token": "K10abc::server:def"}}  # no install: it is installed


def test_no_system_config_gives_an_empty_one(tmp_path: Path) -> None:
    node = K3osNode()
    tree = state_tree(tmp_path / "state", node)
    (tree / "k3os/system/config.yaml").unlink()
    configs = boot_configs(read_state(tree))
    assert configs == {"config.yaml": (HEADER + "{}\n").encode()}


def test_the_live_systems_migrate_mode(tmp_path: Path) -> None:
    assert "migrate" in live.MODES
    assert "osb.mode=migrate" in live.kernel_options("OSB_LIVE", "migrate", ["ttyS0"], [])
    paths = live_node(tmp_path / "no-efi", {}, cmdline=MIGRATE, efi=False)
    with pytest.raises(OsbError, match=r"^migration refused, nothing written: this machine did "
                                       r"not boot through UEFI.*install\.force_efi"):
        install(paths, FACTS, auto=True, reboot=False)
    disk = tmp_path / "k3os.img"
    make_disk(disk, 3 << 30, state_tree(tmp_path / "state", K3osNode()), "gpt", work=tmp_path)
    paths = live_node(tmp_path / "file", {"k3os": {"install": {"device": str(disk),
                                                               "silent": True}}},
                      cmdline=MIGRATE)
    with pytest.raises(OsbError, match=r"^migration refused, nothing written:\n  install\."
                                       r"device .*k3os\.img: not a block device"):
        install(paths, FACTS, auto=True, reboot=False, inp=io.StringIO(""))


def test_installing_over_k3os_points_at_the_migration() -> None:
    """blkid's findings on a node with a k3OS disk (a file has no partitions to probe)."""
    found = ("/dev/vda: gpt partition table", "/dev/vda1: vfat 'K3OS_GRUB'",
             "/dev/vda2: ext4 'K3OS_STATE'")
    assert install_hint(found) == (
        "it holds k3OS: `osbuilder-agent migrate-k3os` (the live system's migrate entry, "
        "osb.mode=migrate) keeps its k3s state")
    assert install_hint(found[:2]) is None


def test_migrate_k3os_command_line() -> None:
    code = ("import sys; from osbuilder.node.agent_cli import main; "
            "sys.exit(main(['migrate-k3os', '--help']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    for flag in ("--device", "--yes", "--skip-images", "--dry-run", "--force-efi",
                 "--no-reboot"):
        assert flag in out
