"""`osbuilder-agent`: the command-line entry of the node agent."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from osbuilder.agent import status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="osbuilder-agent", description="osbuilder node agent (runs on the node)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="booted slot, image version, root and data partitions")
    st.add_argument("--oneline", action="store_true", help="one line (printed on the console)")
    args = parser.parse_args(argv)
    if args.command == "status":
        facts = status.gather()
        print(facts.oneline() if args.oneline else json.dumps(asdict(facts), indent=2))
    return 0
