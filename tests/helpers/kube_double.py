"""An in-process Kubernetes API server: TEST DOUBLE.

A real kube-apiserver (or k3s) cannot run here, so this serves, over HTTP on loopback, the
part of the API the fleet controller and node watcher use, with the same wire behaviour:
LIST with resourceVersion, WATCH streams (chunked JSON lines, replay from a resourceVersion,
timeoutSeconds), JSON merge patches (RFC 7386), the status subresource (a PATCH of the main
object leaves .status alone, and the other way round; metadata.generation counts spec
changes), POST/PUT with 409 on conflicts, Evictions refused with 429 by a
PodDisruptionBudget, Leases, Events. No authentication: clients are told apart by their
User-Agent. tests/e2e/test_fleet_real_k3s.py runs the same scenario on a real k3s.
"""

from __future__ import annotations

import copy
import json
import queue
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
CLUSTER = ("nodes", "osupgrades")


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiFail(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Call:
    agent: str
    method: str
    path: str
    t: float


@dataclass
class KubeDouble:
    """The store and its rules; `serve()` puts it on a loopback port."""

    rv: int = 0
    store: dict[str, dict[str, Obj]] = field(default_factory=dict)  # collection → key → obj
    history: list[tuple[int, str, str, Obj]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    pdbs: list[Obj] = field(default_factory=list)  # {namespace, matchLabels, minAvailable}
    on_call: Callable[[Call], None] | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    watchers: list[tuple[str, Callable[[Obj], bool], queue.Queue[Any]]] = field(
        default_factory=list)

    # -- store -----------------------------------------------------------------------------
    def _key(self, coll: str, obj: Obj) -> str:
        m = obj["metadata"]
        return m["name"] if coll in CLUSTER else f"{m.get('namespace', 'default')}/{m['name']}"

    def _commit(self, coll: str, kind: str, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        items = self.store.setdefault(coll, {})
        if kind == "DELETED":
            items.pop(self._key(coll, obj), None)
        else:
            items[self._key(coll, obj)] = obj
        snap = copy.deepcopy(obj)
        self.history.append((self.rv, coll, kind, snap))
        for c, match, q in self.watchers:
            if c == coll and match(snap):
                q.put({"type": kind, "object": snap})
        return copy.deepcopy(obj)

    def create(self, coll: str, obj: Obj) -> Obj:
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            if coll not in CLUSTER:
                meta.setdefault("namespace", "default")
            if self._key(coll, obj) in self.store.get(coll, {}):
                raise ApiFail(409, f"{coll} {meta['name']} already exists")
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_rfc3339())
            meta["generation"] = 1
            return self._commit(coll, "ADDED", obj)

    def get(self, coll: str, key: str) -> Obj:
        with self.lock:
            obj = self.store.get(coll, {}).get(key)
            if obj is None:
                raise ApiFail(404, f"{coll} {key} not found")
            return copy.deepcopy(obj)

    def items(self, coll: str) -> list[Obj]:
        with self.lock:
            return [copy.deepcopy(o) for o in self.store.get(coll, {}).values()]

    def patch(self, coll: str, key: str, patch: Obj, subresource: str = "") -> Obj:
        with self.lock:
            old = self.get(coll, key)
            if subresource == "status":
                new = dict(old, status=merge_patch(old.get("status") or {},
                                                   patch.get("status") or {}))
            else:
                new = merge_patch(old, {k: v for k, v in patch.items() if k != "status"
                                        or coll not in ("osupgrades", "nodes", "pods")})
                rv = (patch.get("metadata") or {}).get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise ApiFail(409, "the object has been modified")
                if new.get("spec") != old.get("spec"):
                    new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            return self._commit(coll, "MODIFIED", new)

    def put(self, coll: str, key: str, obj: Obj) -> Obj:
        with self.lock:
            old = self.get(coll, key)
            if obj["metadata"].get("resourceVersion") != old["metadata"]["resourceVersion"]:
                raise ApiFail(409, "Operation cannot be fulfilled: the object has been modified")
            return self._commit(coll, "MODIFIED", copy.deepcopy(obj))

    def delete(self, coll: str, key: str) -> Obj:
        with self.lock:
            return self._commit(coll, "DELETED", self.get(coll, key))

    def evict(self, ns: str, name: str) -> Obj:
        with self.lock:
            pod = self.get("pods", f"{ns}/{name}")
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
                                  "disruption budget.")
            self.delete("pods", f"{ns}/{name}")
            return {"kind": "Status", "status": "Success"}

    def node_history(self, name: str) -> list[Obj]:
        with self.lock:
            return [o for _, c, _, o in self.history if c == "nodes"
                    and o["metadata"]["name"] == name]

    # -- watch -----------------------------------------------------------------------------
    @contextmanager
    def subscribe(self, coll: str, match: Callable[[Obj], bool], since: int
                  ) -> Iterator[queue.Queue[Any]]:
        q: queue.Queue[Any] = queue.Queue()
        with self.lock:
            for rv, c, kind, obj in self.history:
                if rv > since and c == coll and match(obj):
                    q.put({"type": kind, "object": obj})
            entry = (coll, match, q)
            self.watchers.append(entry)
        try:
            yield q
        finally:
            with self.lock:
                self.watchers.remove(entry)


def _selector(query: dict[str, list[str]]) -> Callable[[Obj], bool]:
    rules = []
    for part in (query.get("fieldSelector") or [""])[0].split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            rules.append((k, v))

    def match(obj: Obj) -> bool:
        for k, v in rules:
            cur: Any = obj
            for seg in k.split("."):
                cur = cur.get(seg) if isinstance(cur, dict) else None
            if cur != v:
                return False
        return True
    return match


ROUTES = {
    ("api", "v1", "nodes"): "nodes",
    ("api", "v1", "pods"): "pods",
    ("api", "v1", "events"): "events",
    ("apis", "osbuilder.io", "v1alpha1", "osupgrades"): "osupgrades",
    ("apis", "coordination.k8s.io", "v1", "leases"): "leases",
}


def _route(path: str) -> tuple[str, str, str, str]:
    """(collection, namespace, name, subresource) of an API path."""
    segs = [s for s in path.split("/") if s]
    ns = ""
    if "namespaces" in segs:
        i = segs.index("namespaces")
        ns = segs[i + 1]
        segs = segs[:i] + segs[i + 2:]
    for prefix, coll in ROUTES.items():
        if tuple(segs[:len(prefix)]) == prefix:
            rest = segs[len(prefix):]
            return coll, ns, rest[0] if rest else "", rest[1] if len(rest) > 1 else ""
    if segs[:2] == ["api", "v1"] and len(segs) >= 3:
        return segs[2], ns, segs[3] if len(segs) > 3 else "", segs[4] if len(segs) > 4 else ""
    raise ApiFail(404, f"no route for {path}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: KubeDouble

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Obj) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> Obj:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else {}

    def _handle(self, method: str) -> None:
        u = urlsplit(self.path)
        query = parse_qs(u.query)
        call = Call(self.headers.get("User-Agent", ""),
                    "WATCH" if query.get("watch") else method, u.path, time.time())
        with self.api.lock:
            self.api.calls.append(call)
        if self.api.on_call is not None:
            self.api.on_call(call)
        body = self._body()  # always read: a kept-alive connection must not see it later
        try:
            coll, ns, name, sub = _route(u.path)
            key = f"{ns}/{name}" if ns else name
            if method == "GET" and not name:
                if query.get("watch"):
                    return self._watch(coll, query)
                match = _selector(query)
                with self.api.lock:
                    items = [o for o in self.api.items(coll) if match(o)
                             and (not ns or o["metadata"].get("namespace") == ns)]
                    rv = str(self.api.rv)
                return self._send(200, {"kind": "List", "items": items,
                                        "metadata": {"resourceVersion": rv}})
            if method == "GET":
                return self._send(200, self.api.get(coll, key))
            if method == "POST" and sub == "eviction":
                return self._send(201, self.api.evict(ns, name))
            if method == "POST":
                if coll not in CLUSTER:
                    body.setdefault("metadata", {}).setdefault("namespace", ns or "default")
                return self._send(201, self.api.create(coll, body))
            if method == "PATCH":
                return self._send(200, self.api.patch(coll, key, body, sub))
            if method == "PUT":
                return self._send(200, self.api.put(coll, key, body))
            if method == "DELETE":
                return self._send(200, self.api.delete(coll, key))
            raise ApiFail(405, f"{method} not allowed")
        except ApiFail as exc:
            self._send(exc.code, {"kind": "Status", "code": exc.code, "message": exc.message})

    def _watch(self, coll: str, query: dict[str, list[str]]) -> None:
        since = int((query.get("resourceVersion") or ["0"])[0] or 0)
        end = time.monotonic() + float((query.get("timeoutSeconds") or ["60"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with self.api.subscribe(coll, _selector(query), since) as q:
            try:
                while time.monotonic() < end and not getattr(self.server, "closing", False):
                    try:
                        ev = q.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    line = json.dumps(ev).encode() + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


@contextmanager
def serve(api: KubeDouble, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """The double on a loopback port; yields its base URL (https with `tls`)."""
    handler = type("Handler", (_Handler,), {"api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        scheme = "https" if tls is not None else "http"
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.closing = True  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
