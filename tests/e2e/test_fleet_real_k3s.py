"""The fleet scenario against a real k3s API server, for users who have a k3s binary:

    K3S_BIN=/usr/local/bin/k3s pytest tests/e2e/test_fleet_real_k3s.py   (as root)

It starts `k3s server` (no agent, no add-ons) in a temp folder, installs the CRD shipped in
the image (so a real API server checks that its schema is structural and valid), creates a
2-server + 4-agent fleet of Node objects whose node side is the real watcher with the slot
install replaced by a recorder (tests/helpers/fleet_sim.py; TEST DOUBLE for RAUC and the
reboot: there are no machines behind these Nodes), runs the real controller, and checks
servers first, concurrency, cordon/uncordon and Complete. Without K3S_BIN it is skipped:
k3s cannot be downloaded on the machine this project is developed on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuilder.agent.fleet import protocol as pr
from osbuilder.agent.fleet.controller import Controller
from osbuilder.agent.fleet.kubeapi import ApiError, Kube, load_kubeconfig
from osbuilder.errors import OsbError
from tests.helpers.fleet_sim import Fleet

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "overlays/common/usr/share/osbuilder/manifests/osupgrade-crd.yaml"
K3S_BIN = os.environ.get("K3S_BIN", "")
PATHS = {"nodes": pr.NODES, "pods": "/api/v1/namespaces/default/pods",
         "osupgrades": pr.OSUPGRADES, "events": "/api/v1/namespaces/default/events"}


class RealStore:
    """The fleet simulation's view of a real API server (tests/helpers/fleet_sim.Store)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def _path(self, coll: str, key: str = "") -> str:
        return PATHS[coll] + (f"/{key.split('/')[-1]}" if key else "")

    def create(self, coll: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.kube.post(self._path(coll), obj)

    def get(self, coll: str, key: str) -> dict[str, Any]:
        return self.kube.get(self._path(coll, key))

    def items(self, coll: str, field_selector: str = "") -> list[dict[str, Any]]:
        q = {"fieldSelector": field_selector} if field_selector else {}
        items: list[dict[str, Any]] = self.kube.get(self._path(coll), **q).get("items", [])
        return items

    def patch(self, coll: str, key: str, patch: dict[str, Any], subresource: str = ""
              ) -> dict[str, Any]:
        return self.kube.patch(self._path(coll, key) + (f"/{subresource}" if subresource
                                                        else ""), patch)


@pytest.fixture
def k3s(tmp_path: Path) -> Iterator[Kube]:
    if not K3S_BIN:
        pytest.skip("K3S_BIN not set: no real k3s binary here (it cannot be downloaded on "
                    "this machine); set K3S_BIN=/path/to/k3s to run against a real k3s")
    if not (Path(K3S_BIN).is_file() and os.access(K3S_BIN, os.X_OK)):
        pytest.skip(f"K3S_BIN={K3S_BIN} is not an executable file")
    if os.geteuid() != 0:
        pytest.skip("k3s server needs root: missing capability")
    cfg = tmp_path / "k3s.yaml"
    proc = subprocess.Popen(
        [K3S_BIN, "server", "--disable-agent", "--data-dir", str(tmp_path / "data"),
         "--write-kubeconfig", str(cfg), "--https-listen-port", "16443",
         "--disable", "traefik,servicelb,metrics-server,local-storage,coredns"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "k3s.log").open("wb"))
    try:
        kube = None
        for _ in range(120):
            if cfg.is_file():
                try:
                    kube = Kube(load_kubeconfig(cfg), "e2e")
                    kube.get("/api/v1/namespaces/kube-system")
                    break
                except OsbError:
                    kube = None
            time.sleep(1)
        assert kube is not None, (tmp_path / "k3s.log").read_text()[-3000:]
        crd = yaml.safe_load(CRD.read_text())
        kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        for _ in range(60):
            got = kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                           "osupgrades.osbuilder.io")
            conds = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions", [])}
            if conds.get("Established") == "True":
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"CRD not established: {got.get('status')}")
        yield kube
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(tmp_path / "data", ignore_errors=True)


def test_fleet_rollout_on_real_k3s(k3s: Kube, tmp_path: Path) -> None:
    store = RealStore(k3s)
    fleet = Fleet(store, k3s.endpoint, tmp_path)
    for i in (1, 2):
        fleet.add(f"server-{i}", server=True, pods=0, daemonset=False)
    for i in (1, 2, 3, 4):
        # no kubelet: a pod bound to these Nodes could never terminate
        fleet.add(f"agent-{i}", pods=0, daemonset=False)
    for name in fleet.nodes:
        store.patch("nodes", name, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "Sim", "message": "simulated"}]}},
            "status")
    fleet.boot_all()
    ctl = Controller(Kube(k3s.endpoint, "osbuilder-controller/e2e"), "e2e", idle_s=0.5,
                     busy_s=0.2, log=print)
    stop = threading.Event()
    t = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
    t.start()
    try:
        store.create("osupgrades", {
            "apiVersion": "osbuilder.io/v1alpha1", "kind": "OSUpgrade",
            "metadata": {"name": "to-1.4.0"},
            "spec": {"version": "1.4.0", "bundleURL": "https://updates.example.com/{board}/"
                     "osbuilder-{board}-{version}.raucb", "concurrency": 2, "maxFailures": 1,
                     "nodeSelector": {"matchLabels": {"site": "plant-7"}}}})
        with pytest.raises(ApiError) as bad:  # the real API server applies the schema
            store.create("osupgrades", {"apiVersion": "osbuilder.io/v1alpha1",
                                        "kind": "OSUpgrade", "metadata": {"name": "bad"},
                                        "spec": {"version": "1.4.0", "concurrency": 0,
                                                 "bundleURL": "https://x/y.raucb"}})
        assert bad.value.status == 422
        end = time.monotonic() + 40  # before k3s marks the kubelet-less Nodes unreachable
        while time.monotonic() < end:
            st = store.get("osupgrades", "to-1.4.0").get("status") or {}
            if st.get("phase") == "Complete":
                break
            time.sleep(0.2)
        assert st.get("phase") == "Complete", st
    finally:
        ctl.stop(stop)
        t.join(10)
        fleet.shutdown()
    assert st["progress"] == "6/6"
    ins = fleet.installs
    assert [i.node for i in ins[:2]] == ["server-1", "server-2"]
    assert ins[0].end <= ins[1].start and max(i.end for i in ins[:2]) <= min(
        i.start for i in ins[2:])
    assert all(i.cordoned for i in ins)
    assert not any(n["spec"].get("unschedulable") for n in store.items("nodes"))
