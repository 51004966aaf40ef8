"""Fleet upgrades end to end on an in-process Kubernetes API server (TEST DOUBLE,
tests/helpers/kube_double.py: no real API server can run here), with a 2-server + 4-agent
fleet whose nodes run the real node watcher with the slot install replaced by a recorder
(tests/helpers/fleet_sim.py). The controller is the real one, in a thread, or as a real
process where it must be killed."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from osbuilder.node.fleet import protocol as pr
from osbuilder.node.fleet.controller import Controller
from osbuilder.node.kubeapi import Endpoint, Kube
from tests.helpers.fleet_scale import kubeconfig, watcher_process_rss
from tests.helpers.fleet_sim import Fleet, Install
from tests.helpers.kube_double import KubeDouble, serve

ROOT = Path(__file__).resolve().parents[2]
URL = "https://updates.example.com/{board}/osbuilder-{board}-{version}.raucb"


def osupgrade(name: str = "to-1.4.0", **spec: Any) -> dict[str, Any]:
    base = {"version": "1.4.0", "bundleURL": URL, "nodeSelector": {"matchLabels":
            {"site": "plant-7"}}, "concurrency": 2, "maxFailures": 1,
            "drain": {"timeout": "10m", "ignoreDaemonSets": True}}
    base.update(spec)
    return {"apiVersion": "osbuilder.io/v1alpha1", "kind": "OSUpgrade",
            "metadata": {"name": name}, "spec": {k: v for k, v in base.items() if v is not None}}


@pytest.fixture
def api() -> Iterator[tuple[KubeDouble, str]]:
    d = KubeDouble()
    with serve(d) as url:
        yield d, url


@pytest.fixture
def fleet(api: tuple[KubeDouble, str], tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(api[0], api[1], tmp_path)
    yield f
    f.shutdown()


class Running:
    def __init__(self, url: str, identity: str = "ctl-1", **kw: Any) -> None:
        self.kube = Kube(Endpoint(url, None), f"osbuilder-controller/{identity}")
        self.ctl = Controller(self.kube, identity, idle_s=0.3, busy_s=0.05,
                              log=lambda m: None, **kw)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.ctl.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.ctl.stop(self.stop)
        self.thread.join(10)


def wait_for(what: Callable[[], bool], timeout: float = 30.0, why: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {why or what}")


def status(api: KubeDouble, name: str = "to-1.4.0") -> dict[str, Any]:
    return api.get("osupgrades", name).get("status") or {}


def phase_is(api: KubeDouble, phase: str, name: str = "to-1.4.0") -> Callable[[], bool]:
    return lambda: status(api, name).get("phase") == phase


def overlap(installs: list[Install]) -> int:
    marks = sorted([(i.start, 1) for i in installs] + [(i.end, -1) for i in installs])
    cur = peak = 0
    for _, d in marks:
        cur += d
        peak = max(peak, cur)
    return peak


def check_order_and_cordons(api: KubeDouble, fleet: Fleet) -> None:
    ins = fleet.installs
    servers = [i for i in ins if i.node.startswith("server")]
    agents = [i for i in ins if i.node.startswith("agent")]
    assert [i.node for i in servers] == ["server-1", "server-2"]
    assert servers[0].end <= servers[1].start, "servers must go one at a time"
    assert max(i.end for i in servers) <= min(i.start for i in agents), "servers first"
    assert overlap(agents) <= 2, "concurrency 2 exceeded"
    for i in ins:  # drained before its reboot
        assert i.cordoned and i.pods_left == [], f"{i.node} not drained before install: {i}"
    for name in fleet.nodes:  # uncordoned only once the node answered
        hist = api.node_history(name)
        for before, after in itertools.pairwise(hist):
            if before["spec"].get("unschedulable") and not after["spec"].get("unschedulable"):
                ann = after["metadata"].get("annotations") or {}
                assert ann.get(pr.STATE) in ("done", "failed") and \
                    ann.get(pr.STATE_FOR) == ann.get(pr.REQUEST), f"{name} uncordoned early"
        assert not api.get("nodes", name)["spec"].get("unschedulable"), f"{name} cordoned"


def test_rollout_servers_first_concurrency_drain_and_uncordon(
        api: tuple[KubeDouble, str], fleet: Fleet) -> None:
    d, url = api
    fleet.standard()
    fleet.boot_all()
    ctl = Running(url)
    try:
        t0 = time.monotonic()
        d.create("osupgrades", osupgrade())
        wait_for(phase_is(d, "Complete"), why="Complete")
        took = time.monotonic() - t0
    finally:
        ctl.close()
    st = status(d)
    print(f"6-node simulated rollout: {took:.2f} s")
    assert (st["progress"], st["failed"]) == ("6/6", 0)
    assert sorted(i.node for i in fleet.installs) == sorted(fleet.nodes)
    assert all(i.url.endswith("/qemu-amd64/osbuilder-qemu-amd64-1.4.0.raucb")
               for i in fleet.installs)
    check_order_and_cordons(d, fleet)
    assert all(n.version == "1.4.0" for n in fleet.nodes.values())
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds["Complete"] == ("True", "AllNodesDone")
    assert conds["Progressing"][0] == "False"
    reasons = [e["reason"] for e in d.items("events")
               if e["involvedObject"]["kind"] == "Node"
               and e["involvedObject"]["name"] == "agent-3"]
    assert reasons == ["Draining", "Upgrading", "Upgraded"]
    mine = [e for e in d.items("events") if e["involvedObject"]["kind"] == "OSUpgrade"]
    assert {e["involvedObject"]["apiVersion"] for e in mine} == {"osbuilder.io/v1alpha1"}
    # per-node steps are events on the Nodes; the OSUpgrade gets its phases only
    assert [e["reason"] for e in mine] == ["Progressing", "Complete"]
    assert st["nodes"] == [] and st["pending"] == 0  # only nodes needing attention listed
    ds_pods = [p["metadata"]["name"] for p in d.items("pods")]
    assert sorted(ds_pods) == sorted(f"{n}-ds" for n in fleet.nodes)  # DaemonSets stay


def test_one_failure_halts_with_max_failures_1(api: tuple[KubeDouble, str],
                                               fleet: Fleet) -> None:
    d, url = api
    fleet.standard(fail="agent-1")
    fleet.boot_all()
    ctl = Running(url)
    try:
        d.create("osupgrades", osupgrade())
        wait_for(phase_is(d, "Halted"), why="Halted")
        time.sleep(0.5)  # nothing new starts once halted
        st = status(d)
    finally:
        ctl.close()
    nodes = {n["name"]: n for n in st["nodes"]}
    assert nodes["agent-1"]["phase"] == "Failed"
    assert "health gate" in nodes["agent-1"]["message"]
    assert st["failed"] == 1
    # nobody starts once the failure is known (agent-2 may finish first and free a slot)
    failed_at = next(i.end for i in fleet.installs if i.node == "agent-1")
    assert all(i.start < failed_at for i in fleet.installs)
    started = [i.node for i in fleet.installs]
    assert started[:2] == ["server-1", "server-2"]
    assert sorted(started[2:4]) == ["agent-1", "agent-2"]
    assert "agent-4" not in nodes and st["pending"] >= 1  # counted, not listed
    assert [e["reason"] for e in d.items("events") if e["involvedObject"]["kind"] ==
            "OSUpgrade"][-2:] == ["UpgradeFailed", "Halted"]  # warnings reach the OSUpgrade
    halted = next(c for c in st["conditions"] if c["type"] == "Halted")
    assert (halted["status"], halted["reason"]) == ("True", "MaxFailuresReached")
    assert "agent-1" in halted["message"]
    assert not d.get("nodes", "agent-1")["spec"].get("unschedulable"), "failed node cordoned"
    assert fleet.nodes["agent-1"].version == "1.3.0"  # rolled back


def test_window_closed_nothing_starts(api: tuple[KubeDouble, str], fleet: Fleet) -> None:
    d, url = api
    fleet.standard()
    fleet.boot_all()
    now = datetime.now(UTC)
    closed = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
              "startTime": (now + timedelta(hours=2)).strftime("%H:%M"),
              "endTime": (now + timedelta(hours=3)).strftime("%H:%M"), "timeZone": "UTC"}
    ctl = Running(url)
    try:
        d.create("osupgrades", osupgrade(window=closed))
        wait_for(phase_is(d, "Waiting"), why="Waiting")
        time.sleep(0.5)
        assert fleet.installs == []
        assert not any(n["spec"].get("unschedulable") for n in d.items("nodes"))
        prog = next(c for c in status(d)["conditions"] if c["type"] == "Progressing")
        assert prog["reason"] == "OutsideWindow"
        # open it (Europe/Berlin, the whole of today there): the rollout starts
        d.patch("osupgrades", "to-1.4.0", {"spec": {"window": {
            "days": [datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo(
                "Europe/Berlin")).strftime("%a").lower()],
            "startTime": "00:00", "endTime": "00:00", "timeZone": "Europe/Berlin"}}})
        wait_for(phase_is(d, "Complete"), why="Complete after the window opened")
    finally:
        ctl.close()


def test_pause_and_resume(api: tuple[KubeDouble, str], fleet: Fleet) -> None:
    d, url = api
    fleet.standard()
    fleet.boot_all()
    ctl = Running(url)
    try:
        d.create("osupgrades", osupgrade())
        wait_for(lambda: any(i.node == "server-2" for i in fleet.installs), why="server-2")
        d.patch("osupgrades", "to-1.4.0", {"spec": {"paused": True}})
        wait_for(phase_is(d, "Paused"), why="Paused")
        time.sleep(0.6)
        before = [i.node for i in fleet.installs]
        time.sleep(0.6)
        assert [i.node for i in fleet.installs] == before, "a node started while paused"
        assert all(n.startswith("server") for n in before)
        d.patch("osupgrades", "to-1.4.0", {"spec": {"paused": False}})
        wait_for(phase_is(d, "Complete"), why="Complete after resume")
    finally:
        ctl.close()
    assert sorted(i.node for i in fleet.installs) == sorted(fleet.nodes)
    check_order_and_cordons(d, fleet)


def test_newer_osupgrade_supersedes_older(api: tuple[KubeDouble, str], fleet: Fleet) -> None:
    d, url = api
    fleet.standard()
    fleet.boot_all()
    ctl = Running(url)
    try:
        d.create("osupgrades", osupgrade(paused=True))
        wait_for(phase_is(d, "Paused"))
        time.sleep(1.1)  # creationTimestamp has 1 s resolution
        d.create("osupgrades", osupgrade("to-1.5.0", version="1.5.0"))
        wait_for(phase_is(d, "Complete", "to-1.5.0"), why="1.5.0 complete")
        wait_for(phase_is(d, "Superseded"), why="1.4.0 superseded")
    finally:
        ctl.close()
    assert {n.version for n in fleet.nodes.values()} == {"1.5.0"}
    assert len(fleet.installs) == 6


def test_two_controllers_only_the_lease_holder_acts(api: tuple[KubeDouble, str],
                                                    fleet: Fleet) -> None:
    d, url = api
    fleet.standard()
    fleet.boot_all()
    a = Running(url, "ctl-a")
    wait_for(lambda: a.ctl.lease.held(), why="ctl-a leads")
    b = Running(url, "ctl-b")
    try:
        d.create("osupgrades", osupgrade())
        wait_for(phase_is(d, "Complete"), why="Complete")
    finally:
        a.close()
        b.close()
    writers = {c.agent for c in d.calls if c.method in ("PATCH", "POST")
               and not c.path.endswith("/leases") and "watch-node" not in c.agent}
    assert writers == {"osbuilder-controller/ctl-a"}
    lease = d.get("leases", "kube-system/osbuilder-controller")
    assert lease["spec"]["holderIdentity"] in ("", "ctl-a")
    assert len(fleet.installs) == 6


def test_drain_blocked_by_pdb_times_out_and_fails_node_without_reboot(
        api: tuple[KubeDouble, str], fleet: Fleet) -> None:
    d, url = api
    fleet.add("agent-1", pods=0)
    d.create("pods", {"metadata": {"name": "db-0", "labels": {"app": "db"},
                                   "ownerReferences": [{"kind": "StatefulSet", "name": "db",
                                                        "controller": True}]},
                      "spec": {"nodeName": "agent-1"}})
    d.pdbs.append({"namespace": "default", "matchLabels": {"app": "db"}, "minAvailable": 1})
    fleet.boot_all()
    ctl = Running(url)
    try:
        t0 = time.monotonic()
        d.create("osupgrades", osupgrade(drain={"timeout": "2s"}))
        wait_for(lambda: any(n["phase"] == "Draining" for n in status(d).get("nodes", [])))
        wait_for(lambda: bool(d.get("nodes", "agent-1")["spec"].get("unschedulable")),
                 why="cordon")
        wait_for(phase_is(d, "Halted"), why="Halted")
        took = time.monotonic() - t0
    finally:
        ctl.close()
    node = status(d)["nodes"][0]
    assert node["phase"] == "Failed"
    assert "drain did not finish within 2 s" in node["message"]
    assert "default/db-0" in node["message"] and "disruption budget" in node["message"]
    assert 2.0 <= took < 6, took
    assert fleet.installs == [], "a node whose drain failed must not be rebooted"
    n = d.get("nodes", "agent-1")
    assert not n["spec"].get("unschedulable")
    assert pr.REQUEST not in (n["metadata"].get("annotations") or {})
    assert sorted(p["metadata"]["name"] for p in d.items("pods")) == ["agent-1-ds", "db-0"]
    evictions = [c for c in d.calls if c.path.endswith("/db-0/eviction")]
    assert len(evictions) >= 2  # tried again while waiting


RUN_CONTROLLER = """
import sys, threading
from pathlib import Path
from osbuilder.node.fleet.controller import Controller
from osbuilder.node.kubeapi import Kube, load_kubeconfig
kube = Kube(load_kubeconfig(Path(sys.argv[1])), "osbuilder-controller/" + sys.argv[2])
Controller(kube, sys.argv[2], idle_s=0.3, busy_s=0.05).run(threading.Event())
"""


def start_controller_process(cfg: Path, identity: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", RUN_CONTROLLER, str(cfg), identity],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("kill_after", [5, 17, 40])
def test_controller_killed_mid_rollout_resumes(api: tuple[KubeDouble, str], fleet: Fleet,
                                               tmp_path: Path, kill_after: int) -> None:
    """SIGKILL after the controller's n-th write request, restart: every node upgraded
    exactly once, none skipped, order and concurrency kept."""
    d, url = api
    fleet.standard()
    fleet.boot_all()
    cfg = kubeconfig(tmp_path / "kubeconfig.yaml", url, "t")
    procs: list[subprocess.Popen[bytes]] = []
    writes = 0

    def on_call(call: Any) -> None:
        nonlocal writes
        if "controller" in call.agent and call.method in ("PATCH", "POST", "PUT"):
            writes += 1
            if writes == kill_after and procs:
                os.kill(procs[0].pid, signal.SIGKILL)

    d.on_call = on_call
    procs.append(start_controller_process(cfg, "server-1"))
    d.create("osupgrades", osupgrade())
    try:
        wait_for(lambda: procs[0].poll() is not None, why="the kill")
        assert procs[0].returncode == -signal.SIGKILL
        procs.append(start_controller_process(cfg, "server-1"))  # systemd's restart
        wait_for(phase_is(d, "Complete"), timeout=60, why="Complete after restart")
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert sorted(i.node for i in fleet.installs) == sorted(fleet.nodes)  # once each
    assert all(n.boots == 2 for n in fleet.nodes.values())
    check_order_and_cordons(d, fleet)


def test_watch_node_process_rss(tmp_path: Path) -> None:
    """`osbuilder-agent watch-node` runs on every node, Raspberry Pis included: as a real
    process, synced and reporting, it stays small (the controller's figures are in
    tests/unit/test_fleet_scale.py)."""
    rss = watcher_process_rss(tmp_path)
    print(f"watch-node process peak RSS {rss:.1f} MiB")
    assert rss <= 30
