"""The API double's HTTP face (TEST DOUBLE, see tests/helpers/kube_double.py for what it
models and where each behaviour is documented): Kubernetes REST paths onto the store,
authentication and authorization, JSON and chunked watch streams."""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from tests.helpers import rbac

if TYPE_CHECKING:
    from tests.helpers.kube_double import Call, KubeDouble

Obj = dict[str, Any]
# path prefix → (collection, API group, kind)
ROUTES: dict[tuple[str, ...], tuple[str, str, str]] = {
    ("api", "v1", "nodes"): ("nodes", "", "Node"),
    ("api", "v1", "pods"): ("pods", "", "Pod"),
    ("api", "v1", "events"): ("events", "", "Event"),
    ("api", "v1", "serviceaccounts"): ("serviceaccounts", "", "ServiceAccount"),
    ("apis", "osbuilder.io", "v1alpha1", "osupgrades"): ("osupgrades", "osbuilder.io",
                                                         "OSUpgrade"),
    ("apis", "coordination.k8s.io", "v1", "leases"): ("leases", "coordination.k8s.io", "Lease"),
}
MERGE = "application/merge-patch+json"


def route(path: str) -> tuple[str, str, str, str, str, str]:
    """(collection, group, kind, namespace, name, subresource) of an API path."""
    from tests.helpers.kube_double import ApiFail

    segs = [s for s in path.split("/") if s]
    ns = ""
    if "namespaces" in segs[:4]:
        i = segs.index("namespaces")
        ns = segs[i + 1] if len(segs) > i + 1 else ""
        segs = segs[:i] + segs[i + 2:]
    for prefix, (coll, group, kind) in ROUTES.items():
        if tuple(segs[:len(prefix)]) == prefix:
            rest = segs[len(prefix):]
            return (coll, group, kind, ns, rest[0] if rest else "",
                    rest[1] if len(rest) > 1 else "")
    raise ApiFail(404, f"the server could not find the requested resource ({path})", "NotFound")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK, 40 ms a request (Go's servers, kube-apiserver's, set NODELAY)
    disable_nagle_algorithm = True
    api: KubeDouble

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, call: Call | None = None) -> None:
        if call is not None:
            call.code = code  # before the answer leaves: the client may look at once
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _call(self, method: str) -> tuple[Call, bytes, dict[str, list[str]]]:
        from tests.helpers.kube_double import Call

        u = urlsplit(self.path)
        query = parse_qs(u.query)
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""  # always read: keep-alive must not see it
        call = Call(self.headers.get("User-Agent", ""),
                    "WATCH" if query.get("watch") else method, u.path, time.time(),
                    query=u.query, size=len(raw))
        self.api.calls.append(call)  # atomic: no lock for the busiest line of the double
        return call, raw, query

    def _handle(self, method: str) -> None:
        from tests.helpers.kube_double import ApiFail

        call, raw, query = self._call(method)
        try:
            coll, call.group, kind, ns, name, sub = route(call.path)
            call.resource, call.namespace, call.name, call.subresource = coll, ns, name, sub
            call.verb = ("watch" if call.method == "WATCH" else "list" if method == "GET"
                         and not name else rbac.VERBS[method])
            call.user = self.api.authenticate(self.headers.get("Authorization", ""))
            if self.api.on_call is not None:
                self.api.on_call(call)
            self.api.authorize(call)
            if call.verb == "watch":
                return self._watch(call, coll, kind, ns, query)
            if call.verb == "list":
                return self._list(call, coll, kind, ns, query)
            if method == "PATCH" and self.headers.get("Content-Type") != MERGE:
                raise ApiFail(415, f"the body of the request was in an unknown format - "
                              f"accepted media types include: {MERGE}", "UnsupportedMediaType")
            body = json.loads(raw) if raw else {}
            self._send(*self._dispatch(method, coll, ns, name, sub, body), call)
        except ApiFail as exc:
            self._send(exc.code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "code": exc.code, "reason": exc.reason,
                                  "message": exc.message}, call)

    def _dispatch(self, method: str, coll: str, ns: str, name: str, sub: str, body: Obj
                  ) -> tuple[int, Obj]:
        from tests.helpers.kube_double import ApiFail

        api, key = self.api, f"{ns}/{name}" if ns else name
        if method == "GET":
            return 200, api.get(coll, key, copy_out=False)
        if method == "POST" and sub == "eviction":
            return 201, api.evict(ns, name)
        if method == "POST" and coll == "serviceaccounts" and sub == "token":
            seconds = int((body.get("spec") or {}).get("expirationSeconds") or 3600)
            return 201, api.request_token(ns, name, seconds)
        if method == "POST" and not name:
            if ns:
                body.setdefault("metadata", {}).setdefault("namespace", ns)
            return 201, api.create(coll, body, copy_out=False)
        if method == "PATCH":
            return 200, api.patch(coll, key, body, sub, copy_out=False)
        if method == "PUT":
            return 200, api.put(coll, key, body, copy_out=False)
        if method == "DELETE":
            return 200, api.delete(coll, key, copy_out=False)
        raise ApiFail(405, f"{method} is not supported here", "MethodNotAllowed")

    def _list(self, call: Call, coll: str, kind: str, ns: str, query: dict[str, list[str]]
              ) -> None:
        def one(k: str) -> str:
            return (query.get(k) or [""])[0]
        items, rv, token = self.api.list_page(coll, one("fieldSelector"), ns,
                                              int(one("limit") or 0), one("continue"))
        meta = {"resourceVersion": rv, **({"continue": token} if token else {})}
        self._send(200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": meta,
                         "items": items}, call)

    def _watch(self, call: Call, coll: str, kind: str, ns: str, query: dict[str, list[str]]
               ) -> None:
        def one(k: str, default: str) -> str:
            return (query.get(k) or [default])[0] or default
        since = int(one("resourceVersion", "0"))
        start = time.monotonic()
        deadline = start + float(one("timeoutSeconds", "1800"))
        bookmarks = one("allowWatchBookmarks", "false") == "true"

        def next_bookmark(now: float) -> float:
            # every bookmark_s, and 2 s before the deadline; none once that has passed
            t = min(now + self.api.bookmark_s, deadline - 2)
            return t if t > now else float("inf")
        due = next_bookmark(start) if bookmarks else float("inf")
        call.code = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with self.api.subscribe(coll, one("fieldSelector", ""), since) as q:
            try:
                while not getattr(self.server, "closing", False):
                    now = time.monotonic()
                    if now >= deadline:
                        break
                    try:
                        ev = q.get(timeout=max(min(deadline, due) - now, 0.001))
                    except queue.Empty:
                        if time.monotonic() >= due:
                            due = next_bookmark(time.monotonic())
                            self._bookmark(q, kind)
                        continue
                    if ev is None:
                        break
                    if ns and ev["object"].get("metadata", {}).get("namespace") != ns:
                        continue
                    self._chunk(ev)
                    if ev["type"] == "ERROR":  # the server ends a watch after an error
                        break
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        self.close_connection = True

    def _bookmark(self, q: queue.Queue[Any], kind: str) -> None:
        # only with nothing queued: every event up to the bookmark's version was sent
        with self.api.lock:
            rv = str(self.api.rv) if q.empty() else ""
        if rv:
            self._chunk({"type": "BOOKMARK", "object": {"kind": kind, "metadata": {
                "resourceVersion": rv}}})

    def _chunk(self, ev: Obj) -> None:
        line = json.dumps(ev).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
        self.wfile.flush()

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 2048  # a thousand watchers connect at once at boot
    closing = False


@contextmanager
def serve(api: KubeDouble, tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """The double on a loopback port; yields its base URL (https with `tls`)."""
    handler = type("Handler", (_Handler,), {"api": api})
    server = _Server(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        scheme = "https" if tls is not None else "http"
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.closing = True
        api.close_watches()
        server.shutdown()
        server.server_close()
