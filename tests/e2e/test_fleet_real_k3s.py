"""The fleet scenario against a real k3s API server, for users who have a k3s binary:

    K3S_BIN=/usr/local/bin/k3s pytest tests/e2e/test_fleet_real_k3s.py   (as root)

It starts `k3s server` (no agent, no add-ons) in a temp folder, applies the manifests the
image ships (the OSUpgrade CRD, so a real API server checks that its schema is structural
and valid; the controller's ServiceAccount and RBAC) and runs the scenario of
tests/helpers/fleet_scale.py at 10 nodes, as `make test` runs it on the API double: the
credential step asks the real TokenRequest API with k3s's admin kubeconfig, and the
controller, its own process, holds that token only, so k3s's RBAC authorizer checks each
of its requests against the ClusterRole. The nodes' side is the real watcher with the
slot install replaced by a recorder (tests/helpers/fleet_sim.py; TEST DOUBLE for RAUC and
the reboot: there are no machines behind these Nodes, and no kubelet, so they carry no
pods, and their simulated kubelets report every 20 s lest the node lifecycle controller
mark them unreachable). Without K3S_BIN it is skipped: k3s cannot be downloaded on the
machine this project is developed on.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuilder.node.fleet import protocol as pr
from osbuilder.node.kubeapi import ApiError, Kube, load_kubeconfig
from osbuilder.shared.errors import OsbError
from tests.helpers.fleet_checks import check_rollout
from tests.helpers.fleet_scale import MANIFESTS, scenario, shape

pytestmark = pytest.mark.e2e

K3S_BIN = os.environ.get("K3S_BIN", "")
PATHS = {"nodes": pr.NODES, "pods": "/api/v1/namespaces/default/pods",
         "osupgrades": pr.OSUPGRADES, "events": "/api/v1/namespaces/default/events"}
RBAC = "/apis/rbac.authorization.k8s.io/v1"
KINDS = {"CustomResourceDefinition": "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
         "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
         "ClusterRole": f"{RBAC}/clusterroles",
         "ClusterRoleBinding": f"{RBAC}/clusterrolebindings",
         "Role": f"{RBAC}/namespaces/{{ns}}/roles",
         "RoleBinding": f"{RBAC}/namespaces/{{ns}}/rolebindings"}


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


def apply(kube: Kube, doc: dict[str, Any]) -> None:
    path = KINDS[doc["kind"]].format(ns=doc["metadata"].get("namespace", ""))
    kube.post(path, doc)


@pytest.fixture
def k3s(tmp_path: Path) -> Iterator[tuple[Kube, Path]]:
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
        for f in sorted(MANIFESTS.glob("*.yaml")):
            for doc in yaml.safe_load_all(f.read_text()):
                apply(kube, doc)
        for _ in range(60):
            got = kube.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                           "osupgrades.osbuilder.io")
            conds = {c["type"]: c["status"] for c in got.get("status", {}).get("conditions", [])}
            if conds.get("Established") == "True":
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"CRD not established: {got.get('status')}")
        yield kube, cfg
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(tmp_path / "data", ignore_errors=True)


def test_fleet_scenario_on_real_k3s(k3s: tuple[Kube, Path], tmp_path: Path) -> None:
    kube, admin = k3s
    store = RealStore(kube)
    with pytest.raises(ApiError) as bad:  # the real API server applies the schema
        store.create("osupgrades", {"apiVersion": "osbuilder.io/v1alpha1",
                                    "kind": "OSUpgrade", "metadata": {"name": "bad"},
                                    "spec": {"version": "1.4.0", "concurrency": 0,
                                             "bundleURL": "https://x/y.raucb"}})
    assert bad.value.status == 422
    sh = shape(10)
    got = scenario(store, kube.endpoint, admin, sh, tmp_path, pods=False, report_s=20.0)
    log = (tmp_path / "controller.log").read_text()
    assert "forbidden" not in log.lower(), log[-3000:]  # RBAC granted all it asked
    check_rollout(store, got["fleet"], sh, got["marks"], got["metrics"], got["code"])
    print(f"real k3s, 10 nodes: {got['figures']}")
