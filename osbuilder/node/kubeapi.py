"""A small Kubernetes API client on the standard library (http.client, ssl): JSON requests,
merge patches and watch streams, with a kubeconfig's client certificate or bearer token.

Neither `requests` nor the `kubernetes` package: the node watcher runs on every Pi, and
http.client costs about 8 MiB less RSS than requests (bench/fleet.py measures both).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import os
import ssl
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from osbuilder.shared.errors import OsbError

Obj = dict[str, Any]


class ApiError(OsbError):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        try:
            why = json.loads(body).get("message") or body
        except ValueError:
            why = body
        self.message = str(why)[:300]
        super().__init__(f"Kubernetes API {method} {path}: HTTP {status}: {self.message}")


@dataclass(frozen=True)
class Endpoint:
    server: str  # https://host:port (http:// only for the test double on loopback)
    ssl_context: ssl.SSLContext | None
    token: str | None = None


def _context(cluster: Mapping[str, Any], user: Mapping[str, Any], base: Path
             ) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        ctx.load_verify_locations(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        ctx.load_verify_locations(cafile=str(base / cluster["certificate-authority"]))
    if user.get("client-certificate-data"):
        # ssl loads a key pair from files only: a private temp folder, gone once loaded
        with tempfile.TemporaryDirectory(prefix="osb-kube-") as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            for path, field in ((cert, "client-certificate-data"), (key, "client-key-data")):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(base64.b64decode(user[field]))
            ctx.load_cert_chain(str(cert), str(key))
    elif user.get("client-certificate"):
        ctx.load_cert_chain(str(base / user["client-certificate"]),
                            str(base / user["client-key"]))
    return ctx


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def load_kubeconfig(path: Path) -> Endpoint:
    """The current context's server and credential; relative file names are relative to
    the kubeconfig's folder, as kubectl reads them."""
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise OsbError(f"{path}: cannot read kubeconfig: {exc}") from exc

    def named(kind: str, name: str | None) -> Mapping[str, Any]:
        items = cfg.get(kind) or []
        for item in items:
            if name is None or item.get("name") == name:
                return dict(item.get(kind[:-1]) or {})
        raise OsbError(f"{path}: no {kind[:-1]} {name!r} in {kind}")

    ctx_name = cfg.get("current-context")
    context = named("contexts", ctx_name) if cfg.get("contexts") else {}
    cluster = named("clusters", context.get("cluster"))
    user = named("users", context.get("user"))
    server = str(cluster.get("server") or "")
    if not server.startswith(("https://", "http://")):
        raise OsbError(f"{path}: clusters[].cluster.server: expected an https:// URL, "
                       f"got {server!r}")
    if server.startswith("http://") and not _loopback(urlsplit(server).hostname):
        # plain http would hand the credential and every Node object to the network
        raise OsbError(f"{path}: clusters[].cluster.server: {server}: plain http only to "
                       "this machine (127.0.0.1, ::1, localhost); use https")
    try:
        tls = _context(cluster, user, path.parent) if server.startswith("https") else None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise OsbError(f"{path}: bad certificate or key: {exc}") from exc
    return Endpoint(server.rstrip("/"), tls, user.get("token"))


class Kube:
    """One client per process; safe to share between threads (a connection per thread)."""

    def __init__(self, endpoint: Endpoint, agent: str, timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.agent = agent
        self.timeout = timeout
        self.calls: Counter[str] = Counter()  # "GET", "PATCH", … : API request figures
        # set by any 401: the credential expired or was revoked, and no retry can mend
        # that; the controller restarts so that its credential step fetches a new one
        self.unauthorized = threading.Event()
        self._local = threading.local()
        self._lock = threading.Lock()
        u = urlsplit(endpoint.server)
        self._https, self._host, self._port = u.scheme == "https", u.hostname or "", u.port

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                               context=self.endpoint.ssl_context)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": self.agent}
        if content_type:
            h["Content-Type"] = content_type
        if self.endpoint.token:
            h["Authorization"] = f"Bearer {self.endpoint.token}"
        return h

    def _count(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1

    def request(self, method: str, path: str, body: Obj | None = None,
                query: Mapping[str, str] | None = None,
                content_type: str = "application/json") -> Obj:
        url = path + ("?" + urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        self._count(method)
        for attempt in (1, 2):  # a kept-alive connection the server closed: one retry
            conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._connect(self.timeout)
            try:
                conn.request(method, url, body=data,
                             headers=self._headers(content_type if data else None))
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise OsbError(f"Kubernetes API {method} {path}: {exc}") from exc
        if resp.status >= 400:
            if resp.status == 401:
                self.unauthorized.set()
            raise ApiError(resp.status, method, path, raw.decode(errors="replace"))
        return json.loads(raw) if raw else {}

    def get(self, path: str, **query: str) -> Obj:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Obj) -> Obj:
        return self.request("POST", path, body)

    def put(self, path: str, body: Obj) -> Obj:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Obj) -> Obj:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def watch(self, path: str, resource_version: str, timeout_s: int,
              query: Mapping[str, str] | None = None,
              hold: list[http.client.HTTPConnection] | None = None) -> Iterator[Obj]:
        """Events of one watch request from resource_version until the server ends it.
        `hold` receives the connection, so another thread can close it to stop the watch."""
        q = dict(query or {}, watch="1", resourceVersion=resource_version,
                 allowWatchBookmarks="true", timeoutSeconds=str(timeout_s))
        conn = self._connect(timeout_s + 30)
        if hold is not None:
            hold[:] = [conn]
        self._count("WATCH")
        try:
            conn.request("GET", f"{path}?{urlencode(q)}", headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status >= 400:
                if resp.status == 401:
                    self.unauthorized.set()
                raise ApiError(resp.status, "WATCH", path, resp.read().decode(errors="replace"))
            while line := resp.readline():
                if line.strip():
                    yield json.loads(line)
        # AttributeError: stop() closed the connection under a readline
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
            raise OsbError(f"Kubernetes API watch {path}: {exc}") from exc
        finally:
            conn.close()


def name_path(collection: str, name: str) -> str:
    return f"{collection}/{quote(name, safe='')}"
