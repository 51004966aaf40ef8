"""A watched cache of one collection: LIST, then WATCH from its resourceVersion, relist on
410 Gone, reconnect after errors; calls `changed()` after every change it sees."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable, Mapping

from osbuilder.node.kubeapi import ApiError, Kube, Obj
from osbuilder.shared.errors import OsbError


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


class Informer:
    def __init__(self, kube: Kube, path: str, changed: Callable[[], None],
                 query: Mapping[str, str] | None = None, watch_s: int = 300,
                 retry_s: float = 2.0, log: Callable[[str], None] = print) -> None:
        self.kube, self.path, self.changed = kube, path, changed
        self.query = dict(query or {})
        self.watch_s, self.retry_s, self.log = watch_s, retry_s, log
        self._failures = 0
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
        name = obj["metadata"]["name"]
        with self._lock:
            if rv_newer(obj, self._items.get(name)):
                self._items[name] = obj

    def _relist(self) -> str:
        got = self.kube.get(self.path, **self.query)
        if not isinstance(got.get("items"), list):
            raise OsbError(f"{self.path}: the server answered a LIST without items")
        with self._lock:
            self._items = {o["metadata"]["name"]: o for o in got.get("items", [])}
        self.synced.set()
        self.changed()
        return str(got.get("metadata", {}).get("resourceVersion", ""))

    def _run(self) -> None:
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    rv = self._relist()
                t0, seen = time.monotonic(), 0
                for ev in self.kube.watch(self.path, rv, self.watch_s, self.query, self._conn):
                    kind, obj = ev.get("type"), ev.get("object") or {}
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # our resourceVersion is too old
                            rv = ""
                            break
                        raise OsbError(f"watch {self.path}: {obj.get('message')}")
                    if kind not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or (
                            kind != "BOOKMARK" and "name" not in obj.get("metadata", {})):
                        raise OsbError(f"watch {self.path}: not a watch event: {str(ev)[:80]}")
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    seen += 1
                    self._failures = 0
                    if kind == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    with self._lock:
                        if kind == "DELETED":
                            self._items.pop(name, None)
                        elif rv_newer(obj, self._items.get(name)):
                            self._items[name] = obj
                    self.changed()
                if rv and not seen and time.monotonic() - t0 < 1:  # never a busy loop
                    self._pause(f"watch {self.path} ended at once")
            except ApiError as exc:
                if exc.status == 410:
                    rv = ""
                    continue
                self._pause(f"{exc}")
            except OsbError as exc:
                self._pause(f"{exc}")

    def _pause(self, why: str) -> None:
        """Back off while the API is down or not what we expect: retry_s, doubling to 60 s."""
        if not self._stop.is_set():
            wait = min(self.retry_s * 2 ** self._failures, 60.0)
            self._failures += 1
            self.log(f"{why}; watching again in {wait:.0f} s")
            self._stop.wait(wait)
