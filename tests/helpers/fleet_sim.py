"""Simulated fleet for the OSUpgrade tests: Nodes and pods in the API double, and per node
the REAL node watcher (osbuilder.node.fleet.watcher.NodeWatcher) whose slot install is
replaced by a recorder (TEST DOUBLE: no RAUC, no reboot). The recorder writes upgrade.json
as node.upgrade() does, then "reboots": the watcher stops, the Node goes NotReady, the
running version changes (unless the node is set to fail its health gate, which rolls
back), the health gate's verdict lands in upgrade.json, and a new watcher starts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from osbuilder.node.fleet.watcher import NodeWatcher
from osbuilder.node.kubeapi import Endpoint, Kube
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.file_writes import write_json


class Store(Protocol):
    """What the simulation needs of an API: the double (tests/helpers/kube_double.py) or
    a real cluster (tests/e2e/test_fleet_real_k3s.py)."""

    def create(self, coll: str, obj: dict[str, Any]) -> dict[str, Any]: ...
    def get(self, coll: str, key: str) -> dict[str, Any]: ...
    def items(self, coll: str) -> list[dict[str, Any]]: ...
    def patch(self, coll: str, key: str, patch: dict[str, Any], subresource: str = ""
              ) -> dict[str, Any]: ...

SERVER_LABEL = "node-role.kubernetes.io/control-plane"


@dataclass
class Install:
    node: str
    url: str
    start: float
    end: float = 0.0
    cordoned: bool = False
    pods_left: list[str] = field(default_factory=list)


def node_obj(name: str, server: bool, labels: dict[str, str]) -> dict[str, Any]:
    lab = dict(labels, **({SERVER_LABEL: "true"} if server else {}))
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": lab},
            "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, node: str, owner: str = "ReplicaSet", labels: dict[str, str] | None = None
        ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {},
                         "ownerReferences": [{"kind": owner, "name": "x", "controller": True}]},
            "spec": {"nodeName": node}}


class SimNode:
    def __init__(self, fleet: Fleet, name: str, server: bool, version: str, fail: bool,
                 labels: dict[str, str]) -> None:
        self.fleet, self.name, self.server, self.version, self.fail = (
            fleet, name, server, version, fail)
        self.paths = AgentPaths(state_dir=fleet.tmp / name)
        self.paths.state_dir.mkdir(parents=True)
        fleet.api.create("nodes", node_obj(name, server, labels))
        self._thread: threading.Thread | None = None
        self._installing: threading.Thread | None = None
        self._stop = threading.Event()
        self.watcher: NodeWatcher | None = None
        self.boots = 0

    # the Installer protocol, as the watcher sees it
    def start(self, url: str) -> None:
        api = self.fleet.api
        obj = api.get("nodes", self.name)
        left = [p["metadata"]["name"] for p in api.items("pods")
                if p["spec"]["nodeName"] == self.name
                and p["metadata"]["ownerReferences"][0]["kind"] != "DaemonSet"]
        rec = Install(self.name, url, time.monotonic(),
                      cordoned=bool(obj["spec"].get("unschedulable")), pods_left=left)
        with self.fleet.lock:
            self.fleet.installs.append(rec)
        self._installing = threading.Thread(target=self._install, args=(url, rec), daemon=True)
        self._installing.start()

    def running(self) -> bool:
        return self._installing is not None and self._installing.is_alive()

    def _install(self, url: str, rec: Install) -> None:
        started = int(time.time())
        new = url.rsplit("-", 1)[-1].removesuffix(".raucb")
        for state in ("downloading", "verifying", "installing"):
            write_json(self.paths.upgrade_record, {"state": state, "source": url,
                                                   "started": started, "from_slot": "a"})
            time.sleep(self.fleet.step_s)
        write_json(self.paths.upgrade_record, {"state": "rebooting", "source": url,
                                               "started": started, "to_slot": "b",
                                               "to_version": new})
        threading.Thread(target=self._reboot, args=(url, started, new, rec),
                         daemon=True).start()

    def _reboot(self, url: str, started: int, new: str, rec: Install) -> None:
        self.shutdown()
        self._set_ready("False")
        time.sleep(self.fleet.reboot_s)
        verdict: dict[str, str | None]
        if self.fail:
            verdict = {"state": "failed", "error": "health gate: not healthy within 600 s: "
                       "k3s not active (k3s.service / k3s-agent.service)"}
        else:
            self.version = new
            verdict = {"state": "done", "error": None}
        write_json(self.paths.upgrade_record, {"source": url, "started": started,
                                               "to_slot": "b", "to_version": new, **verdict})
        rec.end = time.monotonic()
        self._set_ready("True")
        self.boot()

    def _set_ready(self, status: str) -> None:
        self.fleet.api.patch("nodes", self.name, {"status": {"conditions": [
            {"type": "Ready", "status": status}]}}, "status")

    def boot(self) -> None:
        self.boots += 1
        self._stop = threading.Event()
        kube = Kube(self.fleet.endpoint, f"osbuilder-watch-node/{self.name}")
        self.fleet.kubes.append(kube)
        self.watcher = NodeWatcher(kube, self.name, self.paths, self, lambda: self.version,
                                   board="qemu-amd64", poll_s=0.05, idle_s=1.0, watch_s=30,
                                   log=lambda m: None)
        self._thread = threading.Thread(target=self.watcher.run, args=(self._stop,),
                                        daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        if self.watcher is not None and self._thread is not None:
            self.watcher.stop(self._stop)
            self._thread.join(10)


class Fleet:
    def __init__(self, api: Store, url: str | Endpoint, tmp: Path, step_s: float = 0.03,
                 reboot_s: float = 0.1) -> None:
        self.api, self.tmp = api, tmp
        self.endpoint = Endpoint(url, None) if isinstance(url, str) else url
        self.step_s, self.reboot_s = step_s, reboot_s
        self.nodes: dict[str, SimNode] = {}
        self.installs: list[Install] = []
        self.kubes: list[Kube] = []
        self.lock = threading.Lock()

    def add(self, name: str, server: bool = False, version: str = "1.3.0", fail: bool = False,
            labels: dict[str, str] | None = None, pods: int = 2, daemonset: bool = True
            ) -> SimNode:
        n = SimNode(self, name, server, version, fail, labels or {"site": "plant-7"})
        self.nodes[name] = n
        for i in range(pods):
            self.api.create("pods", pod(f"{name}-app-{i}", name))
        if daemonset:
            self.api.create("pods", pod(f"{name}-ds", name, owner="DaemonSet"))
        return n

    def standard(self, fail: str = "") -> Fleet:
        """2 servers + 4 agents, as in the issue."""
        for i in (1, 2):
            self.add(f"server-{i}", server=True, pods=0, fail=f"server-{i}" == fail)
        for i in (1, 2, 3, 4):
            self.add(f"agent-{i}", fail=f"agent-{i}" == fail)
        return self

    def boot_all(self) -> None:
        """Boot every node and wait for its watcher's first report (the board label), as
        in a fleet that has run for a while before an upgrade."""
        for n in self.nodes.values():
            n.boot()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if all((self.api.get("nodes", n)["metadata"].get("labels") or {}).get(
                    "osbuilder.io/board") for n in self.nodes):
                return
            time.sleep(0.05)
        raise AssertionError("node watchers did not report within 10 s")

    def shutdown(self) -> None:
        for n in self.nodes.values():
            n.shutdown()
