"""Kernel modules, sysctl, NTP (timesyncd) and DNS (resolved) drop-ins."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.appliers import dns, kernel, timesync
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import parse

FACTS = Facts(macs=(), wireless=(), serial=None, hostname=None)


def body(path: Path) -> str:
    """The file without its comment header."""
    return "".join(line for line in path.read_text().splitlines(True)
                   if not line.startswith("#"))


def test_modules_and_sysctl_written_then_removed(tmp_path: Path) -> None:
    cfg = parse({"k3os": {"modules": ["kvm", "nvme_tcp"],
                          "sysctl": {"vm.swappiness": 10, "net.ipv4.ip_forward": "1",
                                     "kernel.panic_on_oops": True}}})
    kernel.apply(cfg, FACTS, tmp_path)
    assert body(tmp_path / kernel.MODULES) == "kvm\nnvme_tcp\n"
    assert body(tmp_path / kernel.SYSCTL) == (
        "kernel.panic_on_oops = true\nnet.ipv4.ip_forward = 1\nvm.swappiness = 10\n")
    kernel.apply(parse({}), FACTS, tmp_path)
    assert not (tmp_path / kernel.MODULES).exists()
    assert not (tmp_path / kernel.SYSCTL).exists()


def test_bad_module_and_sysctl_values_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(OsbError, match=r"k3os\.modules\[1\]: 'a;b' is not a kernel module"):
        kernel.apply(parse({"k3os": {"modules": ["ok", "a;b"]}}), FACTS, tmp_path)
    with pytest.raises(OsbError, match=r"k3os\.modules\[0\]: '\$x' is not a module parameter"):
        kernel.apply(parse({"k3os": {"modules": ["nvme_core $x"]}}), FACTS, tmp_path)
    with pytest.raises(OsbError, match=r"k3os\.sysctl\.vm\.x: must be a single line"):
        kernel.apply(parse({"k3os": {"sysctl": {"vm.x": "1\nkernel.y = 2"}}}), FACTS, tmp_path)
    assert not (tmp_path / "etc").exists()  # nothing half-written


def test_ntp_servers(tmp_path: Path) -> None:
    timesync.apply(parse({"k3os": {"ntp_servers": ["0.pool.ntp.org", "10.0.0.1"]}}),
                   FACTS, tmp_path)
    assert body(tmp_path / timesync.DROPIN) == "[Time]\nNTP=0.pool.ntp.org 10.0.0.1\n"
    timesync.apply(parse({}), FACTS, tmp_path)
    assert not (tmp_path / timesync.DROPIN).exists()


def test_dns_nameservers(tmp_path: Path) -> None:
    dns.apply(parse({"k3os": {"dns_nameservers": ["1.1.1.1", "2606:4700::1111"]}}),
              FACTS, tmp_path)
    assert body(tmp_path / dns.DROPIN) == "[Resolve]\nDNS=1.1.1.1 2606:4700::1111\n"
    dns.apply(parse({}), FACTS, tmp_path)
    assert not (tmp_path / dns.DROPIN).exists()
    with pytest.raises(OsbError, match=r"k3os\.dns_nameservers\[0\]: '1\.1\.1\.1 8\.8\.8\.8'"):
        dns.apply(parse({"k3os": {"dns_nameservers": ["1.1.1.1 8.8.8.8"]}}), FACTS, tmp_path)


def test_module_parameters_go_to_modprobe_d(tmp_path: Path) -> None:
    """k3OS loads `nvme_core multipath=0` with its parameter (rancher/k3os pkg/module)."""
    kernel.apply(parse({"k3os": {"modules": ["kvm", "nvme_core multipath=0"]}}), FACTS,
                 tmp_path)
    assert body(tmp_path / kernel.MODULES) == "kvm\nnvme_core\n"
    assert body(tmp_path / kernel.OPTIONS) == "options nvme_core multipath=0\n"
    kernel.apply(parse({"k3os": {"modules": ["kvm"]}}), FACTS, tmp_path)
    assert not (tmp_path / kernel.OPTIONS).exists()
