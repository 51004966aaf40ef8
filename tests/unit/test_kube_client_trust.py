"""The node's Kubernetes client trusts only what its kubeconfig names: an API server whose
certificate another CA signed is refused, and plain http is refused except to this machine
(the API double on loopback) (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.node.kubeapi import Kube, load_kubeconfig
from osbuilder.shared.errors import OsbError
from tests.unit.test_fleet_kubeconfig_tls import config, make_certs, tls_api  # noqa: F401


def test_server_of_another_ca_is_refused(tls_api: tuple[str, Path],  # noqa: F811
                                         tmp_path: Path) -> None:
    url, d = tls_api
    other = tmp_path / "other-ca"
    other.mkdir()
    make_certs(other)  # a CA of its own: the server's certificate does not chain to it
    k = d / "wrong-ca.yaml"
    k.write_text(config(url, f"    certificate-authority: {other / 'ca.crt'}\n",
                        "    client-certificate: client.crt\n    client-key: client.key\n"))
    with pytest.raises(OsbError, match=r"Kubernetes API GET /api/v1/nodes: .*certificate "
                                       r"verify failed"):
        Kube(load_kubeconfig(k), "test").get("/api/v1/nodes")


@pytest.mark.parametrize("server", ["http://10.0.0.1:6443", "http://k3s.example:6443",
                                    "http://[fe80::1]:6443"])
def test_plain_http_to_the_network_is_refused(tmp_path: Path, server: str) -> None:
    k = tmp_path / "k.yaml"
    k.write_text(config(server, "", "    token: x\n"))
    with pytest.raises(OsbError, match=r"plain http only to this machine"):
        load_kubeconfig(k)


@pytest.mark.parametrize("server", ["http://127.0.0.1:8080", "http://localhost:8080",
                                    "http://[::1]:8080"])
def test_plain_http_to_loopback_is_allowed(tmp_path: Path, server: str) -> None:
    k = tmp_path / "k.yaml"
    k.write_text(config(server, "", "    token: x\n"))
    assert load_kubeconfig(k).server == server
