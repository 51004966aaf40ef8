"""`python bench/fleet.py`: fleet upgrade figures, printed and saved under bench/results/.

- rollout time of the 6-node simulated fleet (2 servers, 4 agents, concurrency 2) with the
  controller as a real `osbuilder-agent controller` process at its production timings;
- API requests per node per upgrade, controller and node watchers apart, by method;
- peak RSS (VmHWM) of the controller process over that rollout, and of a real
  `osbuilder-agent watch-node` process watching and reporting its Node;
- for scale: RSS of a bare interpreter, and after importing requests.

The API server is the in-process double (TEST DOUBLE, tests/helpers/kube_double.py) and the
fleet's node watchers run in this process with their slot install replaced by a recorder
(tests/helpers/fleet_sim.py): no real Kubernetes, RAUC or reboots can run here.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.fleet_sim import Fleet  # noqa: E402
from tests.helpers.kube_double import KubeDouble, serve  # noqa: E402

URL = "https://updates.example.com/{board}/osbuilder-{board}-{version}.raucb"


def kubeconfig(tmp: Path, url: str) -> Path:
    k = tmp / "kubeconfig.yaml"
    k.write_text(f"apiVersion: v1\nclusters: [{{name: c, cluster: {{server: '{url}'}}}}]\n"
                 "users: [{name: u, user: {token: t}}]\n"
                 "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    return k


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def agent(*args: str) -> list[str]:
    """As /usr/bin/osbuilder-agent in the image runs it."""
    return [sys.executable, "-c", "import sys; from osbuilder.node.agent_cli import main; "
            "sys.exit(main())", *args]


def import_rss(code: str) -> int:
    out = subprocess.run([sys.executable, "-c", code + "\nprint(open('/proc/self/status')"
                          ".read().split('VmRSS:')[1].split()[0])"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def rollout(tmp: Path) -> dict[str, Any]:
    api = KubeDouble()
    with serve(api) as url:
        fleet = Fleet(api, url, tmp)
        fleet.standard()
        fleet.boot_all()
        cfg = kubeconfig(tmp, url)
        ctl = subprocess.Popen(agent("controller", "--kubeconfig", str(cfg), "--identity",
                                     "bench"), cwd=ROOT, stdout=subprocess.DEVNULL)
        # the watcher process gets a node of its own, never asked to upgrade
        api.create("nodes", {"metadata": {"name": "idle-1", "labels": {}}, "spec": {}})
        watch = subprocess.Popen(agent("watch-node", "--kubeconfig", str(cfg), "--node",
                                       "idle-1"), cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            time.sleep(2)  # both synced, the lease taken
            api.calls.clear()
            t0 = time.monotonic()
            api.create("osupgrades", {"apiVersion": "osbuilder.io/v1alpha1",
                                      "kind": "OSUpgrade", "metadata": {"name": "bench"},
                                      "spec": {"version": "1.4.0", "bundleURL": URL,
                                               "nodeSelector": {"matchLabels":
                                                                {"site": "plant-7"}},
                                               "concurrency": 2}})
            ctl_peak = 0
            while (api.get("osupgrades", "bench").get("status") or {}).get(
                    "phase") != "Complete":
                ctl_peak = max(ctl_peak, rss_kib(ctl.pid)[0])
                if time.monotonic() - t0 > 300:
                    raise SystemExit("rollout did not complete in 300 s")
                time.sleep(0.05)
            took = time.monotonic() - t0
            ctl_rss, ctl_hwm = rss_kib(ctl.pid)
            w_rss, w_hwm = rss_kib(watch.pid)
            ann = api.get("nodes", "idle-1")["metadata"].get("annotations") or {}
            assert "osbuilder.io/version" in ann, "watch-node process never reported"
        finally:
            for p in (ctl, watch):
                p.terminate()
                p.wait(10)
            fleet.shutdown()
        calls = list(api.calls)
    by: dict[str, Counter[str]] = {"controller": Counter(), "watchers": Counter()}
    for c in calls:
        if "osbuilder-controller" in c.agent and not c.path.endswith("/leases/"
                                                                      "osbuilder-controller"):
            by["controller"][c.method] += 1
        elif "watch-node/" in c.agent and "idle-1" not in c.agent:
            by["watchers"][c.method] += 1
    lease = sum(1 for c in calls if c.path.endswith("/leases/osbuilder-controller"))
    n = len(fleet.nodes)
    return {
        "nodes": n,
        "rollout_seconds": round(took, 2),
        "controller_rss_mib": round(ctl_rss / 1024, 1),
        "controller_peak_rss_mib": round(max(ctl_hwm, ctl_peak) / 1024, 1),
        "watcher_rss_mib": round(w_rss / 1024, 1),
        "watcher_peak_rss_mib": round(w_hwm / 1024, 1),
        "requests_per_node": {k: round(sum(v.values()) / n, 1) for k, v in by.items()},
        "requests_per_node_by_method": {k: {m: round(c / n, 1) for m, c in sorted(v.items())}
                                        for k, v in by.items()},
        "lease_requests_during_rollout": lease,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="osb-fleet-bench-") as tmp:
        figures = rollout(Path(tmp))
    figures["python_bare_rss_mib"] = round(import_rss("pass") / 1024, 1)
    with contextlib.suppress(subprocess.CalledProcessError):
        figures["python_import_requests_rss_mib"] = round(import_rss("import requests") / 1024,
                                                          1)
    figures["python"] = platform.python_version()
    figures["machine"] = platform.machine()
    print(json.dumps(figures, indent=2))
    out = ROOT / "bench/results" / time.strftime("%Y%m%dT%H%M%SZ-fleet.json", time.gmtime())
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
