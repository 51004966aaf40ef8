"""What a scenario run (tests/helpers/fleet_scale.py) must show, and the figures it gives:
order, concurrency, window, halt, the end state, least privilege, the metrics; requests
per node by verb (controller and watchers apart), writes, planner time, reconnects."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from osbuilder.node.fleet import protocol as pr
from tests.helpers import rbac
from tests.helpers.fleet_sim import Fleet, Install, Store
from tests.helpers.kube_double import Call, KubeDouble

CONTROLLER = f"{rbac.SA_PREFIX}kube-system:osbuilder-controller"
WRITES = ("create", "patch", "update")


def overlap(installs: list[Install]) -> int:
    marks = sorted([(i.start, 1) for i in installs] + [(i.end, -1) for i in installs])
    cur = peak = 0
    for _, d in marks:
        cur += d
        peak = max(peak, cur)
    return peak


def is_lease(c: Call) -> bool:
    return c.resource == "leases"


def first_claims(calls: list[Call]) -> dict[str, float]:
    """node → when the controller first wrote to it (the cordon that follows its claim)."""
    out: dict[str, float] = {}
    for c in calls:
        if c.user == CONTROLLER and c.resource == "nodes" and c.verb == "patch":
            out.setdefault(c.name, c.t)
    return out


def asked_rv(api: KubeDouble, node: str) -> float:
    """resourceVersion of the node's first version with an upgrade request (inf: none kept
    in the double's history window)."""
    return next((float(o["metadata"]["resourceVersion"]) for o in api.node_history(node)
                 if pr.REQUEST in (o["metadata"].get("annotations") or {})), float("inf"))


def check_rollout(store: Store, fleet: Fleet, sh: dict[str, Any], marks: dict[str, float],
                  metrics: dict[str, float], code: int) -> None:
    """What the API, the nodes and the metrics show, on the double or a real k3s."""
    n, c, failing = sh["nodes"], sh["concurrency"], set(sh["failing"])
    where = f"{n} nodes"
    assert code == 0, f"{where}: the controller exited {code} on SIGTERM"
    st = store.get("osupgrades", "to-1.4.0")["status"]
    assert (st["phase"], st["upgraded"], st["failed"], st["pending"], st["total"]) == (
        "Complete", n - 4, 4, 0, n), f"{where}: {st}"
    assert {x["name"] for x in st["nodes"]} == failing  # listed: the failed ones only
    ins = fleet.installs
    twice = [k for k, v in Counter(i.node for i in ins).items() if v > 1]
    missing = sorted(set(fleet.nodes) - {i.node for i in ins})
    assert not twice and not missing, f"{where}: installed twice {twice}, never {missing}"
    assert all(i.cordoned and not i.pods_left for i in ins), f"{where}: not drained"
    assert {k for k, v in fleet.nodes.items() if v.version == "1.3.0"} == failing
    servers = sorted((i for i in ins if i.node in sh["servers"]), key=lambda i: i.start)
    agents = [i for i in ins if i.node not in sh["servers"]]
    assert all(a.end <= b.start for a, b in itertools.pairwise(servers)), "servers one by one"
    assert servers[-1].end <= min(i.start for i in agents), f"{where}: servers first"
    assert overlap(agents) <= c, f"{where}: more than {c} agents at once"
    assert min(i.start for i in ins) >= marks["open"], f"{where}: started before the window"
    # the halt: at maxFailures, plus at most the one node that was already in flight
    mf = sh["max_failures"]
    assert mf <= marks["failed_at_halt"] <= marks["failed_at_resume"] <= mf + 1, marks
    held = [i.node for i in ins if marks["halted"] <= i.start < marks["resumed"]]
    if isinstance(store, KubeDouble):
        # a node asked just before the halt starts a moment after it (its watcher reacts
        # to the request; later on a loaded host): the double keeps the node's versions, so
        # the write of the request itself is judged, in resourceVersion order against the
        # status that said Halted
        held = [h for h in held if asked_rv(store, h) > marks["halted_rv"]]
    assert held == [], f"{where}: asked to upgrade while halted: {held}"
    for node in store.items("nodes"):
        assert not node["spec"].get("unschedulable"), f"{node['metadata']['name']} cordoned"
        assert pr.CORDONED not in (node["metadata"].get("annotations") or {}), node
    # the metrics say the same
    assert metrics["osbuilder_node_upgrades_started_total"] == n
    assert metrics["osbuilder_node_upgrades_succeeded_total"] == n - 4
    assert metrics["osbuilder_node_upgrades_failed_total"] == 4
    assert metrics['osbuilder_osupgrade_nodes{osupgrade="to-1.4.0",phase="Upgraded"}'] == n - 4
    assert metrics['osbuilder_osupgrade_halted{osupgrade="to-1.4.0"}'] == 0


