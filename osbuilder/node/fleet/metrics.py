"""The controller's metrics in the Prometheus text exposition format, version 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/), served over HTTP at
/metrics on a local address: loopback by default, so only the server node itself (or an
SSH tunnel) reads it unless the operator binds it wider."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from osbuilder.shared.errors import OsbError

DEFAULT_ADDRESS = "127.0.0.1:9733"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]

# every family once: name → (type, help)
FAMILIES: dict[str, tuple[str, str]] = {
    "osbuilder_osupgrade_nodes": (
        "gauge", "Nodes an OSUpgrade targets, by phase (Pending, Draining, Upgrading, "
        "Upgraded, Failed)."),
    "osbuilder_osupgrade_halted": (
        "gauge", "1 while the OSUpgrade's rollout is halted at maxFailures."),
    "osbuilder_node_upgrades_started_total": (
        "counter", "Nodes this process asked to install an image (drained first)."),
    "osbuilder_node_upgrades_succeeded_total": (
        "counter", "Nodes seen back on the target version with their health gate passed."),
    "osbuilder_node_upgrades_failed_total": (
        "counter", "Nodes failed: install or health gate failed, or the drain timed out."),
    "osbuilder_controller_leader": (
        "gauge", "1 while this process holds the leader Lease."),
    "osbuilder_controller_plan_cpu_seconds": (
        "summary", "CPU time of one planner pass (API objects to facts, then the plan)."),
    "osbuilder_controller_plan_cpu_seconds_max": (
        "gauge", "Longest planner pass since the start, CPU seconds."),
    "osbuilder_controller_reconcile_seconds": (
        "summary", "Time of one whole pass: the plan and the writes it asked for."),
    "osbuilder_controller_api_requests_total": (
        "counter", "Requests this process made to the Kubernetes API, by verb."),
    "osbuilder_controller_watch_requests_total": (
        "counter", "WATCH requests by resource: the first, and one per reconnect."),
    "osbuilder_controller_list_requests_total": (
        "counter", "LIST page requests by resource: the first sync, and relists."),
    "osbuilder_controller_watch_expired_total": (
        "counter", "Watches or lists the server answered 410 Gone (a relist followed)."),
}


def labels(**kv: str) -> Labels:
    return tuple(sorted(kv.items()))


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line(name: str, lab: Labels, value: float) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in lab)
    num = repr(float(value)) if value != int(value) else str(int(value))
    return f"{name}{{{inner}}} {num}" if inner else f"{name} {num}"


class Metrics:
    """Values set by the controller as it works, plus collectors read at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[Labels, float]] = {name: {} for name in FAMILIES}
        self.collectors: list[Callable[[], Iterable[Sample]]] = []

    def inc(self, name: str, lab: Labels = (), by: float = 1.0) -> None:
        with self._lock:
            fam = self._values[name]
            fam[lab] = fam.get(lab, 0.0) + by

    def set(self, name: str, value: float, lab: Labels = ()) -> None:
        with self._lock:
            self._values[name][lab] = value

    def replace(self, name: str, series: Mapping[Labels, float]) -> None:
        """A gauge family's whole set of series (an OSUpgrade deleted drops out)."""
        with self._lock:
            self._values[name] = dict(series)

    def observe(self, name: str, seconds: float) -> None:
        """A summary without quantiles (_sum and _count), and its maximum if declared."""
        with self._lock:
            fam = self._values[name]
            fam[(("", "sum"),)] = fam.get((("", "sum"),), 0.0) + seconds
            fam[(("", "count"),)] = fam.get((("", "count"),), 0.0) + 1
            if f"{name}_max" in self._values:
                peak = self._values[f"{name}_max"]
                peak[()] = max(peak.get((), 0.0), seconds)

    def value(self, name: str, lab: Labels = ()) -> float:
        with self._lock:
            return self._values[name].get(lab, 0.0)

    def render(self) -> str:
        with self._lock:
            values = {k: dict(v) for k, v in self._values.items()}
        for collect in self.collectors:
            for name, lab, v in collect():
                values[name][lab] = v
        out: list[str] = []
        for name, (kind, help_text) in FAMILIES.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for lab, v in sorted(values[name].items()):
                if lab and lab[0][0] == "":  # a summary's _sum or _count
                    out.append(_line(f"{name}_{lab[0][1]}", (), v))
                else:
                    out.append(_line(name, lab, v))
        return "\n".join(out) + "\n"


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise OsbError(f"--metrics {text!r}: expected HOST:PORT, e.g. {DEFAULT_ADDRESS}")
    return host.strip("[]") or "127.0.0.1", int(port)


@contextmanager
def serve(metrics: Metrics, address: str) -> Iterator[tuple[str, int]]:
    """/metrics on `address` while the block runs; yields the bound (host, port)."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics here")
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    host, port = parse_address(address)
    cls: type[ThreadingHTTPServer] = ThreadingHTTPServer
    if ":" in host:  # an IPv6 address
        cls = type("Server6", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
    try:
        server = cls((host, port), Handler)
    except OSError as exc:
        raise OsbError(f"metrics: cannot listen on {address}: {exc.strerror or exc}") from exc
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True, name="metrics")
    t.start()
    try:
        yield str(server.server_address[0]), int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
