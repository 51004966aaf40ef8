"""The pure parts of fleet upgrades, without any API server: spec parsing, maintenance
windows, the rollout planner, the node watcher's decision, and the CRD file itself."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
import yaml

from osbuilder.node.fleet import protocol as p
from osbuilder.node.fleet.crd import SpecError, parse_spec
from osbuilder.node.fleet.rollout import (
    DrainNode,
    NodeFacts,
    Record,
    Uncordon,
    UpgradeFacts,
    plan,
)
from osbuilder.node.fleet.watcher import decide
from osbuilder.node.fleet.window import is_open

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "osbuilder/host/overlays/common/usr/share/osbuilder/manifests/osupgrade-crd.yaml"
ISSUE_SPEC: dict[str, Any] = {
    "version": "1.4.0",
    "bundleURL": "https://updates.example.com/{board}/osbuilder-{board}-{version}.raucb",
    "nodeSelector": {"matchLabels": {"site": "plant-7"}},
    "concurrency": 2,
    "drain": {"timeout": "10m", "ignoreDaemonSets": True, "deleteEmptyDirData": True},
    "window": {"days": ["sat", "sun"], "startTime": "01:00", "endTime": "05:00",
               "timeZone": "Europe/Berlin"},
    "maxFailures": 1,
}
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


# -- spec and window ---------------------------------------------------------------------
def test_issue_example_parses_with_defaults() -> None:
    s = parse_spec(ISSUE_SPEC)
    assert (s.version, s.concurrency, s.max_failures, s.paused) == ("1.4.0", 2, 1, False)
    assert s.drain.timeout_s == 600 and s.drain.delete_emptydir_data and not s.drain.force
    assert s.url_for("1.4.0", "rpi4") == ("https://updates.example.com/rpi4/"
                                          "osbuilder-rpi4-1.4.0.raucb")
    assert s.url_for("1.4.0", None) is None  # waits for the node's board label
    assert s.selector.matches({"site": "plant-7", "x": "y"})
    assert not s.selector.matches({"site": "plant-8"})


@pytest.mark.parametrize("change, error", [
    ({"version": None}, r"spec: give exactly one of version"),
    ({"channel": "https://c.example/stable"}, r"exactly one of version"),
    ({"version": "1.4 beta"}, r"spec.version: '1.4 beta' is not a version"),
    ({"bundleURL": "https://x/{arch}.raucb"}, r"spec.bundleURL: unknown placeholder \{arch\}"),
    ({"concurrency": 0}, r"spec.concurrency: expected a whole number of at least 1"),
    ({"drain": {"timeout": "10 minutes"}}, r"spec.drain.timeout: expected a duration"),
    ({"window": {"timeZone": "Mars/Olympus"}}, r"spec.window.timeZone: unknown time zone"),
    ({"window": {"days": ["caturday"]}}, r"spec.window.days: 'cat' is not a day"),
    ({"window": {"startTime": "25:00"}}, r"spec.window.startTime: expected a time HH:MM"),
    ({"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     r"matchExpressions\[0\].values: In needs a non-empty list"),
])
def test_bad_spec_names_the_field(change: dict[str, Any], error: str) -> None:
    raw = {k: v for k, v in {**ISSUE_SPEC, **change}.items() if v is not None}
    with pytest.raises(SpecError, match=error):
        parse_spec(raw)


def test_window_local_time_and_midnight() -> None:
    w = parse_spec(ISSUE_SPEC).window
    assert is_open(w, at("2026-11-28T01:00"))  # Saturday 01:00 Berlin
    assert is_open(w, at("2026-11-29T04:59"))  # Sunday
    assert not is_open(w, at("2026-11-28T05:00"))
    assert not is_open(w, at("2026-11-27T02:00"))  # Friday
    assert not is_open(w, at("2026-11-28T00:59"))
    night = parse_spec({**ISSUE_SPEC, "window": {"days": ["sat"], "startTime": "22:00",
                                                 "endTime": "04:00",
                                                 "timeZone": "Europe/Berlin"}}).window
    assert is_open(night, at("2026-11-28T23:00")) and is_open(night, at("2026-11-29T03:59"))
    assert not is_open(night, at("2026-11-28T03:00"))  # that is Friday night's window
    summer = at("2026-07-04T01:30")  # CEST: the window follows the wall clock
    assert is_open(w, summer)


# -- the planner -----------------------------------------------------------------------------
def node(name: str, server: bool = False, ann: dict[str, str] | None = None,
         ready: bool = True, **more: str) -> NodeFacts:
    ann = {**(ann or {}), **more}
    return NodeFacts(name, server, ready, False, {"site": "plant-7", p.BOARD_LABEL: "pc"},
                     {p.VERSION: "1.3.0", **{"osbuilder.io/" + k.replace("_", "-"): v
                                             for k, v in ann.items()}})


def upgrade(records: dict[str, Record] | None = None, name: str = "u1", created: str = "1",
            **spec: Any) -> UpgradeFacts:
    s = parse_spec({**ISSUE_SPEC, "window": None, **spec})
    return UpgradeFacts(name, f"uid-{name}", created, s, s.version, records or {})


FLEET = [node("s1", True), node("s2", True), node("a1"), node("a2"), node("a3"), node("a4")]
NOW = 1_000_000.0


def drains(pl: Any) -> list[str]:
    return [a.node for a in pl.actions if isinstance(a, DrainNode)]


def test_first_plan_claims_one_server_only() -> None:
    pl = plan([upgrade()], FLEET, NOW)
    assert drains(pl) == ["s1"]
    recs = pl.outcomes["u1"].records
    assert recs["s1"].phase == "Draining" and recs["s1"].since == NOW
    assert {recs[k].phase for k in ("s2", "a1", "a4")} == {"Pending"}
    assert pl.outcomes["u1"].phase == "Progressing"
    # the claim is news on the Node; the OSUpgrade hears of phases and warnings only
    assert [(e.kind, e.reason) for e in pl.events] == [("Node", "Draining"),
                                                      ("OSUpgrade", "Progressing")]


def test_agents_wait_for_servers_then_go_concurrency_at_a_time() -> None:
    done = {"state": "done", "state_for": "uid-u1/1.4.0", "request": "uid-u1/1.4.0",
            "version": "1.4.0"}
    fleet = [node("s1", True, done), node("s2", True, request="uid-u1/1.4.0",
                                           state="rebooting", state_for="uid-u1/1.4.0"),
             *FLEET[2:]]
    pl = plan([upgrade()], fleet, NOW)
    assert drains(pl) == []  # s2 still upgrading: no agent yet
    assert pl.outcomes["u1"].records["s2"].phase == "Upgrading"
    fleet[1] = node("s2", True, {**done, "state": "failed", "message": "boom"})
    pl = plan([upgrade(maxFailures=2)], fleet, NOW)
    assert drains(pl) == ["a1", "a2"]  # a failed server counts as finished
    assert pl.outcomes["u1"].records["s2"].message == "boom"


def test_halt_at_max_failures_gives_up_drains_and_uncordons() -> None:
    recs = {"a2": Record("Draining", "1.4.0", NOW - 5)}
    fleet = [node("s1", True, version="1.4.0"), node("s2", True, version="1.4.0"),
             node("a1", request="uid-u1/1.4.0", state="failed", state_for="uid-u1/1.4.0",
                  cordoned="true", message="health gate: k3s not active"),
             node("a2", cordoned="true"), node("a3")]
    pl = plan([upgrade(recs)], fleet, NOW)
    out = pl.outcomes["u1"]
    assert out.phase == "Halted"
    assert out.records["a1"].phase == "Failed" and out.records["a2"].phase == "Pending"
    assert drains(pl) == []
    assert sorted(a.node for a in pl.actions if isinstance(a, Uncordon)) == ["a1", "a2"]
    halted = next(c for c in out.conditions if c.type == "Halted")
    assert halted.status and "a1: health gate: k3s not active" in halted.message


def test_drain_timeout_fails_without_request() -> None:
    recs = {"a1": Record("Draining", "1.4.0", NOW - 601)}
    fleet = [node("a1", cordoned="true")]
    pl = plan([upgrade(recs, maxFailures=3)], fleet, NOW, {"a1": "pods left: default/db-0"})
    r = pl.outcomes["u1"].records["a1"]
    assert r.phase == "Failed" and "within 600 s: pods left: default/db-0" in r.message
    assert drains(pl) == [] and [type(a) for a in pl.actions] == [Uncordon]


def test_restart_is_idempotent_no_second_request() -> None:
    """The plan after a restart, from the API alone, asks nothing new of a node at work."""
    working = {"request": "uid-u1/1.4.0", "state": "installing",
               "state_for": "uid-u1/1.4.0", "cordoned": "true"}
    fleet = [node("s1", True, working), *FLEET[1:]]
    pl = plan([upgrade()], fleet, NOW)
    assert drains(pl) == [] and pl.actions == []
    assert pl.outcomes["u1"].records["s1"].phase == "Upgrading"


def test_pause_window_and_unready_nodes_start_nothing() -> None:
    assert drains(plan([upgrade(paused=True)], FLEET, NOW)) == []
    closed = {"days": ["mon"], "startTime": "01:00", "endTime": "02:00", "timeZone": "UTC"}
    pl = plan([upgrade(window=closed)], FLEET, at("2026-11-28T12:00"))
    assert drains(pl) == [] and pl.outcomes["u1"].phase == "Waiting"
    pl = plan([upgrade()], [node("s1", True, ready=False), *FLEET[1:]], NOW)
    assert drains(pl) == ["s2"]


def test_newer_upgrade_owns_nodes_older_is_superseded() -> None:
    old = upgrade({"s1": Record("Draining", "1.4.0", NOW)}, "old", "2026-01-01")
    new = upgrade(None, "new", "2026-02-01", version="1.5.0")
    pl = plan([new, old], [node("s1", True, cordoned="true")], NOW)
    assert pl.outcomes["old"].phase == "Superseded"
    assert [(a.node, a.upgrade, a.version) for a in pl.actions
            if isinstance(a, DrainNode)] == [("s1", "new", "1.5.0")]
    assert not any(isinstance(a, Uncordon) for a in pl.actions)  # handed over, still held


def test_node_already_at_version_and_complete() -> None:
    fleet = [node("a1", version="1.4.0")]
    pl = plan([upgrade()], fleet, NOW)
    assert pl.outcomes["u1"].phase == "Complete" and drains(pl) == []
    assert pl.outcomes["u1"].records["a1"].message == "already at 1.4.0"


def test_invalid_spec_outcome() -> None:
    u = UpgradeFacts("bad", "uid", "1", None, None, {}, problem="spec.version: nope")
    out = plan([u], FLEET, NOW).outcomes["bad"]
    assert out.phase == "Invalid"
    inv = next(c for c in out.conditions if c.type == "Invalid")
    assert inv.status and inv.message == "spec.version: nope"


# -- the node watcher's decision ---------------------------------------------------------------
REQ = {p.REQUEST: "uid/1.4.0", p.DESIRED_VERSION: "1.4.0", p.BUNDLE_URL: "https://b/x.raucb"}


def test_watcher_starts_once_and_reports_progress() -> None:
    d = decide(REQ, "1.3.0", None, None, lambda: False, 100.0)
    assert d.start == "https://b/x.raucb" and d.attempt and d.attempt["tries"] == 1
    assert d.report[p.STATE] == "downloading" and d.report[p.STATE_FOR] == "uid/1.4.0"
    rec = {"state": "installing", "source": "https://b/x.raucb", "started": 100}
    d = decide(REQ, "1.3.0", rec, d.attempt, lambda: True, 101.0)
    assert d.start is None and d.report[p.STATE] == "installing"


def test_watcher_after_reboot_reports_gate_verdict() -> None:
    attempt = {"request": "uid/1.4.0", "url": "https://b/x.raucb", "tries": 1, "started": 100}
    done = {"state": "done", "source": "https://b/x.raucb", "started": 100}
    d = decide(REQ, "1.4.0", done, attempt, lambda: False, 500.0)
    assert (d.report[p.STATE], d.report[p.VERSION], d.start) == ("done", "1.4.0", None)
    failed = {**done, "state": "failed", "error": "health gate: node not Ready"}
    d = decide(REQ, "1.3.0", failed, attempt, lambda: False, 500.0)
    assert (d.report[p.STATE], d.report[p.MESSAGE]) == ("failed", "health gate: node not Ready")
    assert d.start is None  # never retried for the same request


def test_watcher_retries_a_cut_short_upgrade_then_gives_up() -> None:
    attempt = {"request": "uid/1.4.0", "url": "https://b/x.raucb", "tries": 1, "started": 100}
    cut = {"state": "downloading", "source": "https://b/x.raucb", "started": 100}
    d = decide(REQ, "1.3.0", cut, attempt, lambda: False, 200.0)
    assert d.start == "https://b/x.raucb" and d.attempt and d.attempt["tries"] == 2
    d = decide(REQ, "1.3.0", cut, {**attempt, "tries": 3}, lambda: False, 200.0)
    assert d.start is None and d.report[p.STATE] == "failed"


def test_watcher_without_request_reports_version_only() -> None:
    assert decide({}, "1.3.0", None, None, lambda: False, 1.0).report == {p.VERSION: "1.3.0"}
    d = decide(REQ, "1.4.0", None, None, lambda: False, 1.0)
    assert d.report[p.STATE] == "done" and d.start is None


# -- the CRD file -----------------------------------------------------------------------------
def test_crd_is_structural_and_accepts_the_issue_example() -> None:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == "osupgrades.osbuilder.io"
    ver = crd["spec"]["versions"][0]
    assert (ver["name"], ver["subresources"]) == ("v1alpha1", {"status": {}})
    cols = [c["name"] for c in ver["additionalPrinterColumns"]]
    assert cols == ["Phase", "Version", "Upgraded/Total", "Failed", "Age"]
    schema = ver["schema"]["openAPIV3Schema"]

    def typed(s: dict[str, Any], where: str) -> None:  # structural: every node has a type
        assert "type" in s, f"{where}: no type"
        for k, sub in (s.get("properties") or {}).items():
            typed(sub, f"{where}.{k}")
        if "items" in s:
            typed(s["items"], f"{where}[]")
    typed(schema, "")
    obj = {"apiVersion": "osbuilder.io/v1alpha1", "kind": "OSUpgrade",
           "metadata": {"name": "to-1.4.0"}, "spec": ISSUE_SPEC}
    jsonschema.validate(obj, schema)
    for bad in ({**ISSUE_SPEC, "concurrency": 0}, {**ISSUE_SPEC, "channel": "https://c"},
                {k: v for k, v in ISSUE_SPEC.items() if k != "bundleURL"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**obj, "spec": bad}, schema)


# -- release channels and the status written ------------------------------------------------
def test_channel_answers_text_or_json_and_is_asked_at_most_every_interval() -> None:
    from osbuilder.node.fleet.channel import Channels
    from tests.unit.test_apply_fs import serve

    t = [0.0]
    routes = {"/stable": (200, b"1.4.0\n"), "/json": (200, b'{"version": "1.5.0-rc1"}'),
              "/junk": (200, b"<html>oops</html>")}
    with serve(routes) as (url, asked):
        ch = Channels(every_s=300, clock=lambda: t[0])
        assert ch.latest(url + "/stable") == ("1.4.0", "")
        assert ch.latest(url + "/json") == ("1.5.0-rc1", "")
        version, problem = ch.latest(url + "/junk")
        assert version is None and "not a version" in problem
        routes["/stable"] = (200, b"1.4.1\n")
        assert ch.latest(url + "/stable")[0] == "1.4.0"  # asked 0 s ago: not again
        t[0] = 301
        assert ch.latest(url + "/stable")[0] == "1.4.1"
        routes["/stable"] = (500, b"down")
        t[0] = 700
        version, problem = ch.latest(url + "/stable")
        assert version == "1.4.1" and "500" in problem  # the last good answer is kept
        assert asked.count("/stable") == 3


def test_invalid_spec_status_names_the_field() -> None:
    from osbuilder.node.fleet.api_objects import status_of, upgrade_facts

    obj = {"metadata": {"name": "bad", "uid": "u", "generation": 2,
                        "creationTimestamp": "2026-11-23T10:00:00Z"},
           "spec": {**ISSUE_SPEC, "window": {"timeZone": "Europe/Atlantis"}}}
    facts = upgrade_facts(obj, NOW)
    st = status_of(obj, plan([facts], FLEET, NOW).outcomes["bad"], facts.target, NOW)
    assert st["phase"] == "Invalid" and st["progress"] == "0/0"
    inv = next(c for c in st["conditions"] if c["type"] == "Invalid")
    assert inv["status"] == "True" and inv["observedGeneration"] == 2
    assert "spec.window.timeZone: unknown time zone 'Europe/Atlantis'" in inv["message"]


def test_node_name_from_k3s_config_or_hostname(tmp_path: Path) -> None:
    import socket

    from osbuilder.node.node_name import node_name

    cfg = tmp_path / "config.yaml"
    assert node_name(cfg) == socket.gethostname()
    cfg.write_text("token: x\nnode-name: edge-7\n")
    assert node_name(cfg) == "edge-7"
