"""Simulated fleet for the OSUpgrade tests: Nodes and pods in the API double, and per node
the REAL node watcher (osbuilder.node.fleet.watcher.NodeWatcher) whose slot install is
replaced by a recorder (TEST DOUBLE: no RAUC, no reboot). The recorder writes upgrade.json
as node.upgrade() does, then "reboots": the watcher stops, the Node goes NotReady, the
running version changes (unless the node is set to fail its health gate, which rolls
back), the health gate's verdict lands in upgrade.json, and a new watcher starts.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
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
    def items(self, coll: str, field_selector: str = "") -> list[dict[str, Any]]: ...
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


IMAGES = [("docker.io/rancher/mirrored-library-traefik", 48), ("docker.io/rancher/klipper-helm",
          90), ("docker.io/rancher/mirrored-coredns-coredns", 18), ("docker.io/rancher/"
          "local-path-provisioner", 20), ("docker.io/rancher/mirrored-metrics-server", 19),
          ("docker.io/rancher/klipper-lb", 5), ("docker.io/library/busybox", 2),
          ("registry.example.com/plant/telemetry-agent", 61), ("registry.example.com/plant/"
          "opc-ua-bridge", 74), ("docker.io/rancher/mirrored-pause", 1)]
CONDITIONS = (("MemoryPressure", "KubeletHasSufficientMemory"), ("DiskPressure",
              "KubeletHasNoDiskPressure"), ("PIDPressure", "KubeletHasSufficientPID"))


def conditions(ready: bool, when: float) -> list[dict[str, str]]:
    """A kubelet's node conditions (a merge patch replaces the list whole, so always all)."""
    t = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
    out = [{"type": c, "status": "False", "reason": r, "message": f"kubelet has {r[10:]}",
            "lastHeartbeatTime": t, "lastTransitionTime": t} for c, r in CONDITIONS]
    out.append({"type": "Ready", "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "kubelet is posting ready status" if ready else "rebooting",
                "lastHeartbeatTime": t, "lastTransitionTime": t})
    return out


