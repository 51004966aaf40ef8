"""The controller's own credential: the token step (TokenRequest with k3s's admin
kubeconfig) against the API double (TEST DOUBLE, tests/helpers/kube_double.py) with the
image's manifests applied, and the controller giving way when its token runs out."""

from __future__ import annotations

import base64
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from osbuilder.node.fleet import credential, service
from osbuilder.node.fleet.controller import Controller
from osbuilder.node.kubeapi import Endpoint, Kube, load_kubeconfig
from osbuilder.shared.errors import OsbError
from tests.helpers.fleet_checks import CONTROLLER
from tests.helpers.fleet_scale import kubeconfig, manifest_docs
from tests.helpers.kube_double import KubeDouble, serve
from tests.helpers.shipped_units import UNITS_DIR, unit_keys

TOKEN_PATH = "/api/v1/namespaces/kube-system/serviceaccounts/osbuilder-controller/token"


@pytest.fixture
def api() -> Iterator[tuple[KubeDouble, str]]:
    d = KubeDouble()
    d.tokens["admin-token"] = ("system:admin", 0.0)
    d.create("nodes", {"metadata": {"name": "server-1"}})
    with serve(d) as url:
        yield d, url


@pytest.fixture
def keep_signals() -> Iterator[None]:
    """run_controller installs SIGTERM/SIGINT handlers, as a service must: put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_token_step_writes_a_private_kubeconfig_and_never_shows_the_token(
        api: tuple[KubeDouble, str], tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    d, url = api
    d.apply(manifest_docs())
    admin = kubeconfig(tmp_path / "k3s" / "k3s.yaml", url, "admin-token")
    ca = tmp_path / "k3s" / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot checked over http\n")
    cfg = yaml.safe_load(admin.read_text())
    cfg["clusters"][0]["cluster"]["certificate-authority"] = "ca.crt"  # relative, as kubectl
    admin.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run" / "kubeconfig"
    credential.obtain(admin, out, wait_s=5)
    st = out.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (out.parent.stat().st_uid, out.parent.stat().st_gid)
    written = yaml.safe_load(out.read_text())
    token = written["users"][0]["user"]["token"]
    assert credential.claims(token)["sub"] == CONTROLLER
    assert written["clusters"][0]["cluster"] == {
        "server": url, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}
    printed = capfd.readouterr()
    assert token not in printed.out + printed.err and "token written to" in printed.out
    assert not list(out.parent.glob(".kubeconfig.*"))  # no temp file left behind
    # the kubeconfig works, as the ServiceAccount and nothing more
    kube = Kube(load_kubeconfig(out), "osbuilder-controller/t")
    assert kube.get("/api/v1/nodes")["items"]
    assert d.calls[-1].user == CONTROLLER and d.calls[-1].code == 200


def test_token_step_waits_for_the_service_account_then_says_why(
        api: tuple[KubeDouble, str], tmp_path: Path) -> None:
    d, url = api
    admin = kubeconfig(tmp_path / "k3s.yaml", url, "admin-token")
    with pytest.raises(OsbError, match=r"no token for ServiceAccount kube-system/osbuilder-"
                       r"controller within 1 s \(is osbuilder-controller-rbac.yaml deployed\?\)"
                       r": .*HTTP 404"):
        credential.obtain(admin, tmp_path / "out", wait_s=1, retry_s=0.2)
    # k3s's deploy controller applies the manifest a moment later: the step waits for it
    threading.Timer(0.5, d.apply, [manifest_docs()]).start()
    credential.obtain(admin, tmp_path / "out", wait_s=10, retry_s=0.2)
    assert (tmp_path / "out").is_file()


def test_controller_renews_its_token_by_restarting(api: tuple[KubeDouble, str],
                                                   tmp_path: Path, keep_signals: None) -> None:
    """At 80 % of the token's life the controller releases its Lease and exits 75, so
    systemd's restart runs the token step again."""
    d, url = api
    d.apply(manifest_docs())
    token = d.issue_token("kube-system", "osbuilder-controller", 3)["status"]["token"]
    t0 = time.monotonic()
    code = service.run_controller(Endpoint(url, None, token), "server-1", "", idle_s=0.2)
    took = time.monotonic() - t0
    assert code == service.EX_TEMPFAIL and 1.0 < took < 4, took
    lease = d.get("leases", "kube-system/osbuilder-controller")
    assert lease["spec"]["holderIdentity"] == ""  # released: another server takes over
    assert not [c for c in d.calls if c.code == 401]  # it left before the token expired


def test_controller_stops_at_the_first_401(api: tuple[KubeDouble, str]) -> None:
    d, url = api
    d.apply(manifest_docs())
    token = d.issue_token("kube-system", "osbuilder-controller", 1)["status"]["token"]
    ctl = Controller(Kube(Endpoint(url, None, token), "osbuilder-controller/t"), "t",
                     lease_s=3, idle_s=0.2, log=lambda m: None)  # told nothing of its expiry
    stop = threading.Event()
    threading.Timer(10, stop.set).start()  # a bound, should the 401 go unnoticed
    why = ctl.run(stop)
    assert "401" in why and not stop.is_set()
    stop.set()


def test_fetch_token_before_k3s_is_up_waits_quietly(
        capfd: pytest.CaptureFixture[str], tmp_path: Path, keep_signals: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit stays up while k3s starts: the token step exits 0 saying it waits, and the
    controller without a token waits too, then exits 75 for the restart to ask again."""
    monkeypatch.setattr(service, "ADMIN_KUBECONFIG", tmp_path / "k3s.yaml")  # not there yet
    monkeypatch.setattr(service, "RETRY_S", 0.3)  # 600 s on a node
    monkeypatch.setattr(service, "WAIT_S", 0.1)
    assert service.controller(tmp_path / "kubeconfig", None, "", fetch_token=True) == 0
    assert service.controller(tmp_path / "kubeconfig", None, "") == service.EX_TEMPFAIL
    out = capfd.readouterr().out
    assert f"waiting for the k3s admin kubeconfig ({tmp_path / 'k3s.yaml'})" in out
    assert "no ServiceAccount token yet" in out
    assert not (tmp_path / "kubeconfig").exists()


def test_the_unit_runs_the_controller_unprivileged_with_its_token_only() -> None:
    """The shipped unit: the token step privileged ("+"), the controller as a dynamic user
    whose runtime directory is where the step writes (service.CONTROLLER_KUBECONFIG)."""
    unit = UNITS_DIR / "osbuilder-controller.service"
    keys = unit_keys(unit.name)
    assert keys["DynamicUser"] == ["yes"] and keys["NoNewPrivileges"] == ["yes"]
    assert keys["ExecStartPre"] == ["+/usr/bin/osbuilder-agent controller --fetch-token"]
    assert keys["ExecStart"] == ["/usr/bin/osbuilder-agent controller"]
    assert "k3s.yaml" not in unit.read_text()
    assert service.CONTROLLER_KUBECONFIG.parent == Path("/run") / keys["RuntimeDirectory"][0]
    assert keys["RuntimeDirectoryMode"] == ["0700"]
