"""The two long-running fleet services as processes: credentials, identity, signals."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

from osbuilder.node.kubeapi import Endpoint, Kube, load_kubeconfig
from osbuilder.node.node_name import node_name
from osbuilder.node.paths import AgentPaths
from osbuilder.node.sysinfo import os_release, read
from osbuilder.node.upgrade.node_ready import KUBELET_KUBECONFIG
from osbuilder.shared.errors import OsbError

ADMIN_KUBECONFIG = Path("/etc/rancher/k3s/k3s.yaml")
# written by `controller --fetch-token` into the unit's RuntimeDirectory (a tmpfs)
CONTROLLER_KUBECONFIG = Path("/run/osbuilder-controller/kubeconfig")
EX_TEMPFAIL = 75  # sysexits: try again (a restart fetches a new credential)
TOKEN_WAIT_S = 60.0  # for k3s's deploy controller to create the ServiceAccount
RETRY_S = 600.0  # without a token: restart (and ask again) this often
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


def controller(kubeconfig: Path | None, identity: str | None,
               metrics_address: str | None = None, fetch_token: bool = False) -> int:
    """`--fetch-token` (root, the unit's first step): write the ServiceAccount kubeconfig
    with k3s's admin kubeconfig. Without it: the controller, with that kubeconfig.

    Neither waits long for k3s: the unit stays `active` (its controller waiting) rather
    than `activating` while k3s comes up, and a restart, once k3s has written its admin
    kubeconfig, runs the token step again."""
    from osbuilder.node.fleet import credential, metrics

    stop = threading.Event()
    _on_term(stop.set)
    path = kubeconfig or CONTROLLER_KUBECONFIG
    if fetch_token:
        if not ADMIN_KUBECONFIG.is_file():
            print(f"osbuilder-controller: waiting for the k3s admin kubeconfig "
                  f"({ADMIN_KUBECONFIG}); the controller restarts once it is there", flush=True)
            return 0
        try:
            credential.obtain(ADMIN_KUBECONFIG, path, wait_s=TOKEN_WAIT_S, stop=stop)
        except OsbError as exc:
            print(f"osbuilder-controller: {exc}; trying again at the next restart", flush=True)
        return 0
    if not path.is_file():
        print(f"osbuilder-controller: no ServiceAccount token yet ({path}); waiting for k3s, "
              "then restarting to fetch one", flush=True)
        had_admin, end = _exists(ADMIN_KUBECONFIG), time.monotonic() + RETRY_S
        while not stop.is_set() and time.monotonic() < end and (
                had_admin or not _exists(ADMIN_KUBECONFIG)):
            stop.wait(WAIT_S)
        return 0 if stop.is_set() else EX_TEMPFAIL
    address = metrics.DEFAULT_ADDRESS if metrics_address is None else metrics_address
    return run_controller(load_kubeconfig(path), identity, address, stop=stop)


def _exists(path: Path) -> bool:
    """As the controller's user, who may not be allowed to look into k3s's folder: then
    it cannot tell, and waits out RETRY_S."""
    try:
        return path.exists()
    except OSError:
        return False


def run_controller(endpoint: Endpoint, identity: str | None, metrics_address: str,
                   clock: Callable[[], float] = time.time, stop: threading.Event | None = None,
                   **timings: Any) -> int:
    """The controller until SIGTERM (0), or until its token needs renewing (75: systemd's
    restart runs --fetch-token again)."""
    from osbuilder.node.fleet import credential, metrics
    from osbuilder.node.fleet.controller import Controller

    stop = stop or threading.Event()
    who = identity or socket.gethostname()
    renew = credential.renew_at(endpoint.token, time.time()) if endpoint.token else None
    # in the controller's clock (a test may run it at another time of day)
    until = None if renew is None else clock() + renew - time.time()
    c = Controller(Kube(endpoint, f"osbuilder-controller/{who}"), who, clock=clock,
                   credential_until=until, **timings)
    _on_term(lambda: c.stop(stop))
    if stop.is_set():  # a signal came before the handler above
        return 0
    with metrics.serve(c.metrics, metrics_address) if metrics_address else nullcontext():
        why = c.run(stop)
    if why:
        print(f"osbuilder-controller: stopping: {why}; its restart fetches a new token",
              flush=True)
        return EX_TEMPFAIL
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
