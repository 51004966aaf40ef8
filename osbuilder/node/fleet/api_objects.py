"""Between API objects and the planner's values: Node → NodeFacts, OSUpgrade → UpgradeFacts,
and an Outcome → the OSUpgrade's `.status` (what `kubectl get/describe` shows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from osbuilder.node.fleet import protocol as p
from osbuilder.node.fleet.crd import SpecError, parse_spec
from osbuilder.node.fleet.rollout import Condition, NodeFacts, Outcome, Record, UpgradeFacts
from osbuilder.node.kubeapi import Obj


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def node_facts(obj: Obj) -> NodeFacts:
    meta = obj.get("metadata", {})
    labels = dict(meta.get("labels") or {})
    conds = obj.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
    return NodeFacts(
        name=meta["name"],
        server=any(labels.get(k) == "true" for k in p.SERVER_ROLE_LABELS),
        ready=ready,
        unschedulable=bool(obj.get("spec", {}).get("unschedulable")),
        labels=labels,
        annotations=dict(meta.get("annotations") or {}),
    )


def records(status: Obj, now: float) -> dict[str, Record]:
    out = {}
    for item in status.get("nodes") or []:
        out[item["name"]] = Record(
            phase=item.get("phase", ""), version=item.get("version", ""),
            since=parse_time(item.get("since"), now), role=item.get("role", "agent"),
            state=item.get("state", ""), message=item.get("message", ""))
    return out


def upgrade_facts(obj: Obj, now: float, channel_version: str | None = None,
                  channel_problem: str = "") -> UpgradeFacts:
    meta, status = obj.get("metadata", {}), obj.get("status") or {}
    try:
        spec = parse_spec(obj.get("spec") or {})
        problem = ""
    except SpecError as exc:
        spec, problem = None, str(exc)
    target = None
    if spec is not None:
        target = spec.version or channel_version or status.get("version") or None
        if target is None:
            problem = channel_problem or f"channel {spec.channel} not asked yet"
    return UpgradeFacts(name=meta["name"], uid=meta.get("uid", meta["name"]),
                        created=meta.get("creationTimestamp", ""), spec=spec, target=target,
                        records=records(status, now), phase=status.get("phase", ""),
                        problem=problem)


def _conditions(new: tuple[Condition, ...], old: list[Obj], generation: int, now: float
                ) -> list[Obj]:
    before = {c.get("type"): c for c in old}
    out = []
    for c in new:
        status = "True" if c.status else "False"
        prev = before.get(c.type) or {}
        since = prev.get("lastTransitionTime") if prev.get("status") == status else None
        out.append({"type": c.type, "status": status, "reason": c.reason,
                    "message": c.message, "observedGeneration": generation,
                    "lastTransitionTime": since or rfc3339(now).split(".")[0] + "Z"})
    return out


KEPT = ("Draining", "Upgrading", "Failed")  # the per-node records a status lists


def status_of(obj: Obj, outcome: Outcome, target: str | None, now: float) -> Obj:
    """The OSUpgrade's status. Per node it lists only what needs the API to remember it or
    a person to look at it: claims (Draining, with their start for the drain timeout),
    nodes at work, failures. Pending and Upgraded nodes are counted, not listed: the
    planner derives them from the Nodes each pass, and listing them would make every
    status write as big as the fleet (a thousand names, rewritten with each step of each
    node) and bring a large fleet near etcd's 1.5 MiB object limit."""
    old = obj.get("status") or {}
    generation = int(obj.get("metadata", {}).get("generation") or 0)
    nodes = [{"name": name, "role": r.role, "phase": r.phase, "version": r.version,
              "state": r.state, "message": r.message[:500], "since": rfc3339(r.since)}
             for name, r in outcome.records.items() if r.phase in KEPT]
    st: dict[str, Any] = {
        "phase": outcome.phase,
        "version": target or "",
        "progress": f"{outcome.count('Upgraded')}/{len(outcome.records)}",
        "upgraded": outcome.count("Upgraded"),
        "failed": outcome.count("Failed"),
        "pending": outcome.count("Pending"),
        "total": len(outcome.records),
        "nodes": nodes,
        "conditions": _conditions(outcome.conditions, old.get("conditions") or [],
                                  generation, now),
        "observedGeneration": generation,
    }
    return st


def same_status(a: Obj, b: Obj) -> bool:
    """True when writing `a` over `b` would change nothing: no request then (the API server
    would take it as a no-op, but it would still be a request)."""
    return a == b
