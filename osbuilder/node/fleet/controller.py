"""`osbuilder-agent controller`: the OSUpgrade controller, one active instance per cluster.

The edge around rollout.plan(): watched caches of OSUpgrades and Nodes, the Lease, and the
writes a plan asks for, in this order: OSUpgrade status first (a claim is recorded before
its node is cordoned), then events, then node actions. Watch events wake the loop; a timer
wakes it too, for what no object announces: drain retries and timeouts, the maintenance
window, the Lease renewal, the release channel.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable

from osbuilder.node.fleet import drain
from osbuilder.node.fleet import protocol as p
from osbuilder.node.fleet.api_objects import (
    node_facts,
    rfc3339,
    same_status,
    status_of,
    upgrade_facts,
)
from osbuilder.node.fleet.channel import Channels
from osbuilder.node.fleet.informer import Informer
from osbuilder.node.fleet.lease import Lease
from osbuilder.node.fleet.rollout import DRAINING, UPGRADING, DrainNode, Event, plan
from osbuilder.node.kubeapi import ApiError, Kube, Obj, name_path
from osbuilder.shared.errors import OsbError

EVENTS = "/api/v1/namespaces/default/events"  # cluster-scoped objects' events live here


def say(msg: str) -> None:
    print(f"osbuilder-controller: {msg}", flush=True)


class Controller:
    def __init__(self, kube: Kube, identity: str | None = None,
                 clock: Callable[[], float] = time.time, lease_s: int = 15,
                 idle_s: float = 10.0, busy_s: float = 1.0, channel_every_s: float = 300.0,
                 watch_s: int = 300, log: Callable[[str], None] = say) -> None:
        self.kube, self.clock, self.log = kube, clock, log
        self.identity = identity or socket.gethostname()
        self.lease = Lease(kube, self.identity, lease_s, clock)
        self.idle_s, self.busy_s, self.watch_s = idle_s, busy_s, watch_s
        self.channels = Channels(channel_every_s, clock)
        self.notes: dict[str, str] = {}  # node → last drain note (for a timeout's reason)
        self._drained_at: dict[str, float] = {}
        self._seq = itertools.count()
        self.wake = threading.Event()

    def run(self, stop: threading.Event) -> None:
        ups = Informer(self.kube, p.OSUPGRADES, self.wake.set, watch_s=self.watch_s,
                       log=self.log).start()
        nodes = Informer(self.kube, p.NODES, self.wake.set, watch_s=self.watch_s,
                         log=self.log).start()
        leader = False
        try:
            while not stop.is_set():
                if self.lease.due():
                    self.lease.try_acquire_or_renew()
                if self.lease.held() != leader:
                    leader = self.lease.held()
                    self.log(f"{self.identity}: " + ("leading" if leader else "following"))
                busy = False
                self.wake.clear()
                if leader and ups.synced.is_set() and nodes.synced.is_set():
                    try:
                        busy = self.reconcile(ups, nodes)
                    except OsbError as exc:
                        self.log(f"reconcile: {exc}")
                        busy = True
                # stop() sets wake too: a stop never waits out the timer
                self.wake.wait(min(self.busy_s if busy else self.idle_s,
                                   self.lease.renew_every))
        finally:
            ups.stop()
            nodes.stop()
            self.lease.release()

    def stop(self, stop: threading.Event) -> None:
        stop.set()
        self.wake.set()

    def reconcile(self, ups: Informer, nodes: Informer) -> bool:
        """One plan, carried out. True while something is under way (poll sooner)."""
        now = self.clock()
        objs = {o["metadata"]["name"]: o for o in ups.items()}
        facts = []
        for o in objs.values():
            ch = (o.get("spec") or {}).get("channel")
            version, problem = self.channels.latest(str(ch)) if ch else (None, "")
            facts.append(upgrade_facts(o, now, version, problem))
        node_objs = {o["metadata"]["name"]: o for o in nodes.items()}
        todo = plan(facts, [node_facts(o) for o in node_objs.values()], now, self.notes)
        for f in facts:
            obj, outcome = objs[f.name], todo.outcomes[f.name]
            st = status_of(obj, outcome, f.target, now)
            if not same_status(st, obj.get("status") or {}):
                try:
                    ups.put(self.kube.patch(name_path(p.OSUPGRADES, f.name) + "/status",
                                            {"status": st}))
                except ApiError as exc:
                    if exc.status != 404:  # deleted meanwhile: nothing to record
                        raise
        for ev in todo.events:
            self.post_event(ev, objs.get(ev.name) if ev.kind == "OSUpgrade"
                            else node_objs.get(ev.name), now)
        for a in todo.actions:
            if not self.lease.held():
                break  # the next holder takes over from what the API shows
            try:
                if isinstance(a, DrainNode):
                    self.drain_step(a, ups, nodes, now)
                else:
                    self.log(f"{a.node}: uncordon")
                    nodes.put(drain.uncordon(self.kube, a.node))
            except OsbError as exc:  # one node's trouble must not hold up the others
                self.log(f"{a.node}: {exc}")
        return any(r.phase in (DRAINING, UPGRADING)
                   for o in todo.outcomes.values() for r in o.records.values())

    def drain_step(self, a: DrainNode, ups: Informer, nodes: Informer, now: float) -> None:
        if now - self._drained_at.get(a.node, -1e18) < self.busy_s:
            return
        self._drained_at[a.node] = now
        node = nodes.get(a.node)
        if node is None:
            return
        res = drain.step(self.kube, node, a.drain)
        if res.node is not None:
            nodes.put(res.node)
        self.notes[a.node] = (f"pods left: {', '.join(res.left)}" + (f" ({res.note})"
                              if res.note else "")) if res.left else ""
        if not res.drained:
            return
        self.log(f"{a.node}: drained; asking for {a.version} ({a.url})")
        asked = self.kube.patch(name_path(p.NODES, a.node), {"metadata": {"annotations": {
            p.DESIRED_VERSION: a.version, p.BUNDLE_URL: a.url, p.REQUEST: a.request}}})
        nodes.put(asked)
        # here, not from a plan: a quick node may be done before the next plan sees it work
        msg = f"drained; asked to install {a.version}"
        self.post_event(Event("Node", a.node, "Upgrading", msg), asked, now)
        self.post_event(Event("OSUpgrade", a.upgrade, "Upgrading", f"{a.node}: {msg}"),
                        ups.get(a.upgrade), now)

    def post_event(self, ev: Event, obj: Obj | None, now: float) -> None:
        if obj is None:
            return
        meta = obj["metadata"]
        stamp = rfc3339(now).split(".")[0] + "Z"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{int(now * 1e6):x}{next(self._seq)}",
                         "namespace": "default"},
            "involvedObject": {"kind": ev.kind, "name": meta["name"], "uid": meta.get("uid"),
                               # list items carry no apiVersion: set it by kind
                               "apiVersion": f"{p.GROUP}/{p.API_VERSION}"
                               if ev.kind == "OSUpgrade" else "v1"},
            "reason": ev.reason, "message": ev.message[:1000],
            "type": "Warning" if ev.warning else "Normal",
            "source": {"component": "osbuilder-controller", "host": self.identity},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "reportingComponent": "osbuilder-controller", "reportingInstance": self.identity,
        }
        try:
            self.kube.post(EVENTS, body)
        except OsbError as exc:  # events are for people: never stop a rollout for one
            self.log(f"event {ev.reason} on {ev.kind} {ev.name} not recorded: {exc}")
