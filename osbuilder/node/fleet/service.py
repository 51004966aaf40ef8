"""The two long-running fleet services as processes: credentials, identity, signals."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType

from osbuilder.node.kubeapi import Kube, load_kubeconfig
from osbuilder.node.node_name import node_name
from osbuilder.node.paths import AgentPaths
from osbuilder.node.sysinfo import os_release, read
from osbuilder.node.upgrade.node_ready import KUBELET_KUBECONFIG

ADMIN_KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
WAIT_S = 10.0


def _on_term(stop_fn: object) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop_fn()  # type: ignore[operator]
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _wait_for(path: Path, stop: threading.Event, what: str) -> None:
    """k3s writes its credentials when it has started; the units start beside it."""
    told = False
    while not path.is_file() and not stop.is_set():
        if not told:
            print(f"osbuilder-agent: waiting for {what} ({path})", flush=True)
            told = True
        time.sleep(WAIT_S)


def controller(kubeconfig: Path | None, identity: str | None) -> int:
    from osbuilder.node.fleet.controller import Controller

    stop = threading.Event()
    path = kubeconfig or ADMIN_KUBECONFIG
    _wait_for(path, stop, "the k3s admin kubeconfig")
    who = identity or socket.gethostname()
    c = Controller(Kube(load_kubeconfig(path), f"osbuilder-controller/{who}"), who)
    _on_term(lambda: c.stop(stop))
    c.run(stop)
    return 0


def watch_node(kubeconfig: Path | None, node: str | None, paths: AgentPaths) -> int:
    from osbuilder.node.fleet.watcher import NodeWatcher, SystemdInstaller

    stop = threading.Event()
    path = kubeconfig or KUBELET_KUBECONFIG
    _wait_for(path, stop, "the kubelet credential")
    name = node or node_name()
    release = os_release(read("/usr/lib/os-release"))
    w = NodeWatcher(Kube(load_kubeconfig(path), f"osbuilder-watch-node/{name}"), name, paths,
                    SystemdInstaller(), lambda: os_release(read("/usr/lib/os-release")).get(
                        "IMAGE_VERSION", "0"), release.get("VARIANT_ID"))
    _on_term(lambda: w.stop(stop))
    w.run(stop)
    return 0
