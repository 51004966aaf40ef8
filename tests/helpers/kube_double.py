"""An in-process Kubernetes API server: TEST DOUBLE.

A real kube-apiserver (or k3s) cannot run here, so this serves, over HTTP on loopback
(kube_double_http.py), the part of the API that the fleet controller, its credential step
and the node watcher use. Each behaviour of the real server they rely on, with the page
that documents it; each has a test against this double in
tests/unit/test_fleet_double_fidelity.py, and tests/e2e/test_fleet_real_k3s.py runs the
fleet scenario (tests/helpers/fleet_scale.py) on a real k3s.

1. JSON merge patch, RFC 7386: maps merge key by key, null deletes a key, a list is
   replaced whole; a PATCH must say application/merge-patch+json (else 415).
   https://www.rfc-editor.org/rfc/rfc7386
   https://kubernetes.io/docs/reference/using-api/api-concepts/#patch-and-apply
2. Optimistic concurrency: a PUT, or a PATCH carrying metadata.resourceVersion, with a
   resourceVersion other than the stored one fails 409 Conflict; creating an existing name
   409 AlreadyExists; a write that changes nothing keeps the resourceVersion, no event.
   https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#concurrency-control-and-consistency
3. LIST, then WATCH from the list's resourceVersion: the events after it, in order; LIST
   in pages (limit, continue), all pages from the first page's snapshot; fieldSelector
   metadata.name, and spec.nodeName for pods.
   https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
   https://kubernetes.io/docs/reference/using-api/api-concepts/#retrieving-large-results-sets-in-chunks
4. 410 Gone: history is kept for a window only (the API server's watch cache keeps about
   75 s: eventFreshDuration, k8s.io/apiserver/pkg/storage/cacher/watch_cache.go); a watch
   from an older resourceVersion gets an ERROR event with code 410, a continue token
   whose snapshot is older an HTTP 410 (reason Expired). (Same page as 3.)
5. Watch bookmarks (allowWatchBookmarks=true): BOOKMARK events carrying only the current
   resourceVersion, about every minute and 2 s before the watch's timeout
   (cacheWatcher.nextBookmarkTime, k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go).
   https://kubernetes.io/docs/reference/using-api/api-concepts/#watch-bookmarks
6. Eviction: POST pods/NAME/eviction removes the pod, or answers 429 Too Many Requests
   while a PodDisruptionBudget forbids it.
   https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/
7. Status subresource (nodes, pods, OSUpgrades): writes to the object leave .status alone,
   writes to /status change .status only; metadata.generation counts the changes outside
   metadata and status.
   https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#status-subresource
8. TokenRequest: POST serviceaccounts/NAME/token issues a bearer token (a JWT carrying
   exp) for an existing ServiceAccount, for expirationSeconds (3600 when not given; from
   600 to 2^32, else 422 Invalid: ValidateTokenRequest,
   kubernetes/pkg/apis/authentication/validation/validation.go); a request with an expired
   token is answered 401.
   https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-request-v1/
9. Authorization: ServiceAccount tokens through RBAC, kubelet identities through the Node
   authorizer (tests/helpers/rbac.py); a request neither allows is answered 403.
   https://kubernetes.io/docs/reference/access-authn-authz/rbac/

Not modelled: label selectors, strategic merge and apply patches, admission webhooks,
schema validation of custom resources, graceful termination (an evicted pod is gone at
once). Tokens this double did not issue (none, or a test's admin token) are not checked.
Every request is recorded as a Call (user, verb, resource, subresource, namespace, name).
"""

from __future__ import annotations

import base64
import copy
import json
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.helpers import rbac
from tests.helpers.kube_double_watch import ApiFail, Watching

