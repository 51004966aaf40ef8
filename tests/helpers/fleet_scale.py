"""The fleet rollout scenario at any size: `make test` runs it at 10 and 100 nodes,
`make test-all` and `make bench-fleet` at 1,000 too (tests/unit/test_fleet_scale.py,
bench/fleet.py).

n nodes: 3 servers, n-3 agents; concurrency max(2, n // 10); four agents fail their
health gate (one early, one mid-fleet, one half a wave after it, one a wave and a half
after it); maxFailures 2. The OSUpgrade is created outside its maintenance window, which
opens OPEN_AFTER_S later; the rollout halts at the second failure (the third, already in
flight, may fail too: "within one node"), is held HOLD_S to see that nothing starts, then
maxFailures is raised to 10 and it runs to Complete with four nodes failed.

Everything real but the API server and the machines: the API server is the double
(TEST DOUBLE, tests/helpers/kube_double.py) with the image's manifests applied and RBAC
enforced; the controller is its own process (tests/helpers/run_controller.py) holding
only its ServiceAccount token, fetched by the real credential step; each node runs the
real watcher with its install and reboot simulated (tests/helpers/fleet_sim.py), in a
fixed NODE_UPGRADE_S at every size.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from osbuilder.node.fleet import credential
from osbuilder.node.kubeapi import Endpoint
from tests.helpers.fleet_checks import check_calls, check_rollout, figures
from tests.helpers.fleet_sim import Fleet, Store
from tests.helpers.kube_double import KubeDouble, serve

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "osbuilder/host/overlays/common/usr/share/osbuilder/manifests"
URL = "https://updates.example.com/{board}/osbuilder-{board}-{version}.raucb"
NAME = "to-1.4.0"
STEP_S, REBOOT_S = 0.03, 0.12  # a simulated node's three install steps, and its reboot
NODE_UPGRADE_S = 3 * STEP_S + REBOOT_S
BUSY_S = 0.1  # the controller's poll while nodes are at work (1 s in production)
OPEN_AFTER_S, HOLD_S = 1.0, 0.5


def shape(n: int) -> dict[str, Any]:
    servers, agents, c = 3, n - 3, max(2, n // 10)
    mid = agents // 2
    idx = [agents // 5, mid, mid + max(1, c // 2), mid + max(3, 3 * c // 2)]
    if n < 10 or len(set(idx)) < 4 or idx[-1] >= agents:
        raise ValueError(f"the scenario needs at least 10 nodes, got {n}")
    width = len(str(agents))
    names = [f"agent-{i:0{width}d}" for i in range(agents)]
    return {"nodes": n, "servers": [f"server-{i}" for i in range(1, servers + 1)],
            "agents": names, "concurrency": c, "failing": [names[i] for i in idx],
            "max_failures": 2}


def kubeconfig(path: Path, url: str, token: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x"}))
    path.chmod(0o600)
    return path


def manifest_docs() -> list[dict[str, Any]]:
    return [d for f in sorted(MANIFESTS.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]


def osupgrade(sh: dict[str, Any], opens_at: float) -> dict[str, Any]:
    """`opens_at` in the controller's clock, on a minute (windows are HH:MM)."""
    start, end = time.gmtime(opens_at), time.gmtime(opens_at + 3 * 3600)
    return {"apiVersion": "osbuilder.io/v1alpha1", "kind": "OSUpgrade",
            "metadata": {"name": NAME},
            "spec": {"version": "1.4.0", "bundleURL": URL, "concurrency": sh["concurrency"],
                     "maxFailures": sh["max_failures"],
                     "nodeSelector": {"matchLabels": {"site": "plant-7"}},
                     "drain": {"timeout": "10m", "ignoreDaemonSets": True},
                     "window": {"startTime": time.strftime("%H:%M", start),
                                "endTime": time.strftime("%H:%M", end), "timeZone": "UTC"}}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """The controller's /metrics as {'name{labels}': value}."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def proc_figures(pid: int) -> tuple[float, float]:
    """(peak RSS MiB, CPU seconds) of a running process."""
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return hwm / 1024, ticks / float(os.sysconf("SC_CLK_TCK"))


def wait(what: Any, timeout: float, why: str, every: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {why}")


def run(n: int, tmp: Path) -> dict[str, Any]:
    """One rollout of an n-node fleet on the API double; its figures, after checking it
    went as it must."""
    sh = shape(n)
    api = KubeDouble()
    api.apply(manifest_docs())
    api.tokens["admin-token"] = ("system:admin", 0.0)

    def node_token(name: str) -> str:
        api.tokens[f"kubelet-{name}"] = (f"system:node:{name}", 0.0)
        return f"kubelet-{name}"

    def started() -> int:  # count from the OSUpgrade on: the rollout's requests only
        with api.lock:
            api.calls.clear()
            return len(api.items("events"))

    with serve(api) as url:
        admin = kubeconfig(tmp / "admin.yaml", url, "admin-token")
        got = scenario(api, url, admin, sh, tmp, node_token, started=started)
    calls = list(api.calls)
    check_rollout(api, got["fleet"], sh, got["marks"], got["metrics"], got["code"])
    check_calls(calls, sh, got["marks"])
    out = figures(api, got["fleet"], sh, calls, got["marks"], got["metrics"])
    out.update(got["figures"], events_posted=len(api.items("events")) - got["before"])
    return out


def scenario(store: Store, url: str | Endpoint, admin: Path, sh: dict[str, Any], tmp: Path,
             node_token: Callable[[str], str] | None = None, pods: bool = True,
             started: Callable[[], int] = lambda: 0, report_s: float = 300.0
             ) -> dict[str, Any]:
    """The fleet of `sh` on `store` (the double, or a real k3s), the controller as its own
    process with the token the credential step gets with `admin`; until Complete."""
    # the nodes' records are written with fsync, as on a node: on tmpfs that is free, so a
    # node's upgrade takes NODE_UPGRADE_S whatever the disk is doing for others
    shm = Path("/dev/shm")
    state = Path(tempfile.mkdtemp(prefix="osb-fleet-", dir=shm if os.access(shm, os.W_OK)
                                  else tmp))
    fleet = Fleet(store, url, state / "nodes", STEP_S, REBOOT_S, idle_s=5.0, watch_s=30,
                  node_token=node_token)
    try:
        for name in sh["servers"]:
            fleet.add(name, server=True, pods=0, daemonset=pods)
        for name in sh["agents"]:
            fleet.add(name, fail=name in sh["failing"], pods=2 if pods else 0, daemonset=pods)
        fleet.boot_all()
        fleet.kubelet_reports(report_s)
        ctl_cfg = tmp / "controller" / "kubeconfig"
        credential.obtain(admin, ctl_cfg, wait_s=30)
        return dict(_controlled(store, fleet, sh, ctl_cfg, tmp, started), fleet=fleet)
    finally:
        fleet.shutdown()
        shutil.rmtree(state, ignore_errors=True)


def _controlled(store: Store, fleet: Fleet, sh: dict[str, Any], ctl_cfg: Path, tmp: Path,
                started: Callable[[], int]) -> dict[str, Any]:
    port = free_port()
    # the controller's clock reads a whole minute `lead` seconds from now: the window opens
    # then, OPEN_AFTER_S after the OSUpgrade is created (once the controller leads)
    lead = 2.5 + 0.006 * sh["nodes"]
    opens_real = time.time() + lead
    offset = (opens_real // 60 + 2) * 60 - opens_real
    log = (tmp / "controller.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.run_controller", str(ctl_cfg),
                             "--metrics", f"127.0.0.1:{port}", "--clock-offset", str(offset),
                             "--busy-s", str(BUSY_S), "--idle-s", "2"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait(lambda: _leading(port), lead - OPEN_AFTER_S, "the controller to sync and lead")
        time.sleep(max(opens_real - OPEN_AFTER_S - time.time(), 0))
        rss0, cpu0 = proc_figures(proc.pid)
        before = started()
        mono_to_wall = time.time() - time.monotonic()
        here = os.times()
        store.create("osupgrades", osupgrade(sh, opens_real + offset))
        marks = _follow(store, sh, opens_real - mono_to_wall)
        marks["mono_to_wall"] = mono_to_wall
        rss, cpu = proc_figures(proc.pid)
        # this process (the API double and every node's watcher): when it uses a whole
        # core the rollout's pace is the simulation's, not the controller's
        harness = os.times().user + os.times().system - here.user - here.system
        metrics = scrape(port)
    finally:
        proc.terminate()
        code = proc.wait(30)
        log.close()
    return {"marks": marks, "metrics": metrics, "code": code, "before": before,
            "figures": {"controller_peak_rss_mib": round(rss, 1),
                        "controller_rss_before_mib": round(rss0, 1),
                        "controller_cpu_s": round(cpu - cpu0, 2),
                        "controller_cpu_total_s": round(cpu, 2),
                        "simulation_cpu_s": round(harness, 2),
                        "node_upgrade_s": NODE_UPGRADE_S}}


def _leading(port: int) -> bool:
    try:
        m = scrape(port)
    except OSError:
        return False
    return m.get("osbuilder_controller_leader") == 1 and m.get(
        "osbuilder_controller_plan_cpu_seconds_count", 0) > 0


def _follow(store: Store, sh: dict[str, Any], t_open: float) -> dict[str, float]:
    """Watch the status: note the halt, hold it, raise maxFailures, wait for Complete."""
    marks: dict[str, float] = {"open": t_open}
    limit = 60 + 0.15 * sh["nodes"]
    end = time.monotonic() + limit
    while time.monotonic() < end:
        up = store.get("osupgrades", NAME)
        st = up.get("status") or {}
        phase, failed = st.get("phase"), int(st.get("failed") or 0)
        now = time.monotonic()
        if phase == "Halted" and "halted" not in marks:
            marks.update(halted=now, failed_at_halt=failed,
                         halted_rv=float(up["metadata"]["resourceVersion"]))
        if "halted" in marks and "resumed" not in marks and now - marks["halted"] >= HOLD_S:
            marks.update(resumed=now, failed_at_resume=failed)
            store.patch("osupgrades", NAME, {"spec": {"maxFailures": 10}})
        if phase == "Complete" and "resumed" in marks:
            marks["complete"] = now
            return marks
        time.sleep(0.02)
    raise AssertionError(f"{sh['nodes']} nodes: no Complete within {limit:.0f} s; marks "
                         f"{marks}; status {st}")


def agent(*args: str) -> list[str]:
    """`osbuilder-agent ARGS` as /usr/bin/osbuilder-agent in the image runs it."""
    return [sys.executable, "-c", "import sys; from osbuilder.node.agent_cli import main; "
            "sys.exit(main())", *args]


def watcher_process_rss(tmp: Path) -> float:
    """Peak RSS (MiB) of a real `osbuilder-agent watch-node` process that has synced its
    Node and reported its version, as on every node of a fleet."""
    api = KubeDouble()
    api.create("nodes", {"metadata": {"name": "idle-1", "labels": {}}, "spec": {}})
    with serve(api) as url:
        cfg = kubeconfig(tmp / "watcher.yaml", url, "t")
        proc = subprocess.Popen(agent("watch-node", "--kubeconfig", str(cfg), "--node",
                                      "idle-1"), cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            wait(lambda: "osbuilder.io/version" in (api.get("nodes", "idle-1")["metadata"].get(
                "annotations") or {}), 30, "the watch-node process to report")
            time.sleep(0.5)
            return proc_figures(proc.pid)[0]
        finally:
            proc.terminate()
            proc.wait(10)
