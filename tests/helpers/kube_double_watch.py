"""LIST and WATCH of the API double (TEST DOUBLE; what they model, and from which pages, is
numbered 3-5 in tests/helpers/kube_double.py's docstring): paged lists from a snapshot,
watch history within a time window (410 Gone beyond it), watchers by name or by a
field selector, and the one index a drain needs (pods by node)."""

from __future__ import annotations

import bisect
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Obj = dict[str, Any]


class ApiFail(Exception):
    def __init__(self, code: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason


def selector(text: str) -> Callable[[Obj], bool]:
    """A fieldSelector of `path=value` terms joined by commas."""
    rules = [tuple(part.split("=", 1)) for part in text.split(",") if "=" in part]

    def match(obj: Obj) -> bool:
        for k, v in rules:
            cur: Any = obj
            for seg in k.split("."):
                cur = cur.get(seg) if isinstance(cur, dict) else None
            if cur != v:
                return False
        return True
    return match


def _by_name(field_selector: str) -> str:
    name = field_selector.removeprefix("metadata.name=")
    return name if field_selector.startswith("metadata.name=") and "," not in name else ""


class Watching:
    """Mixed into KubeDouble, whose fields these are."""

    history_s: float
    rv: int
    compacted: int
    expired_watches: int
    store: dict[str, dict[str, Obj]]
    lock: threading.RLock
    _hist: list[tuple[int, float, str, str, Obj]]
    _hrv: list[int]
    _hstart: int
    _named: dict[tuple[str, str], list[queue.Queue[Any]]]
    _any: dict[str, list[tuple[Callable[[Obj], bool], queue.Queue[Any]]]]
    _snaps: dict[str, tuple[int, list[Obj]]]
    _pods_on: dict[str, set[str]]  # node → pod keys
    _pod_node: dict[str, str]  # pod key → node

    def _index(self, coll: str, key: str, kind: str, obj: Obj) -> None:
        """After a commit (under the lock): history, the pods index, the watchers."""
        if coll == "pods":
            self._pods_on.get(self._pod_node.pop(key, ""), set()).discard(key)
            if kind != "DELETED":
                node = (obj.get("spec") or {}).get("nodeName") or ""
                self._pods_on.setdefault(node, set()).add(key)
                self._pod_node[key] = node
        ev = {"type": kind, "object": obj}
        for q in self._named.get((coll, obj["metadata"]["name"]), ()):
            q.put(ev)
        for match, q in self._any.get(coll, ()):
            if match(obj):
                q.put(ev)

    def _compact(self, now: float) -> None:
        """Forget events older than the window (the watch cache's eventFreshDuration)."""
        start = self._hstart
        while start < len(self._hist) and self._hist[start][1] < now - self.history_s:
            self.compacted = self._hist[start][0]
            start += 1
        if start > 4096 and start > len(self._hist) // 2:  # drop the dead prefix now and then
            del self._hist[:start], self._hrv[:start]
            start = 0
        self._hstart = start

    def _select(self, coll: str, field_selector: str, ns: str) -> list[Obj]:
        items = self.store.get(coll, {})
        name = _by_name(field_selector)
        if name:
            found = items.get(f"{ns}/{name}" if ns else name)
            return [found] if found is not None else []
        node = field_selector.removeprefix("spec.nodeName=")
        if coll == "pods" and field_selector.startswith("spec.nodeName=") and "," not in node:
            return [items[k] for k in sorted(self._pods_on.get(node, ()))
                    if not ns or items[k]["metadata"].get("namespace") == ns]
        match = selector(field_selector)
        return [o for _, o in sorted(items.items()) if match(o)
                and (not ns or o["metadata"].get("namespace") == ns)]

    def list_page(self, coll: str, field_selector: str, ns: str, limit: int, token: str
                  ) -> tuple[list[Obj], str, str]:
        """(items, resourceVersion, continue) of one LIST page: stored objects, which the
        caller only reads."""
        with self.lock:
            if token:
                snap_id, _, start = token.partition(":")
                if snap_id not in self._snaps or self._snaps[snap_id][0] < self.compacted:
                    raise ApiFail(410, "The provided continue parameter is too old to display "
                                  "a consistent list result.", "Expired")
                rv, objs = self._snaps[snap_id]
                offset = int(start)
            else:
                rv, objs, offset = self.rv, self._select(coll, field_selector, ns), 0
                snap_id = secrets.token_hex(6)
            if not limit or offset + limit >= len(objs):
                return objs[offset:], str(rv), ""
            self._snaps[snap_id] = (rv, objs)  # stored objects are never changed in place
            while len(self._snaps) > 64:
                del self._snaps[next(iter(self._snaps))]
            return objs[offset:offset + limit], str(rv), f"{snap_id}:{offset + limit}"

    @contextmanager
    def subscribe(self, coll: str, field_selector: str, since: int
                  ) -> Iterator[queue.Queue[Any]]:
        """A queue of the events after `since`; an ERROR 410 first when they are gone."""
        q: queue.Queue[Any] = queue.Queue()
        name, match = _by_name(field_selector), selector(field_selector)
        with self.lock:
            if since <= 0:  # "start at any": the current state as ADDED, then changes
                for obj in self._select(coll, field_selector, ""):
                    q.put({"type": "ADDED", "object": obj})
                since = self.rv
            if since < self.compacted:
                self.expired_watches += 1
                q.put({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                    "reason": "Expired",
                    "message": f"too old resource version: {since} ({self.compacted})"}})
                yield q
                return
            i = bisect.bisect_right(self._hrv, since, lo=self._hstart)
            for _, _, c, kind, obj in self._hist[i:]:
                if c == coll and match(obj):
                    q.put({"type": kind, "object": obj})
            if name:
                self._named.setdefault((coll, name), []).append(q)
            else:
                self._any.setdefault(coll, []).append((match, q))
        try:
            yield q
        finally:
            with self.lock:
                if name:
                    self._named[(coll, name)].remove(q)
                else:
                    self._any[coll] = [e for e in self._any[coll] if e[1] is not q]

    def close_watches(self) -> None:
        """Wake every watch so it ends (server shutdown)."""
        with self.lock:
            for qs in self._named.values():
                for q in qs:
                    q.put(None)
            for entries in self._any.values():
                for _, q in entries:
                    q.put(None)