Obj = dict[str, Any]
CLUSTER = ("nodes", "osupgrades", "clusterroles", "clusterrolebindings")
WITH_STATUS = ("nodes", "pods", "osupgrades")  # have a status subresource
MIN_TOKEN_S, MAX_TOKEN_S = 600, 1 << 32  # a TokenRequest's expirationSeconds (8. above)
KINDS = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
         "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
         "RoleBinding": "rolebindings", "CustomResourceDefinition": "customresourcedefinitions"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386. Shares untouched subtrees with `target`: stored objects are never changed
    in place, so history and watchers can hold them without copies."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Call:
    agent: str
    method: str  # HTTP method, or WATCH
    path: str
    t: float
    user: str = ""
    verb: str = ""
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    query: str = ""
    size: int = 0  # request body bytes
    code: int = 0  # the answer's HTTP status

    def request(self) -> rbac.Request:
        return rbac.Request(self.user, self.verb, self.group, self.resource,
                            self.subresource, self.namespace, self.name)


def jwt(claims: Mapping[str, Any]) -> str:
    """A token shaped like the API server's (header.claims.signature); unsigned: only this
    double checks it, by lookup."""
    def part(d: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part(claims)}.{secrets.token_urlsafe(24)}"


@dataclass
class KubeDouble(Watching):
    """The store and its rules; `serve()` puts it on a loopback port. LIST and WATCH are
    in kube_double_watch.py."""

    history_s: float = 75.0  # watch history kept (the API server's watch cache)
    bookmark_s: float = 60.0  # BOOKMARK period within one watch
    rv: int = 0
    store: dict[str, dict[str, Obj]] = field(default_factory=dict)  # collection → key → obj
    calls: list[Call] = field(default_factory=list)
    pdbs: list[Obj] = field(default_factory=list)  # {namespace, matchLabels, minAvailable}
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # → (user, expiry)
    clock: Callable[[], float] = time.time  # tokens' issue and expiry (tests move it on)
    rbac_docs: list[Obj] = field(default_factory=list)  # Roles and bindings applied
    on_call: Callable[[Call], None] | None = None
    expired_watches: int = 0  # watches answered 410
    lock: threading.RLock = field(default_factory=threading.RLock)
    _hist: list[tuple[int, float, str, str, Obj]] = field(default_factory=list)
    _hrv: list[int] = field(default_factory=list)
    _hstart: int = 0
    compacted: int = 0  # events up to this resourceVersion are gone
    _named: dict[tuple[str, str], list[queue.Queue[Any]]] = field(default_factory=dict)
    _any: dict[str, list[tuple[Callable[[Obj], bool], queue.Queue[Any]]]] = field(
        default_factory=dict)
    _snaps: dict[str, tuple[int, list[Obj]]] = field(default_factory=dict)
    _rules: dict[str, list[rbac.Rule]] = field(default_factory=dict)
    _pods_on: dict[str, set[str]] = field(default_factory=dict)
    _pod_node: dict[str, str] = field(default_factory=dict)

    # -- store -------------------------------------------------------------------------------
    def key(self, coll: str, obj: Obj) -> str:
        m = obj["metadata"]
        return m["name"] if coll in CLUSTER else f"{m.get('namespace', 'default')}/{m['name']}"

    def _commit(self, coll: str, kind: str, obj: Obj) -> Obj:
        self.rv += 1
        now = time.time()
        obj = dict(obj, metadata=dict(obj["metadata"], resourceVersion=str(self.rv)))
        items = self.store.setdefault(coll, {})
        key = self.key(coll, obj)
        if kind == "DELETED":
            items.pop(key, None)
        else:
            items[key] = obj
        self._hist.append((self.rv, now, coll, kind, obj))
        self._hrv.append(self.rv)
        self._compact(now)
        self._index(coll, key, kind, obj)
        return obj

    # Writes return the stored object itself with copy_out=False (the HTTP face, which only
    # serialises it), else a copy the caller may change. Copies are made outside the lock.
    def create(self, coll: str, obj: Obj, copy_out: bool = True) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if coll not in CLUSTER:
            meta.setdefault("namespace", "default")
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", rfc3339())
        meta["generation"] = 1
        with self.lock:
            if self.key(coll, obj) in self.store.get(coll, {}):
                raise ApiFail(409, f'{coll} "{meta["name"]}" already exists', "AlreadyExists")
            out = self._commit(coll, "ADDED", obj)
        return copy.deepcopy(out) if copy_out else out

    def peek(self, coll: str, key: str) -> Obj:
        """The stored object itself: read-only, for this package's helpers."""
        obj = self.store.get(coll, {}).get(key)
        if obj is None:
            raise ApiFail(404, f'{coll} "{key}" not found', "NotFound")
        return obj

    def get(self, coll: str, key: str, copy_out: bool = True) -> Obj:
        with self.lock:
            out = self.peek(coll, key)
        return copy.deepcopy(out) if copy_out else out

    def items(self, coll: str, field_selector: str = "") -> list[Obj]:
        found, _, _ = self.list_page(coll, field_selector, "", 0, "")
        return copy.deepcopy(found)

    def patch(self, coll: str, key: str, patch: Obj, subresource: str = "",
              copy_out: bool = True) -> Obj:
        out = self._patch(coll, key, patch, subresource)
        return copy.deepcopy(out) if copy_out else out

    def _patch(self, coll: str, key: str, patch: Obj, subresource: str) -> Obj:
        with self.lock:
            old = self.peek(coll, key)
            if subresource == "status":
                new = dict(old, status=merge_patch(old.get("status") or {},
                                                   patch.get("status") or {}))
            else:
                rv = (patch.get("metadata") or {}).get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise ApiFail(409, f'Operation cannot be fulfilled on {coll} "{key}": the '
                                  "object has been modified; please apply your changes to the "
                                  "latest version and try again", "Conflict")
                new = merge_patch(old, {k: v for k, v in patch.items()
                                        if k != "status" or coll not in WITH_STATUS})
            return self._write(coll, old, new)

    def put(self, coll: str, key: str, obj: Obj, copy_out: bool = True) -> Obj:
        new = {k: v for k, v in copy.deepcopy(obj).items() if k != "status"
               or coll not in WITH_STATUS}
        with self.lock:
            old = self.peek(coll, key)
            rv = obj.get("metadata", {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:  # none: unconditional
                raise ApiFail(409, f'Operation cannot be fulfilled on {coll} "{key}": the '
                              "object has been modified", "Conflict")
            if coll in WITH_STATUS and "status" in old:
                new["status"] = old["status"]
            out = self._write(coll, old, new)
        return copy.deepcopy(out) if copy_out else out

    def _write(self, coll: str, old: Obj, new: Obj) -> Obj:
        def body(o: Obj) -> Obj:
            return {k: v for k, v in o.items() if k not in ("metadata", "status")}
        meta = dict(new.get("metadata") or {})
        for k in ("uid", "creationTimestamp", "name", "namespace", "generation"):
            if k in old["metadata"]:
                meta[k] = old["metadata"][k]
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        new = dict(new, metadata=meta)
        if new == old:  # a no-op write is no write: same resourceVersion, no event
            return old
        if body(new) != body(old):
            meta["generation"] = int(old["metadata"].get("generation") or 1) + 1
        return self._commit(coll, "MODIFIED", new)

    def delete(self, coll: str, key: str, copy_out: bool = True) -> Obj:
        with self.lock:
            out = self._commit(coll, "DELETED", self.peek(coll, key))
        return copy.deepcopy(out) if copy_out else out

    def evict(self, ns: str, name: str) -> Obj:
        with self.lock:
            pod = self.peek("pods", f"{ns}/{name}")
            labels = pod["metadata"].get("labels") or {}
            for pdb in self.pdbs:
                sel = pdb["matchLabels"]
                if pdb.get("namespace", "default") != ns or any(
                        labels.get(k) != v for k, v in sel.items()):
                    continue
                healthy = sum(1 for p in self.store.get("pods", {}).values()
                              if p["metadata"].get("namespace") == ns and all(
                                  (p["metadata"].get("labels") or {}).get(k) == v
                                  for k, v in sel.items()))
                if healthy - 1 < pdb["minAvailable"]:
                    raise ApiFail(429, "Cannot evict pod as it would violate the pod's "
                                  "disruption budget.", "TooManyRequests")
            self.delete("pods", f"{ns}/{name}")
            return {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    def node_history(self, name: str) -> list[Obj]:
        """The node's versions within the history window, oldest first."""
        with self.lock:
            return [o for _, _, c, _, o in self._hist[self._hstart:] if c == "nodes"
                    and o["metadata"]["name"] == name]

    # -- manifests, tokens, authorization ----------------------------------------------------
    def apply(self, docs: Iterable[Obj]) -> None:
        """Create the objects of manifest documents (what k3s's deploy controller does with
        the manifests folder); RBAC objects also become the authorizer's policy."""
        for d in docs:
            coll = KINDS.get(d.get("kind", ""))
            if coll is None:
                raise ApiFail(400, f"the double does not apply kind {d.get('kind')}")
            self.create(coll, d)
            if coll in ("clusterroles", "clusterrolebindings", "roles", "rolebindings"):
                with self.lock:
                    self.rbac_docs.append(copy.deepcopy(d))
                    self._rules.clear()

    def request_token(self, ns: str, name: str, seconds: int) -> Obj:
        """TokenRequest as the API serves it: the lifetime checked first (8. above)."""
        if not MIN_TOKEN_S <= seconds <= MAX_TOKEN_S:
            bound = ("less than 10 minutes" if seconds < MIN_TOKEN_S
                     else "larger than 2^32 seconds")
            raise ApiFail(422, 'TokenRequest.authentication.k8s.io "" is invalid: '
                          f"spec.expirationSeconds: Invalid value: {seconds}: may not "
                          f"specify a duration {bound}", "Invalid")
        return self.issue_token(ns, name, seconds)

    def issue_token(self, ns: str, name: str, seconds: float) -> Obj:
        """A token of any lifetime: tests use short ones to see the controller renew."""
        self.peek("serviceaccounts", f"{ns}/{name}")  # 404 unless it exists
        user = f"{rbac.SA_PREFIX}{ns}:{name}"
        now = self.clock()
        exp = now + seconds  # the whole lifetime: the JWT's claims are whole seconds
        token = jwt({"iss": "https://kubernetes.default.svc.cluster.local", "sub": user,
                     "aud": ["https://kubernetes.default.svc.cluster.local"],
                     "exp": int(exp), "iat": int(now), "nbf": int(now)})
        with self.lock:
            self.tokens[token] = (user, exp)
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
                "status": {"token": token, "expirationTimestamp": rfc3339(int(exp))}}

    def authenticate(self, authorization: str) -> str:
        """The user of a bearer token; '' (not checked) for tokens this double did not issue."""
        token = authorization.removeprefix("Bearer ").strip()
        user, exp = self.tokens.get(token, ("", 0.0))
        if user and exp and self.clock() >= exp:
            raise ApiFail(401, "Unauthorized", "Unauthorized")
        return user

    def authorize(self, call: Call) -> None:
        user = call.user
        if user.startswith(rbac.NODE_PREFIX):
            ok = rbac.node_allows(call.request())
        elif user.startswith(rbac.SA_PREFIX):
            rules = self._rules.get(user)  # no lock: a dict read, every request
            if rules is None:
                with self.lock:
                    rules = self._rules[user] = rbac.rules_for(user, self.rbac_docs)
            ok = rbac.allowed(rules, call.request())
        else:
            ok = True  # an admin credential of the test
        if not ok:
            raise ApiFail(403, rbac.forbidden_message(call.request()), "Forbidden")


from tests.helpers.kube_double_http import serve  # noqa: E402  (the double's HTTP face)

__all__ = ["ApiFail", "Call", "KubeDouble", "merge_patch", "serve"]