def node_obj(name: str, server: bool, labels: dict[str, str]) -> dict[str, Any]:
    """A Node shaped like one k3s registers (about 5 KB of JSON: managedFields, images,
    nodeInfo), so that what the controller holds and parses per node is realistic."""
    lab = dict(labels, **({SERVER_LABEL: "true"} if server else {}),
               **{"kubernetes.io/arch": "arm64", "kubernetes.io/os": "linux",
                  "kubernetes.io/hostname": name, "beta.kubernetes.io/arch": "arm64",
                  "beta.kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "k3s"})
    ann = {"flannel.alpha.coreos.com/backend-data": '{"VNI":1,"VtepMAC":"2a:1b:3c:4d:5e:6f"}',
           "flannel.alpha.coreos.com/backend-type": "vxlan",
           "flannel.alpha.coreos.com/kube-subnet-manager": "true",
           "flannel.alpha.coreos.com/public-ip": "10.20.0.17",
           "k3s.io/hostname": name, "k3s.io/internal-ip": "10.20.0.17",
           "k3s.io/node-args": '["agent","--node-label","site=plant-7"]',
           "k3s.io/node-config-hash": "PN3L3LJ6ZB5ZQ6HKGF3XU4NF3QHIW7WSXMD4EXAMPLEHASH====",
           "node.alpha.kubernetes.io/ttl": "0",
           "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
    managed: list[dict[str, Any]] = [{"manager": m, "operation": "Update", "apiVersion": "v1",
                "time": "2026-01-05T08:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {f"f:{k}": {} for k in ann},
                                            "f:labels": {f"f:{k}": {} for k in lab}}}}
               for m in ("k3s", "kubelet", "kube-controller-manager", "flanneld")]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": lab, "annotations": ann,
                         "managedFields": managed},
            "spec": {"podCIDR": "10.42.3.0/24", "podCIDRs": ["10.42.3.0/24"],
                     "providerID": f"k3s://{name}"},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.20.0.17"},
                              {"type": "Hostname", "address": name}],
                "allocatable": {"cpu": "4", "ephemeral-storage": "28933588302",
                                "memory": "3881608Ki", "pods": "110"},
                "capacity": {"cpu": "4", "ephemeral-storage": "29743512Ki",
                             "memory": "3881608Ki", "pods": "110"},
                "conditions": conditions(True, time.time()),
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "images": [{"names": [f"{img}@sha256:{i:064x}", f"{img}:v1.{i}.0"],
                            "sizeBytes": mib << 20} for i, (img, mib) in enumerate(IMAGES)],
                "nodeInfo": {"architecture": "arm64", "bootID": str(uuid.uuid4()),
                             "containerRuntimeVersion": "containerd://2.0.5-k3s1",
                             "kernelVersion": "6.12.38+deb13-arm64",
                             "kubeProxyVersion": "v1.33.3+k3s1",
                             "kubeletVersion": "v1.33.3+k3s1",
                             "machineID": uuid.uuid4().hex, "operatingSystem": "linux",
                             "osImage": "osbuilder 1.3.0", "systemUUID": str(uuid.uuid4())}}}


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
        obj = node_obj(name, server, labels)
        fleet.api.create("nodes", obj)
        # a real API server takes no status with a create: the kubelet reports it after
        fleet.api.patch("nodes", name, {"status": obj["status"]}, "status")
        self._thread: threading.Thread | None = None
        self._installing: threading.Thread | None = None
        self._stop = threading.Event()
        self.watcher: NodeWatcher | None = None
        self.boots = 0
        self.down = False  # rebooting
        self.status_lock = threading.Lock()

    # the Installer protocol, as the watcher sees it
    def start(self, url: str) -> None:
        api = self.fleet.api
        obj = api.get("nodes", self.name)
        left = [p["metadata"]["name"] for p in api.items("pods", f"spec.nodeName={self.name}")
                if p["metadata"]["ownerReferences"][0]["kind"] != "DaemonSet"]
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
        self.shutdown()  # services stop before the kubelet's Node goes NotReady
        with self.status_lock:  # no kubelet report slips in between
            self.down = True
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
        with self.status_lock:
            self._set_ready("True")
            self.down = False
        self.boot()

    def _set_ready(self, status: str) -> None:
        self.fleet.api.patch("nodes", self.name, {"status": {"conditions": conditions(
            status == "True", time.time())}}, "status")

    def boot(self) -> None:
        self.boots += 1
        self._stop = threading.Event()
        f = self.fleet
        token = f.node_token(self.name) if f.node_token else None
        kube = Kube(Endpoint(f.endpoint.server, f.endpoint.ssl_context,
                             token or f.endpoint.token), f"osbuilder-watch-node/{self.name}")
        f.kubes.append(kube)
        self.watcher = NodeWatcher(kube, self.name, self.paths, self, lambda: self.version,
                                   board="qemu-amd64", poll_s=0.1, idle_s=f.idle_s,
                                   watch_s=f.watch_s, log=lambda m: None)
        self._thread = threading.Thread(target=self.watcher.run, args=(self._stop,),
                                        daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        if self.watcher is not None and self._thread is not None:
            self.watcher.stop(self._stop)
            self._thread.join(10)


class Fleet:
    """`node_token(name)`: the bearer token a node's watcher presents (its kubelet's
    identity to the API double); None: the endpoint's own credential."""

    def __init__(self, api: Store, url: str | Endpoint, tmp: Path, step_s: float = 0.03,
                 reboot_s: float = 0.1, idle_s: float = 1.0, watch_s: int = 30,
                 node_token: Callable[[str], str] | None = None) -> None:
        self.api, self.tmp = api, tmp
        self.endpoint = Endpoint(url, None) if isinstance(url, str) else url
        self.step_s, self.reboot_s = step_s, reboot_s
        self.idle_s, self.watch_s, self.node_token = idle_s, watch_s, node_token
        self.nodes: dict[str, SimNode] = {}
        self.installs: list[Install] = []
        self.kubes: list[Kube] = []
        self.lock = threading.Lock()
        self._reports = threading.Event()

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
        limit = 10 + 0.05 * len(self.nodes)
        end, waiting = time.monotonic() + limit, list(self.nodes)
        while time.monotonic() < end:
            waiting = [n for n in waiting if not (self.api.get("nodes", n)["metadata"].get(
                "labels") or {}).get("osbuilder.io/board")]
            if not waiting:
                return
            time.sleep(0.1)
        raise AssertionError(f"node watchers did not report within {limit:.0f} s: "
                             f"{waiting[:5]}")

    def kubelet_reports(self, every_s: float) -> None:
        """Each kubelet re-posts its node status every `every_s` (the kubelet's
        nodeStatusReportFrequency, 5 min by default), spread over the period: watch events
        a controller must absorb without work, as in any real cluster."""
        def run() -> None:
            names = list(self.nodes)
            gap = every_s / max(len(names), 1)
            for i in itertools.count():
                if self._reports.wait(gap):
                    return
                n = self.nodes[names[i % len(names)]]
                with n.status_lock:
                    if not n.down:  # a node down reports nothing
                        self.api.patch("nodes", n.name, {"status": {"conditions": conditions(
                            True, time.time())}}, "status")
        threading.Thread(target=run, daemon=True, name="kubelet reports").start()

    def shutdown(self) -> None:
        self._reports.set()
        for n in self.nodes.values():
            n.shutdown()
