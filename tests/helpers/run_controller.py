"""The real controller (osbuilder.node.fleet.service.run_controller) as a process of its
own, for the fleet scenario (tests/helpers/fleet_scale.py): its RSS and CPU are then its
own, and it can be killed. Two test inputs: --clock-offset moves its clock, so that a
maintenance window opens mid-run instead of at a wall-clock minute hours away, and the
timings a simulated fleet runs at.

    python -m tests.helpers.run_controller KUBECONFIG --metrics 127.0.0.1:PORT ...
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from osbuilder.node.fleet.service import run_controller
from osbuilder.node.kubeapi import load_kubeconfig
from osbuilder.shared.errors import OsbError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="run_controller")
    ap.add_argument("kubeconfig", type=Path)
    ap.add_argument("--identity", default="server-1")
    ap.add_argument("--metrics", default="")
    ap.add_argument("--clock-offset", type=float, default=0.0)
    ap.add_argument("--busy-s", type=float, default=1.0)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--writers", type=int, default=4)
    args = ap.parse_args(argv)
    offset = args.clock_offset
    try:
        return run_controller(load_kubeconfig(args.kubeconfig), args.identity, args.metrics,
                              clock=lambda: time.time() + offset, busy_s=args.busy_s,
                              idle_s=args.idle_s, writers=args.writers)
    except OsbError as exc:
        print(f"run_controller: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
