"""k3OS's `data_sources` on a board that is no cloud (qemu-amd64): cloud-init ships off and
the agent turns it on for the names the config lists (issue 16). `cdrom`: a NoCloud seed
CD (label cidata), k3OS's linuxkit probe read CDs the same way (rancher/k3os
overlay/etc/init.d/cloud-config, linuxkit pkg/metadata provider_cdrom.go). `openstack`: a
config drive (label config-2), one of the two places cloud-init's OpenStack support
reads. The user-data is a k3OS config; `online` applies it when cloud-init stored it,
before the login prompt, which then names the host the user-data names.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, interactive_serial, qemu_argv
from tests.conftest import Build
from tests.e2e.test_agent_qemu_amd64 import prepare
from tests.helpers.cloud_media import cdrom, config_drive, nocloud_iso

pytestmark = pytest.mark.e2e
TIMEOUT = 600


def boot_with(build: Build, tmp: Path, config: dict[str, Any], iso: Path) -> VM:
    disk = prepare(build, tmp, config)
    serial, extra = interactive_serial(tmp / "console.sock")
    argv = qemu_argv(load_board("qemu-amd64"), disk, tmp / "vars.fd", serial=serial,
                     extra=(*extra, *cdrom(iso)))
    return VM(argv, tmp / "console.log", tmp / "console.sock")


def test_cdrom_data_source(qemu_amd64_build: Build, tmp_path: Path) -> None:
    iso = nocloud_iso(tmp_path / "seed.iso", "hostname: from-cdrom\n"
                      "k3os: {labels: {source: cdrom}}\n", "i-cdrom-0001")
    config = {"hostname": "before", "k3os": {"password": "ds-pw", "data_sources": ["cdrom"]}}
    with boot_with(qemu_amd64_build, tmp_path, config, iso) as vm:
        vm.wait_for(r"applied config \(sources=/boot/efi/config.yaml, role=server, "
                    r"hostname=before\)", TIMEOUT)
        vm.wait_for(r"config changed since boot: applying it", TIMEOUT)
        vm.wait_for(r"applied config \(sources=/boot/efi/config.yaml,/var/lib/cloud/instance/"
                    r"user-data\.txt, role=server, hostname=from-cdrom\)", TIMEOUT)
        vm.wait_for(r"from-cdrom login:", TIMEOUT)
        vm.login("osb", "ds-pw")
        out = vm.shell("hostname; cat /etc/cloud/cloud.cfg.d/91-osbuilder-datasources.cfg; "
                       "echo ds-pw | sudo -S grep -A1 node-label /etc/rancher/k3s/config.yaml")
    assert "from-cdrom" in out and "source=cdrom" in out, out
    assert "datasource_list: [NoCloud, ConfigDrive, None]" in out, out


@pytest.mark.slow
def test_openstack_config_drive(qemu_amd64_build: Build, tmp_path: Path) -> None:
    iso = config_drive(tmp_path / "config-2.iso", "hostname: from-openstack\n",
                       "2f6a1e4c-0000-4000-8000-00000000e2e1", "os-node")
    config = {"k3os": {"password": "ds-pw", "data_sources": ["openstack"]}}
    with boot_with(qemu_amd64_build, tmp_path, config, iso) as vm:
        vm.wait_for(r"applied config \(sources=/boot/efi/config.yaml,/var/lib/cloud/instance/"
                    r"user-data\.txt, role=server, hostname=from-openstack\)", TIMEOUT)
        vm.wait_for(r"from-openstack login:", TIMEOUT)
