"""Least privilege. The controller runs with its ServiceAccount's token only (fetched by the
real credential step) against the API double (TEST DOUBLE, tests/helpers/kube_double.py),
which records every request as (user, verb, resource, subresource, namespace, name). The
rules are read from the manifest the image ships (controller-rbac.yaml): every request
the controller made must be granted by them, and every verb and resource they grant must
have been used. Each node's watcher, with its kubelet identity, touches only its own Node.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from osbuilder.node.fleet import credential
from osbuilder.node.fleet.controller import Controller
from osbuilder.node.kubeapi import Kube, load_kubeconfig
from tests.helpers import rbac
from tests.helpers.fleet_checks import CONTROLLER
from tests.helpers.fleet_scale import MANIFESTS, kubeconfig, manifest_docs
from tests.helpers.fleet_sim import Fleet
from tests.helpers.kube_double import Call, KubeDouble, serve

RBAC_FILE = MANIFESTS / "controller-rbac.yaml"
URL = "https://updates.example.com/{board}/osbuilder-{board}-{version}.raucb"


def rules(docs: list[dict[str, Any]] | None = None) -> list[rbac.Rule]:
    return rbac.rules_for(CONTROLLER, docs or list(yaml.safe_load_all(RBAC_FILE.read_text())))


def ungranted(calls: list[Call], granted: list[rbac.Rule]) -> list[str]:
    return sorted({f"{c.verb} {c.request().what} ns={c.namespace or '-'} {c.name}"
                   for c in calls if c.user == CONTROLLER
                   and not rbac.allowed(granted, c.request())})


def unused(calls: list[Call], granted: list[rbac.Rule]) -> list[str]:
    mine = [c for c in calls if c.user == CONTROLLER]
    return [f"{r.source}: {verb} {what}" for r in granted for verb in sorted(r.verbs)
            for what in sorted(r.resources)
            if not any(c.verb == verb and c.request().what == what and r.allows(c.request())
                       for c in mine)]


def rollout_as_service_account(tmp: Path) -> list[Call]:
    """The 2-server + 4-agent fleet upgraded by a controller holding only its token; a
    pod behind a PodDisruptionBudget makes one eviction answer 429 and that drain time
    out; the Lease is created, renewed and released."""
    api = KubeDouble()
    api.apply(manifest_docs())
    api.tokens["admin-token"] = ("system:admin", 0.0)
    with serve(api) as url:
        fleet = Fleet(api, url, tmp / "nodes", node_token=lambda n: _kubelet(api, n))
        fleet.standard()
        api.create("pods", {"metadata": {"name": "db-0", "labels": {"app": "db"},
                                         "ownerReferences": [{"kind": "StatefulSet",
                                                              "controller": True}]},
                            "spec": {"nodeName": "agent-4"}})
        api.pdbs.append({"namespace": "default", "matchLabels": {"app": "db"},
                         "minAvailable": 1})
        fleet.boot_all()
        cfg = tmp / "controller.kubeconfig"
        credential.obtain(kubeconfig(tmp / "admin.yaml", url, "admin-token"), cfg, wait_s=5)
        ctl = Controller(Kube(load_kubeconfig(cfg), "osbuilder-controller/ctl"), "ctl",
                         lease_s=3, idle_s=0.3, busy_s=0.05, log=lambda m: None)
        stop = threading.Event()
        t = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
        t.start()
        try:
            api.create("osupgrades", {
                "apiVersion": "osbuilder.io/v1alpha1", "kind": "OSUpgrade",
                "metadata": {"name": "to-1.4.0"},
                "spec": {"version": "1.4.0", "bundleURL": URL, "concurrency": 2,
                         "maxFailures": 2, "drain": {"timeout": "1s"},
                         "nodeSelector": {"matchLabels": {"site": "plant-7"}}}})
            end = time.monotonic() + 30
            while (api.get("osupgrades", "to-1.4.0").get("status") or {}).get(
                    "phase") != "Complete":
                assert time.monotonic() < end, api.get("osupgrades", "to-1.4.0")
                time.sleep(0.05)
            time.sleep(1.2)  # past a Lease renewal
        finally:
            ctl.stop(stop)
            t.join(10)
            fleet.shutdown()
        return list(api.calls)


def _kubelet(api: KubeDouble, name: str) -> str:
    api.tokens[f"kubelet-{name}"] = (f"{rbac.NODE_PREFIX}{name}", 0.0)
    return f"kubelet-{name}"


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> list[Call]:
    return rollout_as_service_account(tmp_path_factory.mktemp("rbac"))


def test_controller_uses_exactly_what_its_cluster_role_grants(calls: list[Call]) -> None:
    granted = rules()
    mine = [c for c in calls if c.user == CONTROLLER]
    assert len(mine) > 50
    assert ungranted(calls, granted) == []
    assert unused(calls, granted) == []
    assert [c for c in calls if c.code in (401, 403)] == []
    assert any(c.subresource == "eviction" and c.code == 429 for c in mine)  # the PDB path
    assert {c.verb for c in mine if c.resource == "leases"} == {"get", "create", "update"}
    # nothing else speaks for the controller: no admin credential after the token step
    admin = [c for c in calls if c.user == "system:admin"]
    assert [(c.verb, c.resource, c.subresource) for c in admin] == [
        ("create", "serviceaccounts", "token")]
    # each kubelet identity read and wrote its own Node only
    for c in calls:
        if c.user.startswith(rbac.NODE_PREFIX):
            own = c.user.removeprefix(rbac.NODE_PREFIX)
            assert c.resource == "nodes" and (c.name == own or (
                c.verb in ("list", "watch") and f"metadata.name%3D{own}" in c.query)), c


def test_the_check_fails_on_a_request_the_rules_do_not_grant(calls: list[Call]) -> None:
    """Without its eviction rule the same controller makes ungranted requests, and the
    comparison names them; with an extra rule, the rule is named unused."""
    docs = list(yaml.safe_load_all(RBAC_FILE.read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    role["rules"] = [r for r in role["rules"] if r["resources"] != ["pods/eviction"]]
    missing = ungranted(calls, rules(docs))
    assert missing and all(m.startswith("create pods/eviction ns=default ") for m in missing)
    role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    assert unused(calls, rules(docs)) == ["ClusterRole osbuilder-controller: get secrets"]
