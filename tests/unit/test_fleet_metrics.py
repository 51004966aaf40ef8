"""The controller's metrics in the Prometheus text exposition format, scraped over HTTP
from a real controller upgrading the 2-server + 4-agent simulated fleet on the API double
(TEST DOUBLE, tests/helpers/kube_double.py), one of whose agents fails its health gate."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from osbuilder.node.fleet.controller import Controller
from osbuilder.node.fleet.metrics import CONTENT_TYPE, FAMILIES, Metrics, labels, serve
from osbuilder.node.kubeapi import Endpoint, Kube
from osbuilder.shared.errors import OsbError
from tests.helpers.fleet_sim import Fleet
from tests.helpers.kube_double import KubeDouble
from tests.helpers.kube_double import serve as serve_api

URL = "https://updates.example.com/{board}/osbuilder-{board}-{version}.raucb"
SAMPLE = re.compile(r'^([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?[0-9.e+]+)$')


def parse(text: str) -> dict[str, float]:
    """Strictly: HELP and TYPE before each family's samples, every sample well formed."""
    out: dict[str, float] = {}
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            declared.add(line.split()[2])
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        family = re.sub(r"_(sum|count)$", "", m.group(1))
        assert m.group(1) in declared or family in declared, f"undeclared: {line}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def scrape(port: int, path: str = "/metrics") -> tuple[str, dict[str, float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.headers["Content-Type"], parse(r.read().decode())


def test_metrics_of_a_rollout_that_halts(tmp_path: Path) -> None:
    api = KubeDouble()
    with serve_api(api) as url:
        fleet = Fleet(api, url, tmp_path)
        fleet.standard(fail="agent-1")
        fleet.boot_all()
        metrics = Metrics()
        ctl = Controller(Kube(Endpoint(url, None), "osbuilder-controller/m"), "m",
                         idle_s=0.3, busy_s=0.05, metrics=metrics, log=lambda m: None)
        stop = threading.Event()
        t = threading.Thread(target=ctl.run, args=(stop,), daemon=True)
        try:
            with serve(metrics, "127.0.0.1:0") as (host, port):
                assert host == "127.0.0.1"  # loopback unless told otherwise
                t.start()
                api.create("osupgrades", {
                    "apiVersion": "osbuilder.io/v1alpha1", "kind": "OSUpgrade",
                    "metadata": {"name": "to-1.4.0"},
                    "spec": {"version": "1.4.0", "bundleURL": URL, "concurrency": 2,
                             "maxFailures": 1,
                             "nodeSelector": {"matchLabels": {"site": "plant-7"}}}})
                end = time.monotonic() + 30
                while True:  # halted, and the node that was in flight with it finished
                    kind, m = scrape(port)
                    if m.get('osbuilder_osupgrade_halted{osupgrade="to-1.4.0"}') == 1 and \
                            m['osbuilder_osupgrade_nodes{osupgrade="to-1.4.0",phase='
                              '"Upgrading"}'] == 0:
                        break
                    assert time.monotonic() < end, m
                    time.sleep(0.1)
                with pytest.raises(urllib.error.HTTPError) as other:
                    scrape(port, "/")
                assert other.value.code == 404
        finally:
            ctl.stop(stop)
            t.join(10)
            fleet.shutdown()
    assert kind == CONTENT_TYPE
    phases = {p: m[f'osbuilder_osupgrade_nodes{{osupgrade="to-1.4.0",phase="{p}"}}']
              for p in ("Pending", "Draining", "Upgrading", "Upgraded", "Failed")}
    started = [i.node for i in fleet.installs]
    assert phases["Failed"] == 1 and sum(phases.values()) == 6
    assert phases["Upgraded"] == len(started) - 1 and phases["Pending"] == 6 - len(started)
    assert m["osbuilder_node_upgrades_started_total"] == len(started)
    assert m["osbuilder_node_upgrades_succeeded_total"] == len(started) - 1
    assert m["osbuilder_node_upgrades_failed_total"] == 1
    assert m["osbuilder_controller_leader"] == 1
    assert m['osbuilder_controller_api_requests_total{verb="PATCH"}'] > 0
    assert m['osbuilder_controller_watch_requests_total{resource="nodes"}'] >= 1
    assert m["osbuilder_controller_plan_cpu_seconds_count"] > 0
    assert 0 < m["osbuilder_controller_plan_cpu_seconds_max"] < 1


def test_text_format_escapes_and_declares_every_family() -> None:
    metrics = Metrics()
    metrics.set("osbuilder_osupgrade_halted", 1, labels(osupgrade='we"ird\\name\n'))
    metrics.observe("osbuilder_controller_reconcile_seconds", 0.25)
    text = metrics.render()
    assert 'osbuilder_osupgrade_halted{osupgrade="we\\"ird\\\\name\\n"} 1' in text
    assert "osbuilder_controller_reconcile_seconds_sum 0.25" in text
    assert "osbuilder_controller_reconcile_seconds_count 1" in text
    for name, (kind, _) in FAMILIES.items():
        assert f"# TYPE {name} {kind}\n" in text
    parse(text)


def test_bad_or_busy_address_is_a_clear_error() -> None:
    with pytest.raises(OsbError, match=r"--metrics 'localhost': expected HOST:PORT"), \
            serve(Metrics(), "localhost"):
        pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OsbError, match=rf"metrics: cannot listen on 127.0.0.1:{port}"), \
                serve(Metrics(), f"127.0.0.1:{port}"):
            pass
