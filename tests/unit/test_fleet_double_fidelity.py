"""The API double's fidelity: one test per behaviour of the real API server that the fleet
code relies on, as numbered in tests/helpers/kube_double.py's docstring (each with the
Kubernetes page it comes from). Requests go over HTTP through the controller's own client
(osbuilder.node.kubeapi), as the controller's do."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from osbuilder.node.fleet.credential import claims
from osbuilder.node.fleet.informer import Informer
from osbuilder.node.kubeapi import ApiError, Endpoint, Kube
from tests.helpers.fleet_scale import manifest_docs
from tests.helpers.kube_double import KubeDouble, merge_patch, serve

NODES = "/api/v1/nodes"
UPS = "/apis/osbuilder.io/v1alpha1/osupgrades"


@pytest.fixture
def api() -> Iterator[tuple[KubeDouble, Kube]]:
    d = KubeDouble(history_s=1.0, bookmark_s=0.4)
    for name in ("n1", "n2", "n3", "n4", "n5"):
        d.create("nodes", {"metadata": {"name": name, "labels": {"site": "a"}},
                           "spec": {}, "status": {"conditions": []}})
    with serve(d) as url:
        yield d, Kube(Endpoint(url, None), "test")


def watch(kube: Kube, rv: str, timeout_s: int = 3, **query: str) -> list[dict[str, Any]]:
    return list(kube.watch(NODES, rv, timeout_s, query))


# 1. JSON merge patch (RFC 7386), and 415 for any other patch type
def test_1_merge_patch_semantics(api: tuple[KubeDouble, Kube]) -> None:
    assert merge_patch({"a": {"b": 1, "c": [1, 2]}, "d": 1},
                       {"a": {"b": None, "c": [3]}, "e": {"f": None}}) == {
        "a": {"c": [3]}, "d": 1, "e": {}}  # RFC 7386 appendix A: null deletes, lists replace
    _, kube = api
    kube.patch(f"{NODES}/n1", {"metadata": {"labels": {"x": "1"}, "annotations": {"k": "v"}}})
    got = kube.patch(f"{NODES}/n1", {"metadata": {"labels": {"site": None},
                                                  "annotations": {"k": "w"}}})
    assert got["metadata"]["labels"] == {"x": "1"} and got["metadata"]["annotations"] == {
        "k": "w"}
    with pytest.raises(ApiError) as bad:
        kube.request("PATCH", f"{NODES}/n1", {"spec": {}}, content_type="application/json")
    assert bad.value.status == 415


# 2. 409 Conflict on a stale resourceVersion; AlreadyExists; a no-op write is no write
def test_2_optimistic_concurrency(api: tuple[KubeDouble, Kube]) -> None:
    _, kube = api
    old = kube.get(f"{NODES}/n1")
    kube.patch(f"{NODES}/n1", {"spec": {"unschedulable": True}})
    with pytest.raises(ApiError) as stale:
        kube.put(f"{NODES}/n1", old)
    assert stale.value.status == 409 and "modified" in stale.value.message
    with pytest.raises(ApiError) as stale_patch:
        kube.patch(f"{NODES}/n1", {"metadata": {"resourceVersion": old["metadata"][
            "resourceVersion"]}, "spec": {"unschedulable": False}})
    assert stale_patch.value.status == 409
    with pytest.raises(ApiError) as exists:
        kube.post(NODES, {"metadata": {"name": "n1"}})
    assert exists.value.status == 409
    cur = kube.get(f"{NODES}/n1")
    same = kube.patch(f"{NODES}/n1", {"spec": {"unschedulable": True}})
    assert same["metadata"]["resourceVersion"] == cur["metadata"]["resourceVersion"]
    assert watch(kube, cur["metadata"]["resourceVersion"], 1) == []  # and no event


# 3. LIST in pages from one snapshot, then WATCH from its resourceVersion
def test_3_paged_list_is_one_snapshot_and_watch_follows(api: tuple[KubeDouble, Kube]) -> None:
    _, kube = api
    first = kube.get(NODES, limit="2")
    assert [o["metadata"]["name"] for o in first["items"]] == ["n1", "n2"]
    token, rv = first["metadata"]["continue"], first["metadata"]["resourceVersion"]
    kube.patch(f"{NODES}/n4", {"metadata": {"labels": {"changed": "yes"}}})
    rest = kube.get(NODES, limit="2", **{"continue": token})
    n4 = next(o for o in rest["items"] if o["metadata"]["name"] == "n4")
    assert "changed" not in n4["metadata"]["labels"]  # the snapshot, not the change
    assert rest["metadata"]["resourceVersion"] == rv
    events = watch(kube, rv, 1)
    assert [(e["type"], e["object"]["metadata"]["labels"].get("changed")) for e in events] == [
        ("MODIFIED", "yes")]
    one = kube.get(NODES, fieldSelector="metadata.name=n3")["items"]
    assert [o["metadata"]["name"] for o in one] == ["n3"]


# 4. 410 Gone once the history window has passed, and the informer relists
def test_4_expired_watch_and_continue_are_410(api: tuple[KubeDouble, Kube]) -> None:
    d, kube = api
    first = kube.get(NODES, limit="2")
    rv = first["metadata"]["resourceVersion"]
    kube.patch(f"{NODES}/n4", {"metadata": {"labels": {"a": "b"}}})  # the event after rv
    time.sleep(1.1)  # past the double's 1 s window
    kube.patch(f"{NODES}/n5", {"metadata": {"labels": {"a": "b"}}})  # compacts the rest
    events = watch(kube, rv, 2)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
    with pytest.raises(ApiError) as gone:
        kube.get(NODES, limit="2", **{"continue": first["metadata"]["continue"]})
    assert gone.value.status == 410
    # the informer meets the same: a watch from its old version, a relist, the new state
    seen = threading.Event()
    inf = Informer(kube, NODES, seen.set, watch_s=5, log=lambda m: None)
    inf._items = {}
    assert inf._watch(rv) == "" and inf.expired == 1  # told to relist
    assert inf._relist() and inf.get("n5")["metadata"]["labels"]["a"] == "b"  # type: ignore[index]
    assert d.expired_watches == 2


# 5. bookmarks keep a selective watcher's version fresh: no 410 on reconnect
def test_5_bookmarks_spare_a_selective_watcher_the_relist() -> None:
    # as the real watch cache: history (75 s) outlasts the bookmark period (60 s)
    d = KubeDouble(history_s=2.5, bookmark_s=1.0)
    for name in ("n1", "n2"):
        d.create("nodes", {"metadata": {"name": name}})
    with serve(d) as url:
        kube = Kube(Endpoint(url, None), "test")
        assert watch(kube, str(d.rv), 1, fieldSelector="metadata.name=n1") == []  # < 2 s:
        busy = threading.Event()  # none, as its bookmark would be due 2 s before the end

        def churn() -> None:  # other nodes change; n1 never does
            while not busy.is_set():
                kube.patch(f"{NODES}/n2", {"metadata": {"labels": {"t": str(time.time())}}})
                time.sleep(0.05)
        t = threading.Thread(target=churn, daemon=True)
        t.start()
        try:
            inf = Informer(kube, NODES, lambda: None, {"fieldSelector": "metadata.name=n1"},
                           watch_s=3, log=lambda m: None).start()
            time.sleep(3.5)  # a reconnect 3 s in: n1's own version is compacted by then
            inf.stop()
            marks = watch(kube, str(d.rv), 3, fieldSelector="metadata.name=n1")
        finally:
            busy.set()
            t.join()
    assert inf.watches == 2 and inf.lists == 1 and inf.expired == 0
    assert marks and all(e["type"] == "BOOKMARK" and set(e["object"]["metadata"]) == {
        "resourceVersion"} for e in marks)
    assert int(marks[-1]["object"]["metadata"]["resourceVersion"]) > 2  # n2's, not n1's


# 6. eviction: 429 while a PodDisruptionBudget forbids it, else the pod goes
def test_6_eviction_respects_a_disruption_budget(api: tuple[KubeDouble, Kube]) -> None:
    d, kube = api
    for name in ("db-0", "web-0"):
        d.create("pods", {"metadata": {"name": name, "labels": {"app": name[:-2]}},
                          "spec": {"nodeName": "n1"}})
    d.pdbs.append({"namespace": "default", "matchLabels": {"app": "db"}, "minAvailable": 1})
    body = {"apiVersion": "policy/v1", "kind": "Eviction"}
    with pytest.raises(ApiError) as refused:
        kube.post("/api/v1/namespaces/default/pods/db-0/eviction", body)
    assert refused.value.status == 429 and "disruption budget" in refused.value.message
    kube.post("/api/v1/namespaces/default/pods/web-0/eviction", body)
    left = kube.get("/api/v1/pods", fieldSelector="spec.nodeName=n1")["items"]
    assert [p["metadata"]["name"] for p in left] == ["db-0"]


# 7. the status subresource: each write path changes its own part only
def test_7_status_subresource(api: tuple[KubeDouble, Kube]) -> None:
    _, kube = api
    up = kube.post(UPS, {"metadata": {"name": "u"}, "spec": {"version": "1"}})
    assert up["metadata"]["generation"] == 1
    up = kube.patch(f"{UPS}/u", {"spec": {"version": "2"}, "status": {"phase": "Hacked"}})
    assert up["metadata"]["generation"] == 2 and "status" not in up
    up = kube.patch(f"{UPS}/u/status", {"status": {"phase": "Progressing"},
                                         "spec": {"version": "3"}})
    assert (up["status"], up["spec"], up["metadata"]["generation"]) == (
        {"phase": "Progressing"}, {"version": "2"}, 2)
    up = kube.patch(f"{UPS}/u", {"metadata": {"labels": {"a": "b"}}})
    assert up["metadata"]["generation"] == 2  # metadata is not a generation


# 8. TokenRequest, and 401 for an expired token
def test_8_token_request_and_expiry(api: tuple[KubeDouble, Kube]) -> None:
    d, kube = api
    d.apply(manifest_docs())
    path = "/api/v1/namespaces/kube-system/serviceaccounts/osbuilder-controller/token"
    # a lifetime out of 10 min..2^32 s is refused (kubernetes'
    # pkg/apis/authentication/validation/validation.go, ValidateTokenRequest)
    for seconds, bound in ((599, "less than 10 minutes"), ((1 << 32) + 1, "larger than 2^32")):
        with pytest.raises(ApiError) as invalid:
            kube.post(path, {"spec": {"expirationSeconds": seconds}})
        assert invalid.value.status == 422 and bound in invalid.value.message
    got = kube.post(path, {"spec": {"expirationSeconds": 600}})
    token = got["status"]["token"]
    c = claims(token)
    assert c["sub"] == "system:serviceaccount:kube-system:osbuilder-controller"
    assert c["exp"] - c["iat"] == 600
    default = claims(kube.post(path, {"spec": {}})["status"]["token"])
    assert default["exp"] - default["iat"] == 3600  # the lifetime when none is asked for
    with pytest.raises(ApiError) as missing:
        kube.post(path.replace("osbuilder-controller", "nobody"), {"spec": {}})
    assert missing.value.status == 404
    sa = Kube(Endpoint(kube.endpoint.server, None, token), "sa")
    assert sa.get(NODES)["items"]  # a granted request
    issued = time.time()
    d.clock = lambda: issued + 601  # the double's clock, 10 minutes on
    with pytest.raises(ApiError) as expired:
        sa.get(NODES)
    assert expired.value.status == 401 and sa.unauthorized.is_set()


# 9. authorization: RBAC for ServiceAccounts, the Node authorizer for kubelets
def test_9_rbac_and_node_authorizer(api: tuple[KubeDouble, Kube]) -> None:
    d, kube = api
    d.apply(manifest_docs())
    token = kube.post("/api/v1/namespaces/kube-system/serviceaccounts/osbuilder-controller/"
                      "token", {"spec": {"expirationSeconds": 600}})["status"]["token"]
    sa = Kube(Endpoint(kube.endpoint.server, None, token), "sa")
    sa.patch(f"{NODES}/n1", {"spec": {"unschedulable": True}})  # granted
    for method, path in (("DELETE", f"{NODES}/n1"), ("GET", "/api/v1/namespaces/kube-system/"
                                                     "serviceaccounts/osbuilder-controller"),
                         ("PATCH", f"{UPS}/x"), ("GET", f"{NODES}/n1")):
        with pytest.raises(ApiError) as denied:
            sa.request(method, path, {} if method == "PATCH" else None,
                       content_type="application/merge-patch+json")
        assert denied.value.status == 403, path
        assert "system:serviceaccount:kube-system:osbuilder-controller" in denied.value.message
    d.tokens["kubelet-n1"] = ("system:node:n1", 0.0)
    node = Kube(Endpoint(kube.endpoint.server, None, "kubelet-n1"), "kubelet")
    node.patch(f"{NODES}/n1", {"metadata": {"labels": {"osbuilder.io/board": "pc"}}})
    assert node.get(NODES, fieldSelector="metadata.name=n2")["items"]  # reads any Node
    with pytest.raises(ApiError) as other:
        node.patch(f"{NODES}/n2", {"metadata": {"labels": {"x": "y"}}})
    assert other.value.status == 403
