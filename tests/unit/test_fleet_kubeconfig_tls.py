"""The Kubernetes client's credentials over real TLS: a k3s admin kubeconfig (inline
base64 certificate and key) and a kubelet kubeconfig (certificate files next to it),
against the API server double (TEST DOUBLE, tests/helpers/kube_double.py) served with
TLS that demands a client certificate, as k3s's API server does. Certificates are made
here with openssl."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from osbuilder.node.kubeapi import Kube, load_kubeconfig
from osbuilder.shared.errors import OsbError
from osbuilder.shared.run import run
from tests.helpers.kube_double import KubeDouble, serve


def make_certs(d: Path) -> None:
    def key(name: str) -> None:
        run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
             "-out", d / f"{name}.key"])

    key("ca")
    run(["openssl", "req", "-x509", "-new", "-key", d / "ca.key", "-subj", "/CN=k3s-ca",
         "-days", "2", "-out", d / "ca.crt"])
    for name, subj, ext in (("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
                            ("client", "/O=system:nodes/CN=system:node:agent-1",
                             "extendedKeyUsage=clientAuth")):
        key(name)
        run(["openssl", "req", "-new", "-key", d / f"{name}.key", "-subj", subj,
             "-out", d / f"{name}.csr"])
        (d / f"{name}.ext").write_text(ext + "\n")
        run(["openssl", "x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.crt",
             "-CAkey", d / "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", d / f"{name}.ext", "-out", d / f"{name}.crt"])


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    make_certs(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    ctx.load_verify_locations(tmp_path / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    api = KubeDouble()
    api.create("nodes", {"metadata": {"name": "agent-1"}, "status": {"conditions": [
        {"type": "Ready", "status": "True"}]}})
    api.create("nodes", {"metadata": {"name": "agent-2"}})
    with serve(api, ctx) as url:
        yield url, tmp_path


def config(server: str, cluster: str, user: str) -> str:
    return (f"apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n"
            f"    server: {server}\n{cluster}users:\n- name: default\n  user:\n{user}"
            "contexts:\n- name: default\n  context: {cluster: default, user: default}\n"
            "current-context: default\n")


def b64(p: Path) -> str:
    return base64.b64encode(p.read_bytes()).decode()


def test_admin_kubeconfig_with_inline_certificates(tls_api: tuple[str, Path]) -> None:
    url, d = tls_api
    k = d / "k3s.yaml"
    k.write_text(config(url, f"    certificate-authority-data: {b64(d / 'ca.crt')}\n",
                        f"    client-certificate-data: {b64(d / 'client.crt')}\n"
                        f"    client-key-data: {b64(d / 'client.key')}\n"))
    got = Kube(load_kubeconfig(k), "test").get("/api/v1/nodes/agent-1")
    assert got["metadata"]["name"] == "agent-1"
    assert not list(Path("/tmp").glob("osb-kube-*/key.pem"))  # key files gone once loaded


def test_kubelet_kubeconfig_with_relative_files(tls_api: tuple[str, Path]) -> None:
    url, d = tls_api
    k = d / "kubelet.kubeconfig"
    k.write_text(config(url, "    certificate-authority: ca.crt\n",
                        "    client-certificate: client.crt\n    client-key: client.key\n"))
    kube = Kube(load_kubeconfig(k), "test")
    assert kube.get("/api/v1/nodes")["items"][0]["metadata"]["name"] == "agent-1"
    assert kube.calls["GET"] == 1


def test_no_client_certificate_is_refused(tls_api: tuple[str, Path]) -> None:
    url, d = tls_api
    k = d / "anon.yaml"
    k.write_text(config(url, "    certificate-authority: ca.crt\n", "    token: x\n"))
    with pytest.raises(OsbError, match=r"Kubernetes API GET /api/v1/nodes: "):
        Kube(load_kubeconfig(k), "test").get("/api/v1/nodes")


def test_bad_kubeconfig_names_the_field(tmp_path: Path) -> None:
    k = tmp_path / "k.yaml"
    k.write_text(config("127.0.0.1:6443", "", "    token: x\n"))
    with pytest.raises(OsbError, match=r"k.yaml: clusters\[\].cluster.server: expected an "
                                       r"https:// URL, got '127.0.0.1:6443'"):
        load_kubeconfig(k)


def test_health_gate_node_ready_through_the_kubelet_credential(tls_api: tuple[str, Path],
                                                              tmp_path: Path) -> None:
    """The upgrade health gate's Ready check uses the same client and credential."""
    from osbuilder.node.upgrade.node_ready import node_ready

    url, d = tls_api
    k = d / "kubelet.kubeconfig"
    k.write_text(config(url, f"    certificate-authority: {d / 'ca.crt'}\n",
                        f"    client-certificate: {d / 'client.crt'}\n"
                        f"    client-key: {d / 'client.key'}\n"))
    assert node_ready("agent-1", k) == (True, "node agent-1 Ready=True")
    assert node_ready("agent-2", k) == (False, "node agent-2 has no Ready condition yet")
    ok, why = node_ready("agent-9", k)
    assert not ok and "HTTP 404" in why
    assert node_ready("agent-1", tmp_path / "none") == (
        False, f"no kubelet credential yet ({tmp_path / 'none'})")
