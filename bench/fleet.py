"""`make bench-fleet`: the fleet rollout at 10, 100 and 1,000 nodes, printed as a table and
saved under bench/results/ as JSON with the machine's facts, beside an SVG plot of API
requests per node and controller RSS against fleet size.

Each size is the scenario of tests/helpers/fleet_scale.py (the same that `make test` and
`make test-all` check): 3 servers first, then agents `concurrency` (a tenth of the fleet)
at a time, four nodes failing their health gate, maxFailures 2 (the rollout halts, is
raised to 10, finishes), a maintenance window that opens after the OSUpgrade is created.
The controller is a real process with its ServiceAccount token only; the API server is
the in-process double (TEST DOUBLE, tests/helpers/kube_double.py) with RBAC enforced; the
nodes run the real watcher with install and reboot simulated in a fixed time
(tests/helpers/fleet_sim.py): no Kubernetes, RAUC or machines can run here.

    python bench/fleet.py [--sizes 10,100,1000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.fleet_scale import run, watcher_process_rss  # noqa: E402

COLUMNS: list[tuple[str, int, Callable[[dict[str, Any]], object]]] = [  # heading, width
    ("nodes", 6, lambda f: f["nodes"]),
    ("rollout s", 10, lambda f: f["rollout_s"]),
    ("ctl req/node", 13, lambda f: _verbs(f["controller_requests_per_node"])),
    ("watcher req/node", 17, lambda f: _verbs(f["watcher_requests_per_node"])),
    ("ctl writes/node", 16, lambda f: f["controller_writes_per_node"]),
    ("RSS MiB", 8, lambda f: f["controller_peak_rss_mib"]),
    ("CPU s", 6, lambda f: f["controller_cpu_s"]),
    ("plan ms mean/max", 17, lambda f: f"{f['planner_ms_mean']}/{f['planner_ms_max']}"),
    ("reconnects ctl/w", 17, lambda f: f"{f['controller_watch_reconnects']}/"
     f"{f['watcher_watch_reconnects']}"),
    ("failed at halt", 15, lambda f: f"{f['failed_at_halt']} (max {f['max_failures']})"),
]


def _verbs(by: dict[str, float]) -> str:
    short = {"create": "c", "list": "l", "patch": "p", "update": "u", "watch": "w",
             "get": "g"}
    return " ".join(f"{short.get(k, k)}{v:g}" for k, v in sorted(by.items()))


def machine() -> dict[str, Any]:
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    return {"cores": os.cpu_count(), "ram_gib": round(int(mem) / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "machine": platform.machine(), "load_avg_at_start": os.getloadavg(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def table(results: list[dict[str, Any]]) -> str:
    lines = ["  ".join(h.rjust(w) for h, w, _ in COLUMNS)]
    for f in results:
        lines.append("  ".join(str(v(f)).rjust(w) for _, w, v in COLUMNS))
    return "\n".join(lines)


def svg(results: list[dict[str, Any]]) -> str:
    """Two panels against fleet size (log scale): API requests per node per upgrade, and
    the controller's peak RSS with its 60 MiB target."""
    sizes = [f["nodes"] for f in results]
    series = [
        ("controller, all requests", "#1f77b4",
         [sum(f["controller_requests_per_node"].values()) for f in results]),
        ("controller, writes", "#ff7f0e", [f["controller_writes_per_node"] for f in results]),
        ("node watcher, all requests", "#2ca02c",
         [sum(f["watcher_requests_per_node"].values()) for f in results]),
    ]
    rss = [("controller peak RSS", "#d62728", [f["controller_peak_rss_mib"] for f in results])]
    w, h = 820, 340
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>']
    parts += _panel(20, "API requests per node per upgrade", sizes, series, 0.0, None)
    parts += _panel(430, "controller peak RSS, MiB", sizes, rss, 0.0, 60.0)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(x0: int, title: str, sizes: list[int], series: list[tuple[str, str, list[float]]],
           ymin: float, target: float | None) -> list[str]:
    left, top, pw, ph = x0 + 45, 40, 320, 220
    ymax = max([v for _, _, vs in series for v in vs] + [target or 0]) * 1.15 or 1.0
    lo, hi = math.log10(min(sizes)), math.log10(max(sizes)) if max(sizes) > min(sizes) else 1

    def px(n: float) -> float:
        return left + (math.log10(n) - lo) / ((hi - lo) or 1) * pw

    def py(v: float) -> float:
        return top + ph - (v - ymin) / (ymax - ymin) * ph
    out = [f'<text x="{left}" y="{top - 15}" font-weight="bold">{title}</text>',
           f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="black"/>',
           f'<text x="{left + pw / 2}" y="{top + ph + 35}" text-anchor="middle">'
           f'fleet size, nodes (log scale)</text>']
    for n in sizes:
        out.append(f'<text x="{px(n):.1f}" y="{top + ph + 16}" text-anchor="middle">{n}</text>')
    for i in range(5):
        v = ymin + (ymax - ymin) * i / 4
        out.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        out.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + pw}" y2="{py(v):.1f}" '
                   'stroke="#ddd"/>')
    if target is not None:
        out.append(f'<line x1="{left}" y1="{py(target):.1f}" x2="{left + pw}" '
                   f'y2="{py(target):.1f}" stroke="#d62728" stroke-dasharray="6 4"/>')
        out.append(f'<text x="{left + pw - 4}" y="{py(target) - 5:.1f}" text-anchor="end" '
                   f'fill="#d62728">target {target:.0f}</text>')
    for k, (name, colour, values) in enumerate(series):
        pts = " ".join(f"{px(n):.1f},{py(v):.1f}" for n, v in zip(sizes, values, strict=True))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{px(n):.1f}" cy="{py(v):.1f}" r="3.5" fill="{colour}"/>'
                for n, v in zip(sizes, values, strict=True)]
        out.append(f'<text x="{left + 8}" y="{top + 14 + 16 * k}" fill="{colour}">{name}</text>')
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/fleet.py")
    ap.add_argument("--sizes", default="10,100,1000")
    args = ap.parse_args(argv)
    facts = machine()
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"fleet of {n} nodes ...", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"osb-fleet-{n}-") as tmp:
            results.append(run(n, Path(tmp)))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    with tempfile.TemporaryDirectory(prefix="osb-watcher-") as tmp:
        watcher_rss = watcher_process_rss(Path(tmp))
    print("\n" + table(results))
    print(f"\nwatch-node process peak RSS {watcher_rss:.1f} MiB; verbs: c create, l list, "
          "p patch, u update, w watch; requests per node exclude the Lease's")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "bench/results" / f"{stamp}-fleet.json"
    out.write_text(json.dumps({"machine": facts, "watcher_process_peak_rss_mib":
                               round(watcher_rss, 1), "sizes": results}, indent=2) + "\n")
    plot = out.with_suffix(".svg")
    plot.write_text(svg(results))
    print(f"saved {out.relative_to(ROOT)} and {plot.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
