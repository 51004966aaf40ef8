"""Two VMs on one virtual LAN: the agent node reaches the server node's address from its
server_url, proving static addressing on a second NIC and the boot ordering (network up
before k3s starts) — not k3s itself.

k3s is a stand-in on both nodes (TEST DOUBLE, tests/helpers/k3s_fixture.py): the server's
answers on :6443, the agent's connects to server_url. The LAN is a QEMU socket netdev
tunnelled over 127.0.0.1; its addresses are TEST-NET-1 (192.0.2.0/24), never routed.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.qemu import VM, qemu_argv
from tests.conftest import Build
from tests.e2e.test_agent_qemu_amd64 import TIMEOUT, prepare

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lan_vm(build: Build, work: Path, config: dict[str, Any], netdev: str, mac: str) -> VM:
    work.mkdir()
    disk = prepare(build, work, config)
    extra = ("-netdev", f"socket,id=lan,{netdev}",
             "-device", f"virtio-net-pci,netdev=lan,mac={mac},addr=0x8")  # -> enp0s8
    argv = qemu_argv(load_board("qemu-amd64"), disk, work / "vars.fd",
                     serial=f"file:{work / 'console.log'}", extra=extra)
    return VM(argv, work / "console.log")


def test_agent_reaches_server_over_the_lan(qemu_amd64_build: Build, tmp_path: Path) -> None:
    port = free_port()
    server_cfg = {"hostname": "srv", "k3os": {
        "token": "shared-secret", "network": {"enp0s8": {"addresses": ["192.0.2.1/24"]}}}}
    agent_cfg = {"hostname": "agt", "k3os": {
        "server_url": "https://192.0.2.1:6443", "token": "shared-secret",
        "network": {"enp0s8": {"addresses": ["192.0.2.2/24"]}}}}
    with lan_vm(qemu_amd64_build, tmp_path / "server", server_cfg,
                f"listen=127.0.0.1:{port}", "52:54:00:00:02:01") as srv:
        srv.wait_for(r"applied config \(.*role=server, hostname=srv\)", TIMEOUT)
        with lan_vm(qemu_amd64_build, tmp_path / "agent", agent_cfg,
                    f"connect=127.0.0.1:{port}", "52:54:00:00:02:02") as agt:
            agt.wait_for(r"applied config \(.*role=agent, hostname=agt\)", TIMEOUT)
            agt.wait_for(r"k3s-standin: agent: reached https://192\.0\.2\.1:6443: "
                         r"k3s stand-in server", TIMEOUT * 2)
            srv.wait_for(r"k3s-standin: server: connection from 192\.0\.2\.2", 60)
            print(f"\ntwo-node LAN join seen after {agt.elapsed():.1f} s (agent boot, TCG)")


def test_second_server_joins_with_the_k3os_keys(qemu_amd64_build: Build, tmp_path: Path
                                                ) -> None:
    """k3OS's HA join (rancher/k3os pkg/cc/funcs.go ApplyK3S exports K3S_URL whenever
    server_url is set; issue #379): `k3s_args: [server]` with server_url and token makes a
    second server of the same cluster, not a cluster of its own. The stand-in, as k3s
    would, connects to the server its config names (`server:`)."""
    port = free_port()
    first = {"hostname": "srv1", "k3os": {
        "token": "K10cluster::server:secret", "k3s_args": ["server", "--cluster-init"],
        "network": {"enp0s8": {"addresses": ["192.0.2.1/24"]}}}}
    second = {"hostname": "srv2", "k3os": {
        "server_url": "https://192.0.2.1:6443", "token": "K10cluster::server:secret",
        "k3s_args": ["server"], "network": {"enp0s8": {"addresses": ["192.0.2.3/24"]}}}}
    with lan_vm(qemu_amd64_build, tmp_path / "srv1", first,
                f"listen=127.0.0.1:{port}", "52:54:00:00:02:11") as srv1:
        srv1.wait_for(r"applied config \(.*role=server, hostname=srv1\)", TIMEOUT)
        with lan_vm(qemu_amd64_build, tmp_path / "srv2", second,
                    f"connect=127.0.0.1:{port}", "52:54:00:00:02:12") as srv2:
            srv2.wait_for(r"applied config \(.*role=server, hostname=srv2\)", TIMEOUT)
            srv2.wait_for(r'k3s-standin: started \["server"\]', TIMEOUT * 2)
            srv2.wait_for(r"k3s-standin: server joining: reached https://192\.0\.2\.1:6443: "
                          r"k3s stand-in server", TIMEOUT * 2)
            srv1.wait_for(r"k3s-standin: server: connection from 192\.0\.2\.3", 60)
