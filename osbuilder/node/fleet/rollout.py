"""What to do next, as a pure function: observed Nodes and OSUpgrades (spec and status) at
an instant → each OSUpgrade's new status, the node actions, the events.

Level-triggered: nothing here remembers the last call. What a rollout has done lives in the
API: per-node records in the OSUpgrade status (Draining since when, Upgrading, Failed; an
Upgraded node is recognised again from its Node each pass) and the node protocol
annotations (protocol.py). So a controller killed at any point plans the
same next step after its restart, and a node is never asked twice for one request.

Rules, in order of precedence:
- a newer OSUpgrade (creationTimestamp, then name) owns every node it selects: an older one
  keeps only the nodes no newer one selects, finishes what it has in flight, and is
  Superseded once it owns none;
- servers one at a time across all OSUpgrades (etcd quorum), agents only once every server
  the OSUpgrade targets is done, `concurrency` at a time;
- a node is claimed (status Draining) before it is cordoned and drained; the executor asks
  it to upgrade only once drained; a drain that outlives drain.timeout fails the node,
  which then is uncordoned and never rebooted;
- paused, halted (maxFailures reached), superseded or outside the window: no node is
  claimed, drains not yet finished are given up (uncordoned); nodes already upgrading
  finish and are recorded;
- a node the controller cordoned is uncordoned as soon as no drain or upgrade holds it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from osbuilder.node.fleet import protocol as p
from osbuilder.node.fleet.crd import Drain, Spec
from osbuilder.node.fleet.window import is_open

PENDING, DRAINING, UPGRADING = "Pending", "Draining", "Upgrading"
UPGRADED, FAILED = "Upgraded", "Failed"
FINAL = (UPGRADED, FAILED)


@dataclass(frozen=True)
class NodeFacts:
    name: str
    server: bool
    ready: bool
    unschedulable: bool
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def ann(self, key: str) -> str:
        return self.annotations.get(key, "")

    # cached: the planner asks these of every node several times a pass
    @cached_property
    def answered(self) -> bool:
        """The node has answered its current request with done or failed."""
        return (self.ann(p.STATE_FOR) == self.ann(p.REQUEST)
                and self.ann(p.STATE) in (p.DONE, p.FAILED))

    @cached_property
    def in_flight(self) -> bool:
        return bool(self.ann(p.REQUEST)) and not self.answered


@dataclass(frozen=True)
class Record:
    phase: str
    version: str
    since: float  # Draining: when the drain began; otherwise when the phase was entered
    role: str = "agent"
    state: str = ""  # what the node last reported
    message: str = ""


@dataclass(frozen=True)
class UpgradeFacts:
    name: str
    uid: str
    created: str  # RFC 3339 in UTC: sorts as text
    spec: Spec | None
    target: str | None  # the version: spec.version, or what the channel answered
    records: Mapping[str, Record] = field(default_factory=dict)
    phase: str = ""  # of the status read
    problem: str = ""  # why spec or target is missing


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True)
class DrainNode:
    node: str
    upgrade: str
    drain: Drain
    version: str
    url: str
    request: str


@dataclass(frozen=True)
class Uncordon:
    node: str


@dataclass(frozen=True)
class Event:
    kind: str  # OSUpgrade or Node
    name: str
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Outcome:
    phase: str
    records: dict[str, Record]
    conditions: tuple[Condition, ...]

    def count(self, phase: str) -> int:
        return sum(r.phase == phase for r in self.records.values())


@dataclass
class Plan:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    actions: list[DrainNode | Uncordon] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def owners(upgrades: list[UpgradeFacts], nodes: list[NodeFacts]) -> dict[str, str]:
    """node → name of the newest valid OSUpgrade selecting it."""
    out: dict[str, str] = {}
    for n in nodes:
        cands = [u for u in upgrades if u.spec and u.spec.selector.matches(n.labels)]
        if cands:
            out[n.name] = max(cands, key=lambda u: (u.created, u.name)).name
    return out


def plan(upgrades: list[UpgradeFacts], nodes: list[NodeFacts], now: float,
         notes: Mapping[str, str] | None = None) -> Plan:
    """notes: the last drain message per node (which pods are left), for failure reasons."""
    out = Plan()
    owner = owners(upgrades, nodes)
    draining = {n: u.name for u in upgrades for n, r in u.records.items() if r.phase == DRAINING}
    for u in sorted(upgrades, key=lambda u: (u.created, u.name)):  # releases before claims
        _Rollout(u, nodes, owner, draining, now, notes or {}, out).run()
    for n in nodes:
        if n.ann(p.CORDONED) == "true" and n.name not in draining and not n.in_flight:
            out.actions.append(Uncordon(n.name))
    return out


class _Rollout:
    """One OSUpgrade's share of a plan (a class only to keep the shared inputs in one place)."""

    def __init__(self, u: UpgradeFacts, nodes: list[NodeFacts], owner: dict[str, str],
                 draining: dict[str, str], now: float, notes: Mapping[str, str],
                 out: Plan) -> None:
        self.u, self.nodes, self.draining, self.now, self.notes, self.out = (
            u, nodes, draining, now, notes, out)
        self.by_name = {n.name: n for n in nodes}
        spec = u.spec
        self.matched = [n.name for n in nodes if spec and spec.selector.matches(n.labels)]
        self.targets = sorted(n for n in self.matched if owner.get(n) == u.name)
        self.is_target = set(self.targets)  # membership tests: O(1), not O(nodes)
        self.records: dict[str, Record] = {}

    def event(self, node: str, reason: str, message: str, warning: bool = False) -> None:
        """On the Node; warnings on the OSUpgrade too. An event per node and step on one
        OSUpgrade would be thousands of writes at fleet scale, read by nobody: its status
        lists the nodes that need attention, `kubectl describe node` the rest."""
        self.out.events.append(Event("Node", node, reason, message, warning))
        if warning:
            self.out.events.append(Event("OSUpgrade", self.u.name, reason,
                                         f"{node}: {message}", warning))

    def role(self, name: str) -> str:
        n = self.by_name.get(name)
        return "server" if n is not None and n.server else "agent"

    def run(self) -> None:
        u = self.u
        if u.spec is None or u.target is None:
            self.give_up_drains()
            self.records = {k: r for k, r in u.records.items() if r.phase in FINAL}
            return self.finish(u.spec is not None)
        self.observe(u.spec, u.target)
        failures = [(k, r) for k, r in self.records.items() if r.phase == FAILED]
        halted = len(failures) >= u.spec.max_failures
        allowed = (not halted and not u.spec.paused and bool(self.targets)
                   and is_open(u.spec.window, self.now))
        self.drains(u.spec, u.target, allowed)
        if allowed:
            self.claim(u.spec, u.target)
        self.finish(True, halted, failures)

    def observe(self, spec: Spec, target: str) -> None:
        """Records that follow from the nodes alone: finished, upgrading, already there."""
        u, key = self.u, p.request_id(self.u.uid, target)
        names = dict.fromkeys([*self.targets, *u.records,
                               *(n.name for n in self.nodes if n.ann(p.REQUEST) == key)])
        for name in names:
            old, n = u.records.get(name), self.by_name.get(name)
            if old and old.phase in FINAL and old.version == target:
                self.records[name] = old
            elif n is None:
                continue
            elif n.ann(p.REQUEST) == key:
                self.records[name] = self.upgrading(n, old, target)
            elif name in self.is_target and n.ann(p.VERSION) == target and not n.in_flight:
                self.release(name, old)
                self.records[name] = Record(UPGRADED, target, self.now, self.role(name),
                                            message=f"already at {target}")
            elif old and old.phase == DRAINING and old.version == target:
                self.records[name] = old
            elif name in self.is_target:
                self.records[name] = Record(PENDING, target, self.now, self.role(name))
            new = self.records.get(name)
            if old and old.phase == DRAINING and (new is None or new.phase != DRAINING) \
                    and self.draining.get(name) == u.name:
                del self.draining[name]

    def upgrading(self, n: NodeFacts, old: Record | None, target: str) -> Record:
        state, msg, since = n.ann(p.STATE), n.ann(p.MESSAGE), self.now
        if old and old.phase == UPGRADING:
            since = old.since
        # Upgraded records are not kept in the status (status.py): the node's annotations
        # say it all again each pass, so only a change seen from a kept record is news
        if n.answered and state == p.DONE and n.ann(p.VERSION) == target:
            if old and old.phase in (DRAINING, UPGRADING):
                self.event(n.name, "Upgraded", f"upgraded to {target}, health gate passed")
            return Record(UPGRADED, target, self.now, self.role(n.name), state, msg)
        if n.answered:
            why = msg or (f"reported done but runs {n.ann(p.VERSION) or 'an unknown version'}"
                          if state == p.DONE else "failed")
            self.event(n.name, "UpgradeFailed", why, warning=True)
            return Record(FAILED, target, self.now, self.role(n.name), state, why)
        return Record(UPGRADING, target, since, self.role(n.name), state or "requested", msg)

    def release(self, name: str, old: Record | None) -> None:
        if old and old.phase == DRAINING and self.draining.get(name) == self.u.name:
            del self.draining[name]
            self.event(name, "DrainCancelled", "drain given up; the node is uncordoned")

    def give_up_drains(self) -> None:
        for name, r in self.u.records.items():
            if r.phase == DRAINING:
                self.release(name, r)

    def drains(self, spec: Spec, target: str, allowed: bool) -> None:
        for name, r in list(self.records.items()):
            if r.phase != DRAINING:
                continue
            if not allowed or name not in self.is_target:
                self.release(name, r)
                if name in self.is_target:
                    self.records[name] = replace(r, phase=PENDING, since=self.now)
                else:
                    del self.records[name]
            elif self.now - r.since >= spec.drain.timeout_s:
                self.draining.pop(name, None)
                why = (f"drain did not finish within {spec.drain.timeout_s:.0f} s"
                       + (f": {self.notes[name]}" if self.notes.get(name) else "")
                       + "; not rebooted")
                self.event(name, "DrainTimeout", why, warning=True)
                self.records[name] = replace(r, phase=FAILED, since=self.now, message=why)
            else:
                self.drain_action(spec, target, name)

    def drain_action(self, spec: Spec, target: str, name: str) -> None:
        n = self.by_name[name]
        url = spec.url_for(target, n.labels.get(p.BOARD_LABEL)) or ""
        self.out.actions.append(DrainNode(name, self.u.name, spec.drain, target, url,
                                          p.request_id(self.u.uid, target)))

    def eligible(self, spec: Spec, target: str, name: str) -> bool:
        n = self.by_name[name]
        return (n.ready and not n.in_flight and name not in self.draining
                and spec.url_for(target, n.labels.get(p.BOARD_LABEL)) is not None)

    def claim(self, spec: Spec, target: str) -> None:
        pending = [k for k in self.targets if (r := self.records.get(k)) is not None
                   and r.phase == PENDING and self.eligible(spec, target, k)]
        servers = [k for k in self.targets if self.by_name[k].server]
        if any(self.records[k].phase not in FINAL for k in servers):
            busy = any(n.server and (n.in_flight or n.name in self.draining)
                       for n in self.nodes)
            picks = [] if busy else [k for k in pending if self.by_name[k].server][:1]
        else:
            active = sum(1 for k in self.targets
                         if k in self.draining or self.by_name[k].in_flight)
            picks = pending[:max(spec.concurrency - active, 0)]
        for name in picks:
            self.draining[name] = self.u.name
            self.records[name] = Record(DRAINING, target, self.now, self.role(name))
            self.event(name, "Draining", f"cordoned and draining for {target}")
            self.drain_action(spec, target, name)

    def finish(self, valid: bool, halted: bool = False,
               failures: list[tuple[str, Record]] | None = None) -> None:
        u, recs = self.u, self.records
        active = any(r.phase in (DRAINING, UPGRADING) for r in recs.values())
        spec = u.spec
        if spec is None or not valid:
            phase, reason, msg = "Invalid", "InvalidSpec", u.problem
        elif u.target is None:
            phase, reason, msg = "Pending", "ChannelUnavailable", u.problem
        elif halted:
            first = failures[0] if failures else ("", Record("", "", 0))
            phase, reason = "Halted", "MaxFailuresReached"
            msg = (f"{len(failures or [])} node(s) failed, maxFailures {spec.max_failures}; "
                   f"first: {first[0]}: {first[1].message}")
        elif self.matched and not self.targets and not active:
            phase, reason, msg = "Superseded", "Superseded", "a newer OSUpgrade owns its nodes"
        elif all(r.phase in FINAL for r in recs.values()) and not any(
                self.by_name[k].ann(p.CORDONED) == "true" for k in recs if k in self.by_name):
            phase, reason = "Complete", "AllNodesDone"
            msg = f"{sum(r.phase == UPGRADED for r in recs.values())} of {len(recs)} at " \
                  f"{u.target}"
        elif spec.paused:
            phase, reason, msg = "Paused", "Paused", "spec.paused is true"
        elif not is_open(spec.window, self.now) and not active:
            phase, reason, msg = "Waiting", "OutsideWindow", "outside the maintenance window"
        else:
            phase, reason, msg = "Progressing", "NodesUpgrading", f"upgrading to {u.target}"
        conds = (
            Condition("Invalid", phase == "Invalid", reason if phase == "Invalid" else "Valid",
                      msg if phase == "Invalid" else ""),
            Condition("Progressing", phase == "Progressing", reason, msg),
            Condition("Complete", phase == "Complete", reason if phase == "Complete"
                      else "NotDone", msg if phase == "Complete" else ""),
            Condition("Halted", phase == "Halted", reason if phase == "Halted"
                      else "NotHalted", msg if phase == "Halted" else ""),
        )
        if phase != u.phase:
            self.out.events.append(Event("OSUpgrade", u.name, phase, msg,
                                         phase in ("Halted", "Invalid")))
        self.out.outcomes[u.name] = Outcome(phase, dict(sorted(recs.items())), conds)
