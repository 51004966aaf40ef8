"""`osbuilder-agent watch-node`: the node's side of fleet upgrades, on every node.

Watches its own Node object with the kubelet's credential; when the controller sets a new
request (osbuilder.io/request, desired-version, bundle-url) it starts the ordinary upgrade
(`osbuilder-agent upgrade URL`, node.py) as a transient systemd unit of its own, so that a
restart of this watcher neither kills nor repeats it, and mirrors the upgrade record
(/var/lib/osbuilder/upgrade.json) into osbuilder.io/state, version and message. After the
reboot the health gate has written done or failed into that record (the unit runs after
osbuilder-health.service); the watcher reports it as the answer to the request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from osbuilder.node.fleet import protocol as p
from osbuilder.node.fleet.informer import Informer, node_essentials
from osbuilder.node.kubeapi import Kube, Obj, name_path
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import read_json, write_json
from osbuilder.shared.run import run

MAX_TRIES = 3  # starts of one request that were cut short (power cut, crash) before failing
UNIT = "osbuilder-upgrade.service"
# upgrade.json states before the reboot, as the node protocol names them
BEFORE_REBOOT = {"downloading": "downloading", "verifying": "installing",
                 "installing": "installing", "rebooting": "rebooting"}


def say(msg: str) -> None:
    print(f"osbuilder-agent: watch-node: {msg}", flush=True)


class Installer(Protocol):
    def start(self, url: str) -> None: ...
    def running(self) -> bool: ...


class SystemdInstaller:
    """The upgrade as a transient unit: it outlives a watcher restart, and is_active tells
    the watcher (old or new) that it still runs."""

    def start(self, url: str) -> None:
        run(["systemd-run", f"--unit={UNIT}", "--collect", "--quiet",
             "--description=osbuilder fleet upgrade", "/usr/bin/osbuilder-agent", "upgrade",
             url])

    def running(self) -> bool:
        return run(["systemctl", "is-active", "--quiet", UNIT], check=False).returncode == 0


@dataclass(frozen=True)
class Decision:
    report: dict[str, str]
    start: str | None = None  # bundle URL to install now
    attempt: dict[str, Any] | None = None  # to record before starting
    log: list[str] = field(default_factory=list)


def decide(ann: Mapping[str, str], running: str, record: Mapping[str, Any] | None,
           attempt: Mapping[str, Any] | None, installing: Callable[[], bool], now: float
           ) -> Decision:
    """What to report and whether to start: a pure function of what the node knows."""
    req, want, url = ann.get(p.REQUEST, ""), ann.get(p.DESIRED_VERSION, ""), ann.get(
        p.BUNDLE_URL, "")
    report = {p.VERSION: running}
    if not req or not want:
        return Decision(report)

    def answer(state: str, message: str = "") -> Decision:
        return Decision({**report, p.STATE: state, p.STATE_FOR: req, p.MESSAGE: message})

    def begin(tries: int) -> Decision:
        new = {"request": req, "url": url, "version": want, "tries": tries,
               "started": int(now)}
        d = answer("downloading", f"installing {want} from {url}")
        return Decision(d.report, url, new, [f"{req}: upgrading {running} → {want} ({url})"])

    if not attempt or attempt.get("request") != req:
        if running == want:
            return answer(p.DONE, f"already running {want}")
        if not url:
            return answer(p.FAILED, "no osbuilder.io/bundle-url to install from")
        return begin(1)
    rec = dict(record or {})
    if rec.get("source") != attempt.get("url") or int(rec.get("started") or 0) < int(
            attempt.get("started") or 0):
        rec = {}  # the record is of another upgrade: ours never got to write one
    state, error = rec.get("state"), str(rec.get("error") or "")
    if installing():
        return answer(BEFORE_REBOOT.get(str(state), "downloading"),
                      f"{want}: {state or 'starting'}")
    if state == p.FAILED:
        return answer(p.FAILED, error or "upgrade failed")
    if running == want:
        if state == "verifying":
            return answer("verifying", "health gate running")
        return answer(p.DONE, f"running {want}; health gate passed")
    if state == "rebooting":
        return answer("rebooting", f"{want} installed in slot {rec.get('to_slot')}")
    tries = int(attempt.get("tries") or 1)
    if tries >= MAX_TRIES:
        return answer(p.FAILED, f"upgrade to {want} cut short {tries} times (last state "
                                f"{state or 'none'})")
    d = begin(tries + 1)
    return Decision(d.report, d.start, d.attempt, [f"{req}: upgrade cut short in state "
                                                  f"{state or 'none'}; starting again"])


class NodeWatcher:
    def __init__(self, kube: Kube, node: str, paths: AgentPaths, installer: Installer,
                 running_version: Callable[[], str], board: str | None = None,
                 clock: Callable[[], float] = time.time, poll_s: float = 2.0,
                 idle_s: float = 60.0, watch_s: int = 300,
                 log: Callable[[str], None] = say) -> None:
        self.kube, self.node, self.paths, self.installer = kube, node, paths, installer
        self.running_version, self.board, self.clock = running_version, board, clock
        self.poll_s, self.idle_s, self.watch_s, self.log = poll_s, idle_s, watch_s, log
        self.wake = threading.Event()
        self.attempt_file = paths.state_dir / "fleet-request.json"

    def stop(self, stop: threading.Event) -> None:
        stop.set()
        self.wake.set()

    def run(self, stop: threading.Event) -> None:
        inf = Informer(self.kube, p.NODES, self.wake.set, watch_s=self.watch_s,
                       query={"fieldSelector": f"metadata.name={self.node}"},
                       log=self.log, transform=node_essentials).start()
        try:
            while not stop.is_set():
                self.wake.clear()
                obj = inf.get(self.node)
                busy = False
                if obj is not None:
                    try:
                        busy = self.step(obj, inf)
                    except OsbError as exc:
                        self.log(str(exc))
                        busy = True
                self.wake.wait(self.poll_s if busy else self.idle_s)
        finally:
            inf.stop()

    def step(self, obj: Obj, inf: Informer) -> bool:
        """One look at the node; True while an upgrade runs (look again soon)."""
        meta = obj["metadata"]
        ann = meta.get("annotations") or {}
        attempt = read_json(self.attempt_file)
        # is our upgrade still running? Asked before its record is read: an upgrade that
        # ends in between has written its last state by then, whereas a record read first
        # could be a step old ("installing") when the check finds it ended, and look like
        # an upgrade cut short, to be started again
        active = bool(attempt and attempt.get("request") == ann.get(p.REQUEST)
                      and self.installer.running())
        d = decide(ann, self.running_version(), read_json(self.paths.upgrade_record),
                   attempt, lambda: active, self.clock())
        for line in d.log:
            self.log(line)
        if d.attempt is not None:
            write_json(self.attempt_file, d.attempt)  # before the start: a crash retries
        if d.start is not None:
            self.installer.start(d.start)
        patch: dict[str, Any] = {}
        changed = {k: v for k, v in d.report.items() if ann.get(k) != v}
        if changed:
            patch["annotations"] = changed
        if self.board and (meta.get("labels") or {}).get(p.BOARD_LABEL) != self.board:
            patch["labels"] = {p.BOARD_LABEL: self.board}
        if patch:
            inf.put(self.kube.patch(name_path(p.NODES, self.node), {"metadata": patch}))
        return d.report.get(p.STATE) in p.WORKING
