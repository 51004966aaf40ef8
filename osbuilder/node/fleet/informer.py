"""A watched cache of one collection: LIST (in pages), then WATCH from its resourceVersion,
relist on 410 Gone, reconnect after errors; calls `changed()` after every change it sees.

Objects pass through `transform` before they are cached (client-go's SetTransform): a real
Node is 5-30 KB of JSON (managedFields, images, nodeInfo) of which the controller reads a
few hundred bytes, and at a thousand nodes the difference is most of the process's memory.
An event whose transformed object equals the cached one (a kubelet's status report that
changes no condition the controller reads) is absorbed without waking anyone.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable, Mapping

from osbuilder.node.kubeapi import ApiError, Kube, Obj
from osbuilder.shared.errors import OsbError

# items per LIST page: client-go asks 500, but 500 real Nodes are ~4 MB of JSON and
# ~25 MB of Python objects before the transform trims them, the controller's peak RSS
PAGE = 100


def rv_newer(new: Obj, old: Obj | None) -> bool:
    """resourceVersions are opaque to clients, but every Kubernetes store (etcd, k3s's kine)
    hands out increasing integers; comparing them keeps a late watch event from rolling the
    cache back over a write this process just made."""
    if old is None:
        return True
    a = new.get("metadata", {}).get("resourceVersion", "")
    b = old.get("metadata", {}).get("resourceVersion", "")
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return True


def without_managed_fields(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = dict(obj, metadata={k: v for k, v in meta.items() if k != "managedFields"})
    return obj


def node_essentials(obj: Obj) -> Obj:
    """What the fleet code reads of a Node: identity, labels, annotations, unschedulable
    and the Ready condition's status."""
    meta = obj.get("metadata") or {}
    ready = [{"type": "Ready", "status": c.get("status")}
             for c in (obj.get("status") or {}).get("conditions") or []
             if c.get("type") == "Ready"]
    keep = ("name", "uid", "resourceVersion", "creationTimestamp", "labels", "annotations")
    out: Obj = {"metadata": {k: meta[k] for k in keep if k in meta},
                "spec": {k: v for k, v in (obj.get("spec") or {}).items()
                         if k == "unschedulable"},
                "status": {"conditions": ready}}
    return out


def _same_but_version(a: Obj, b: Obj | None) -> bool:
    if b is None:
        return False

    def strip(o: Obj) -> Obj:
        meta = {k: v for k, v in (o.get("metadata") or {}).items() if k != "resourceVersion"}
        return dict(o, metadata=meta)
    return strip(a) == strip(b)


class Informer:
    def __init__(self, kube: Kube, path: str, changed: Callable[[], None],
                 query: Mapping[str, str] | None = None, watch_s: int = 300,
                 retry_s: float = 2.0, log: Callable[[str], None] = print,
                 transform: Callable[[Obj], Obj] = without_managed_fields,
                 page: int = PAGE) -> None:
        self.kube, self.path, self.changed = kube, path, changed
        self.query = dict(query or {})
        self.watch_s, self.retry_s, self.log = watch_s, retry_s, log
        self.transform, self.page = transform, page
        self._failures = 0
        # figures for the controller's metrics: LISTs (first sync and relists), WATCH
        # requests, and how many of those ended in 410 Gone
        self.lists = self.watches = self.expired = 0
        self.synced = threading.Event()
        self._items: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn: list[http.client.HTTPConnection] = []
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch {path}")

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for c in self._conn:
            # shutdown, not close: close() would wait for the reader's buffer lock, while a
            # shutdown socket ends the blocked read at once (the watch then closes it)
            with contextlib.suppress(OSError, AttributeError):
                c.sock.shutdown(socket.SHUT_RDWR)

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())

    def get(self, name: str) -> Obj | None:
        with self._lock:
            return self._items.get(name)

    def put(self, obj: Obj) -> None:
        """Take in an object this process just wrote (the server's answer to the write)."""
        obj = self.transform(obj)
        name = obj["metadata"]["name"]
        with self._lock:
            if rv_newer(obj, self._items.get(name)):
                self._items[name] = obj

    def _relist(self) -> str:
        """All items, a page at a time (a thousand Nodes in one answer is tens of MB of
        JSON held at once); every page is served from the first page's snapshot."""
        items: dict[str, Obj] = {}
        token, rv = "", ""
        while True:
            q = dict(self.query, limit=str(self.page), **({"continue": token} if token else {}))
            self.lists += 1
            got = self.kube.get(self.path, **q)
            if not isinstance(got.get("items"), list):
                raise OsbError(f"{self.path}: the server answered a LIST without items")
            for o in got["items"]:
                o = self.transform(o)
                items[o["metadata"]["name"]] = o
            meta = got.get("metadata") or {}
            rv, token = str(meta.get("resourceVersion", "")), str(meta.get("continue") or "")
            if not token:
                break
        with self._lock:
            self._items = items
        self.synced.set()
        self.changed()
        return rv

    def _run(self) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    rv = self._relist()
                rv = self._watch(rv)
            except ApiError as exc:
                if exc.status == 410:  # the list's snapshot expired between pages
                    self.expired += 1
                    rv = ""
                    continue
                self._pause(f"{exc}")
            except OsbError as exc:
                self._pause(f"{exc}")

    def _watch(self, rv: str) -> str:
        """One watch request; the resourceVersion to go on from ('' to relist)."""
        t0, seen = time.monotonic(), 0
        self.watches += 1
        for ev in self.kube.watch(self.path, rv, self.watch_s, self.query, self._conn):
            kind, obj = ev.get("type"), ev.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:  # our resourceVersion is too old
                    self.expired += 1
                    return ""
                raise OsbError(f"watch {self.path}: {obj.get('message')}")
            if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or (
                    kind != "BOOKMARK" and "name" not in obj.get("metadata", {})):
                raise OsbError(f"watch {self.path}: not a watch event: {str(ev)[:80]}")
            # a BOOKMARK carries only a resourceVersion: the server's promise that nothing
            # we watch changed up to it, so the next watch starts there, not from an old
            # version the server may no longer keep (410)
            rv = obj.get("metadata", {}).get("resourceVersion", rv)
            seen += 1
            self._failures = 0
            if kind != "BOOKMARK" and self._apply(str(kind), obj):
                self.changed()
        if rv and not seen and time.monotonic() - t0 < 1:  # never a busy loop
            self._pause(f"watch {self.path} ended at once")
        return rv

    def _apply(self, kind: str, obj: Obj) -> bool:
        """Take one event into the cache; True if a reader would see a difference."""
        name = obj["metadata"]["name"]
        with self._lock:
            old = self._items.get(name)
            if kind == "DELETED":
                return self._items.pop(name, None) is not None
            new = self.transform(obj)
            if not rv_newer(new, old):
                return False
            self._items[name] = new
            return not _same_but_version(new, old)

    def _pause(self, why: str) -> None:
        """Back off while the API is down or not what we expect: retry_s, doubling to 60 s."""
        if not self._stop.is_set():
            wait = min(self.retry_s * 2 ** self._failures, 60.0)
            self._failures += 1
            self.log(f"{why}; watching again in {wait:.0f} s")
            self._stop.wait(wait)
