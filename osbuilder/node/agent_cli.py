"""`osbuilder-agent`: the node agent's command line (runs on the node)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from osbuilder.node import status
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.errors import OsbError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="osbuilder-agent", description="osbuilder node agent (runs on the node)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("boot", help="apply the node config (every boot; idempotent)")
    sub.add_parser("online", help="fetch config_url, remote SSH keys and manifests")
    sub.add_parser("run-cmd", help="run the config's run_cmd list (network up, before k3s)")
    cf = sub.add_parser("config", help="show the node config the sources make together")
    cf.add_argument("--dump", action="store_true", required=True,
                    help="print the merged config as YAML, each value with its source "
                         "(secrets masked)")
    st = sub.add_parser("status", help="slot, version, config sources, k3s role, last errors")
    st.add_argument("--oneline", action="store_true", help="one line (printed on the console)")
    st.add_argument("--json", action="store_true", help="machine-readable")
    v = sub.add_parser("validate", help="check a config.yaml without applying it")
    v.add_argument("file", type=Path)
    v.add_argument("--strict", action="store_true",
                   help="refuse keys osbuilder and k3OS do not know instead of ignoring them")
    up = sub.add_parser("upgrade", help="install a signed update bundle (URL or file) into the "
                        "inactive slot and reboot into it")
    up.add_argument("source", help="bundle URL (http/https, resumable) or .raucb file")
    up.add_argument("--allow-downgrade", action="store_true",
                    help="accept a bundle older than the running version")
    up.add_argument("--no-reboot", action="store_true", help="install, reboot later yourself")
    rb = sub.add_parser("rollback", help="boot the other slot next (if it holds a good OS)")
    rb.add_argument("--no-reboot", action="store_true")
    sub.add_parser("mark-good", help="bless the booted slot now, without the health gate")
    sub.add_parser("health-gate", help="(boot) bless a slot on trial or roll it back")
    sub.add_parser("grow-data", help="(first boot, MBR disks) grow the data partition")
    ins = sub.add_parser("install", help="install this live system (ISO, USB stick, PXE) onto "
                         "a disk: install.device from the config, else asks on the console")
    ins.add_argument("--auto", action="store_true",
                     help="(live boot) install only if install.device is set or "
                          "osb.mode=install")
    ins.add_argument("--no-reboot", action="store_true", help="neither reboot nor power off")
    bl = sub.add_parser("bootloader", help="(RAUC) custom bootloader backend")
    bl.add_argument("op", nargs=argparse.REMAINDER)
    ctl = sub.add_parser("controller", help="(server) the OSUpgrade fleet upgrade controller")
    ctl.add_argument("--kubeconfig", type=Path,
                     help="its ServiceAccount's (default: /run/osbuilder-controller/kubeconfig)")
    ctl.add_argument("--fetch-token", action="store_true", help="(root) write that kubeconfig "
                     "with a token asked with k3s's admin kubeconfig, then exit")
    ctl.add_argument("--metrics", help="HOST:PORT serving Prometheus metrics at /metrics "
                     "(default 127.0.0.1:9733; '' for none)")
    ctl.add_argument("--identity", help="name in the leader Lease (default: hostname)")
    wn = sub.add_parser("watch-node", help="carry out fleet upgrades the controller asks "
                        "this node for (annotations on its Node)")
    wn.add_argument("--kubeconfig", type=Path,
                    help="default: the kubelet's, /var/lib/rancher/k3s/agent/kubelet.kubeconfig")
    wn.add_argument("--node", help="Node name (default: k3s's node-name, else the hostname)")
    args = parser.parse_args(argv)
    paths = AgentPaths()
    if args.command in ("online", "upgrade", "install", "watch-node"):
        from osbuilder.node import proxy_env

        proxy_env.load(paths.root / "etc/environment")
    try:
        if args.command in ("controller", "watch-node"):
            from osbuilder.node.fleet import service

            if args.command == "controller":
                return service.controller(args.kubeconfig, args.identity, args.metrics,
                                          args.fetch_token)
            return service.watch_node(args.kubeconfig, args.node, paths)
        if args.command in ("upgrade", "rollback", "mark-good", "health-gate", "bootloader"):
            from osbuilder.node.upgrade import actions as node

            if args.command == "upgrade":
                return node.upgrade(paths, args.source, args.allow_downgrade,
                                    not args.no_reboot)
            if args.command == "rollback":
                return node.rollback(paths, not args.no_reboot)
            if args.command == "mark-good":
                return node.mark_good(paths)
            if args.command == "health-gate":
                return node.health_gate(paths)
            return node.bootloader_backend(paths, args.op)
        if args.command == "install":
            from osbuilder.node.install.installer import install
            from osbuilder.shared.nodeconfig.facts import gather as gather_facts

            return install(paths, gather_facts(), args.auto, not args.no_reboot)
        if args.command == "validate":
            from osbuilder.shared.nodeconfig.loader import validate_command

            validate_command(args.file, args.strict, "osbuilder-agent")
            return 0
        if args.command == "grow-data":
            from osbuilder.node.grow_mbr import grow_data

            print(f"osbuilder-agent: {grow_data()}")
            return 0
        if args.command == "status":
            facts = status.gather(paths)
            if args.json:
                print(json.dumps(asdict(facts), indent=2))
            else:
                print(facts.oneline() if args.oneline else facts.text())
            return 0
        from osbuilder.node import configure as boot
        from osbuilder.shared.nodeconfig.facts import gather

        if args.command == "boot":
            return boot_command(paths)
        if args.command == "config":
            from osbuilder.node.config_dump import dump

            print(dump(paths, gather()), end="")
            return 0
        if args.command == "online":
            boot.online(paths, gather())
            return 0
        if args.command == "run-cmd":
            from osbuilder.node.user_commands import run_commands

            cfg, _, _ = boot.fallback(paths)  # the config `boot` applied last
            for w in run_commands("run_cmd", cfg.run_cmd, dict(cfg.k3s.environment)):
                print(f"osbuilder-agent: warning: {w}")
            return 0
    except OsbError as exc:
        print(f"osbuilder-agent: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line for the console, no traceback
        print(f"osbuilder-agent: agent error: {type(exc).__name__}: {str(exc)[:300]}",
              file=sys.stderr)
        return 1
    return 1


def boot_command(paths: AgentPaths) -> int:
    """`boot`: 0 when the config applied, 1 when it was refused or an applier failed (the
    node then runs its last good config, and systemd shows the run as failed)."""
    from osbuilder.node import configure
    from osbuilder.shared.nodeconfig.facts import gather

    try:
        failed = bool(configure.boot(paths, gather()).errors)
    except Exception as exc:  # configure.boot falls back by itself; this is the last wall
        print(f"osbuilder-agent: agent error: {type(exc).__name__}: {str(exc)[:300]}",
              flush=True)
        failed = True
    # the console's status line, here rather than in a unit of its own: one Python start
    # less at boot (local-fs.target, so data is grown, is done)
    try:
        print(status.gather(paths).oneline(), flush=True)
    except Exception as exc:
        print(f"osbuilder-agent: agent error: status: {type(exc).__name__}", flush=True)
    return 1 if failed else 0