def check_calls(calls: list[Call], sh: dict[str, Any], marks: dict[str, float]) -> None:
    """What the double's record of every request shows."""
    where = f"{sh['nodes']} nodes"
    claims = first_claims(calls)  # the window: no node touched before it opened
    assert min(claims.values()) >= marks["open"] + marks["mono_to_wall"] - 0.01, where
    # least privilege: every request allowed (RBAC and the Node authorizer enforced)
    refused = [(x.user, x.method, x.path, x.code) for x in calls if x.code in (401, 403)]
    assert refused == [], f"{where}: refused requests: {refused[:5]}"
    for x in calls:
        if x.user.startswith(rbac.NODE_PREFIX):
            own = x.user.removeprefix(rbac.NODE_PREFIX)
            assert x.resource == "nodes" and (x.name == own or x.query.endswith(
                f"metadata.name%3D{own}") or f"metadata.name%3D{own}&" in x.query), (
                f"watcher {own} touched {x.method} {x.path}?{x.query}")


def per_node(counter: Counter[str], n: int) -> dict[str, float]:
    return {k: round(v / n, 2) for k, v in sorted(counter.items())}


def figures(api: KubeDouble, fleet: Fleet, sh: dict[str, Any], calls: list[Call],
            marks: dict[str, float], metrics: dict[str, float]) -> dict[str, Any]:
    n = sh["nodes"]
    ctl = [c for c in calls if c.user == CONTROLLER and not is_lease(c)]
    nodes = [c for c in calls if c.user.startswith(rbac.NODE_PREFIX)]
    writes = [c for c in ctl if c.verb in WRITES]
    status = [c for c in writes if c.subresource == "status"]
    kinds = Counter("status" if c.subresource == "status" else "eviction" if c.subresource
                    == "eviction" else c.resource for c in writes)
    # the halt's reaction: nodes claimed after the failure that reached maxFailures
    ends = sorted(i.end for i in fleet.installs if i.node in sh["failing"])
    halting = ends[sh["max_failures"] - 1] + marks["mono_to_wall"]
    late = [k for k, t in first_claims(calls).items()
            if halting < t < marks["resumed"] + marks["mono_to_wall"]]

    def m(name: str) -> float:
        return metrics.get(name, 0.0)
    passes = m("osbuilder_controller_plan_cpu_seconds_count") or 1
    watches = Counter(c.user for c in nodes if c.verb == "watch")
    lists = Counter(c.user for c in nodes if c.verb == "list")
    return {
        "nodes": n, "servers": len(sh["servers"]), "concurrency": sh["concurrency"],
        "rollout_s": round(marks["complete"] - marks["open"]
                           - (marks["resumed"] - marks["halted"]), 2),
        "halt_hold_s": round(marks["resumed"] - marks["halted"], 2),
        "controller_requests_per_node": per_node(Counter(c.verb for c in ctl), n),
        "watcher_requests_per_node": per_node(Counter(c.verb for c in nodes), n),
        "controller_writes_per_node": round(len(writes) / n, 2),
        "controller_writes_per_node_by_kind": per_node(kinds, n),
        "watcher_writes_per_node": round(sum(c.verb in WRITES for c in nodes) / n, 2),
        "lease_requests": sum(1 for c in calls if c.user == CONTROLLER and is_lease(c)),
        "status_write_bytes_per_node": round(sum(c.size for c in status) / n),
        "status_write_max_bytes": max((c.size for c in status), default=0),
        "planner_ms_mean": round(1000 * m("osbuilder_controller_plan_cpu_seconds_sum") / passes, 2),
        "planner_ms_max": round(1000 * m("osbuilder_controller_plan_cpu_seconds_max"), 2),
        "reconcile_ms_mean": round(1000 * m("osbuilder_controller_reconcile_seconds_sum")
                                   / (m("osbuilder_controller_reconcile_seconds_count") or 1),
                                   2),
        "planner_passes": int(passes),
        "controller_watch_reconnects": sum(c.verb == "watch" for c in ctl),
        "controller_list_requests": sum(c.verb == "list" and c.resource != "pods" for c in ctl),
        "watcher_watch_reconnects": sum(watches.values()) - sum(lists.values()),
        "watches_expired_410": api.expired_watches,
        "failed_at_halt": int(marks["failed_at_halt"]),
        "failed_at_resume": int(marks["failed_at_resume"]),
        "max_failures": sh["max_failures"],
        "claims_after_halting_failure": len(late),
    }
