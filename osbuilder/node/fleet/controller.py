"""`osbuilder-agent controller`: the OSUpgrade controller, one active instance per cluster.

The edge around rollout.plan(): watched caches of OSUpgrades and Nodes, the Lease, and the
writes a plan asks for, in this order: OSUpgrade status first (a claim is recorded before
its node is cordoned), then events, then node actions. Watch events wake the loop; a timer
wakes it too, for what no object announces: drain retries and timeouts, the maintenance
window (at the minute it opens), the Lease renewal, the release channel.

Cost per pass is O(nodes) by design (the planner sees everything, remembers nothing), so
the loop keeps passes few rather than small: after a pass it waits `duty` times the CPU
time the pass took before the next, batching the events that came meanwhile. The loop
then takes at most 1/(1 + duty) of a core at any fleet size, and at small sizes the wait
is milliseconds.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

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
from osbuilder.node.fleet.informer import Informer, node_essentials
from osbuilder.node.fleet.lease import Lease
from osbuilder.node.fleet.metrics import Metrics, labels
from osbuilder.node.fleet.rollout import (
    DRAINING,
    UPGRADING,
    DrainNode,
    Event,
    NodeFacts,
    Plan,
    Uncordon,
    UpgradeFacts,
    plan,
)
from osbuilder.node.kubeapi import ApiError, Kube, Obj, name_path
from osbuilder.shared.errors import OsbError

EVENTS = "/api/v1/namespaces/default/events"  # cluster-scoped objects' events live here
PHASES = ("Pending", "Draining", "Upgrading", "Upgraded", "Failed")
SUCCEEDED, FAILED_REASONS = "Upgraded", ("UpgradeFailed", "DrainTimeout")
T = TypeVar("T")


def say(msg: str) -> None:
    print(f"osbuilder-controller: {msg}", flush=True)


class Controller:
    def __init__(self, kube: Kube, identity: str | None = None,
                 clock: Callable[[], float] = time.time, lease_s: int = 15,
                 idle_s: float = 10.0, busy_s: float = 1.0, channel_every_s: float = 300.0,
                 watch_s: int = 300, duty: float = 3.0, settle_max_s: float = 0.5,
                 credential_until: float | None = None, metrics: Metrics | None = None,
                 writers: int = 4, log: Callable[[str], None] = say) -> None:
        self.kube, self.clock, self.log = kube, clock, log
        self.identity = identity or socket.gethostname()
        self.lease = Lease(kube, self.identity, lease_s, clock)
        self.idle_s, self.busy_s, self.watch_s = idle_s, busy_s, watch_s
        self.duty, self.settle_max_s = duty, settle_max_s
        # when the credential should be renewed (a restart fetches a new token)
        self.credential_until = credential_until
        self.channels = Channels(channel_every_s, clock)
        self.metrics = metrics or Metrics()
        self.metrics.set("osbuilder_controller_leader", 0.0)
        self.notes: dict[str, str] = {}  # node → last drain note (for a timeout's reason)
        self._drained_at: dict[str, float] = {}
        self._nodes: dict[str, tuple[str, NodeFacts]] = {}  # name → (resourceVersion, facts)
        self._ups: dict[str, tuple[tuple[str, str | None, str], UpgradeFacts]] = {}
        self._waiting = False  # an OSUpgrade waits for its window
        # writes in flight at once: enough to overlap round trips, few enough to spare an
        # API server on a Raspberry Pi
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="writer")
        self._seq = itertools.count()
        self.wake = threading.Event()

    def run(self, stop: threading.Event) -> str:
        """Until `stop`; '' then, or why it had to stop (its credential is no longer good)."""
        ups = Informer(self.kube, p.OSUPGRADES, self.wake.set, watch_s=self.watch_s,
                       log=self.log).start()
        nodes = Informer(self.kube, p.NODES, self.wake.set, watch_s=self.watch_s,
                         log=self.log, transform=node_essentials).start()
        self.metrics.collectors.append(lambda: self._collect(ups, nodes))
        leader, why = False, ""
        try:
            while not stop.is_set():
                why = self._credential_problem()
                if why:
                    break
                if self.lease.due():
                    self.lease.try_acquire_or_renew()
                if self.lease.held() != leader:
                    leader = self.lease.held()
                    self.metrics.set("osbuilder_controller_leader", float(leader))
                    self.log(f"{self.identity}: " + ("leading" if leader else "following"))
                busy = False
                self.wake.clear()
                t0 = time.thread_time()  # CPU, not the wait for answers
                if leader and ups.synced.is_set() and nodes.synced.is_set():
                    try:
                        busy = self.reconcile(ups, nodes)
                    except OsbError as exc:
                        self.log(f"reconcile: {exc}")
                        busy = True
                spent = time.thread_time() - t0
                # stop() sets wake too: a stop never waits out the timer
                self.wake.wait(min(self.busy_s if busy else self.idle_s,
                                   self.lease.renew_every, self._until_window()))
                stop.wait(min(self.duty * spent, self.settle_max_s))
        finally:
            ups.stop()
            nodes.stop()
            self._pool.shutdown(wait=True)
            self.lease.release()
        return why

    def stop(self, stop: threading.Event) -> None:
        stop.set()
        self.wake.set()

    def _credential_problem(self) -> str:
        if self.kube.unauthorized.is_set():
            return "the API server refused the credential (401): expired or revoked"
        if self.credential_until is not None and self.clock() >= self.credential_until:
            return "the credential is close to its expiry"
        return ""

    def _until_window(self) -> float:
        """Windows open on a minute (whole-minute zone offsets): wake just after it."""
        return 60.0 - self.clock() % 60.0 + 0.05 if self._waiting else float("inf")

    def facts(self, ups: Informer, nodes: Informer, now: float
              ) -> tuple[dict[str, Obj], list[UpgradeFacts], dict[str, Obj], list[NodeFacts]]:
        """API objects → planner values, converted again only when their version moved."""
        objs = {o["metadata"]["name"]: o for o in ups.items()}
        ufacts, ucache = [], {}
        for name, o in objs.items():
            ch = (o.get("spec") or {}).get("channel")
            version, problem = self.channels.latest(str(ch)) if ch else (None, "")
            key = (str(o["metadata"].get("resourceVersion", "")), version, problem)
            hit = self._ups.get(name)
            f = hit[1] if hit and hit[0] == key and key[0] else upgrade_facts(
                o, now, version, problem)
            ucache[name] = (key, f)
            ufacts.append(f)
        node_objs = {o["metadata"]["name"]: o for o in nodes.items()}
        nfacts, ncache = [], {}
        for name, o in node_objs.items():
            rv = str(o["metadata"].get("resourceVersion", ""))
            nhit = self._nodes.get(name)
            nf = nhit[1] if nhit and nhit[0] == rv and rv else node_facts(o)
            ncache[name] = (rv, nf)
            nfacts.append(nf)
        self._ups, self._nodes = ucache, ncache
        return objs, ufacts, node_objs, nfacts

    def reconcile(self, ups: Informer, nodes: Informer) -> bool:
        """One plan, carried out. True while something is under way (poll sooner)."""
        t0, cpu0 = time.perf_counter(), time.thread_time()
        now = self.clock()
        objs, facts, node_objs, nfacts = self.facts(ups, nodes, now)
        todo = plan(facts, nfacts, now, self.notes)
        # CPU time: what planning costs, whatever else the machine is doing
        self.metrics.observe("osbuilder_controller_plan_cpu_seconds", time.thread_time() - cpu0)
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
        self.record(todo)
        # then events, then node actions, each a few at a time: a drain is several
        # requests, and at concurrency 100 one after the other they made passes of seconds
        by_object: dict[tuple[str, str], list[Event]] = {}
        for ev in todo.events:  # one object's events stay in their order
            by_object.setdefault((ev.kind, ev.name), []).append(ev)
        def post(evs: list[Event]) -> None:
            for ev in evs:
                self.post_event(ev, objs.get(ev.name) if ev.kind == "OSUpgrade"
                                else node_objs.get(ev.name), now)
        self._all(post, list(by_object.values()))
        self._all(lambda a: self.act(a, ups, nodes, now), todo.actions)
        self.metrics.observe("osbuilder_controller_reconcile_seconds", time.perf_counter() - t0)
        return any(r.phase in (DRAINING, UPGRADING)
                   for o in todo.outcomes.values() for r in o.records.values())

    def _all(self, fn: Callable[[T], object], items: list[T]) -> None:
        """fn over items on the writer threads; back when all are done."""
        for f in [self._pool.submit(fn, x) for x in items]:
            f.result()  # an OsbError is handled inside; anything else is a bug: raise it

    def act(self, a: DrainNode | Uncordon, ups: Informer, nodes: Informer, now: float
            ) -> None:
        if not self.lease.held():
            return  # the next holder takes over from what the API shows
        try:
            if isinstance(a, DrainNode):
                self.drain_step(a, ups, nodes, now)
            else:
                self.log(f"{a.node}: uncordon")
                nodes.put(drain.uncordon(self.kube, a.node))
        except OsbError as exc:  # one node's trouble must not hold up the others
            self.log(f"{a.node}: {exc}")

    def record(self, todo: Plan) -> None:
        """Metrics of one plan: nodes by phase, halts, and the finished nodes it saw."""
        self._waiting = any(o.phase == "Waiting" for o in todo.outcomes.values())
        self.metrics.replace("osbuilder_osupgrade_nodes", {
            labels(osupgrade=name, phase=ph): float(o.count(ph))
            for name, o in todo.outcomes.items() for ph in PHASES})
        self.metrics.replace("osbuilder_osupgrade_halted", {
            labels(osupgrade=name): float(o.phase == "Halted")
            for name, o in todo.outcomes.items()})
        for ev in todo.events:  # planner events come once per transition
            if ev.kind == "Node" and ev.reason == SUCCEEDED:
                self.metrics.inc("osbuilder_node_upgrades_succeeded_total")
            elif ev.kind == "Node" and ev.reason in FAILED_REASONS:
                self.metrics.inc("osbuilder_node_upgrades_failed_total")

    def _collect(self, ups: Informer, nodes: Informer
                 ) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
        out = [("osbuilder_controller_api_requests_total", labels(verb=v), float(n))
               for v, n in sorted(self.kube.calls.items())]
        for res, inf in (("osupgrades", ups), ("nodes", nodes)):
            out += [("osbuilder_controller_watch_requests_total", labels(resource=res),
                     float(inf.watches)),
                    ("osbuilder_controller_list_requests_total", labels(resource=res),
                     float(inf.lists)),
                    ("osbuilder_controller_watch_expired_total", labels(resource=res),
                     float(inf.expired))]
        return out

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
        self.metrics.inc("osbuilder_node_upgrades_started_total")
        # here, not from a plan: a quick node may be done before the next plan sees it work
        self.post_event(Event("Node", a.node, "Upgrading",
                              f"drained; asked to install {a.version}"), asked, now)

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
