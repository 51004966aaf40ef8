"""`osbuilder-agent`: the node agent's command line (runs on the node). Every failure is
one line and an exit code (osbuilder.shared.errors.ExitCode); `boot` exits 1 when the
config was refused or an applier failed (the node then runs its last good config)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from osbuilder import __version__
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.cli_guard import run_guarded

if TYPE_CHECKING:
    import argparse


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from osbuilder.shared.cli_base import main_parser, sub_parsers

    parser = main_parser("osbuilder-agent", "osbuilder node agent (runs on the node)",
                         __version__)
    sub = sub_parsers(parser, "command")
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
    v = sub.add_parser("validate-config", aliases=["validate"],
                       help="check a config.yaml without applying it")
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
    sub.add_parser("save-password", help="(boot) keep the password osb chose on this node "
                   "when the config sets none")
    ins = sub.add_parser("install", help="install this live system (ISO, USB stick, PXE) onto "
                         "a disk: install.device from the config, else asks on the console")
    ins.add_argument("--auto", action="store_true",
                     help="(live boot) install only if install.device is set or "
                          "osb.mode=install")
    ins.add_argument("--no-reboot", action="store_true", help="neither reboot nor power off")
    mg = sub.add_parser("migrate-k3os", help="(live system) turn a disk that k3OS installed "
                        "into an osbuilder disk in place, keeping the node's k3s state")
    mg.add_argument("--device", help="the k3OS disk (default: the one disk k3OS laid out)")
    mg.add_argument("--yes", action="store_true", help="do not ask on the console first")
    mg.add_argument("--skip-images", action="store_true",
                    help="leave container images behind (k3s pulls them again)")
    mg.add_argument("--dry-run", action="store_true", help="check and plan, write nothing")
    mg.add_argument("--force-efi", action="store_true",
                    help="migrate although this machine did not boot through UEFI")
    mg.add_argument("--no-reboot", action="store_true", help="do not reboot afterwards")
    sb = sub.add_parser("stage-boot", help="(RAUC slot hook) check a new slot's boot files "
                        "from its bundle (signed UKI, verity root hash) and stage them")
    sb.add_argument("slot")
    sb.add_argument("bundle_dir", type=Path)
    bl = sub.add_parser("bootloader", help="(RAUC) custom bootloader backend")
    bl.add_argument("op", nargs=argparse.REMAINDER)
    ctl = sub.add_parser("controller", help="(server) the OSUpgrade fleet upgrade controller")
    ctl.add_argument("--kubeconfig", type=Path, help="default: /etc/rancher/k3s/k3s.yaml")
    ctl.add_argument("--identity", help="name in the leader Lease (default: hostname)")
    ctl.add_argument("--metrics", default="127.0.0.1:9733", metavar="ADDR:PORT",
                     help="Prometheus metrics on this address ('' turns them off)")
    ctl.add_argument("--fetch-token", action="store_true",
                     help="(root, the unit's first step) write the controller's ServiceAccount "
                          "kubeconfig with k3s's admin kubeconfig, then exit")
    wn = sub.add_parser("watch-node", help="carry out fleet upgrades the controller asks "
                        "this node for (annotations on its Node)")
    wn.add_argument("--kubeconfig", type=Path,
                    help="default: the kubelet's, /var/lib/rancher/k3s/agent/kubelet.kubeconfig")
    wn.add_argument("--node", help="Node name (default: k3s's node-name, else the hostname)")
    return parser


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv) == ["boot"]:
        # every boot, before the login prompt (osbuilder-boot.service): no parser, whose
        # 18 sub-parsers took 2.7 s of a 17.7 s second-boot run under emulation
        return run_guarded("osbuilder-agent", lambda: boot_command(AgentPaths()), False,
                           log=False)
    from osbuilder.shared.cli_base import enable_completion

    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    return run_guarded("osbuilder-agent", lambda: command(args, AgentPaths()), args.verbose)


def command(args: argparse.Namespace, paths: AgentPaths) -> int:
    if args.command in ("online", "upgrade", "install", "watch-node"):
        from osbuilder.node import proxy_env

        proxy_env.load(paths.root / "etc/environment")
    if args.command in ("controller", "watch-node"):
        from osbuilder.node.fleet import service

        if args.command == "controller":
            return service.controller(args.kubeconfig, args.identity, args.metrics,
                                      args.fetch_token)
        return service.watch_node(args.kubeconfig, args.node, paths)
    if args.command in ("upgrade", "rollback", "mark-good", "health-gate", "bootloader"):
        from osbuilder.node.upgrade import actions as node

        if args.command == "upgrade":
            return node.upgrade(paths, args.source, args.allow_downgrade, not args.no_reboot)
        if args.command == "rollback":
            return node.rollback(paths, not args.no_reboot)
        if args.command == "mark-good":
            return node.mark_good(paths)
        if args.command == "health-gate":
            return node.health_gate(paths)
        return node.bootloader_backend(paths, args.op)
    if args.command == "stage-boot":
        from osbuilder.node.upgrade.boot_files import stage_boot

        return stage_boot(paths, args.slot, args.bundle_dir)
    if args.command == "install":
        from osbuilder.node.install.installer import install
        from osbuilder.shared.nodeconfig.facts import gather as gather_facts

        return install(paths, gather_facts(), args.auto, not args.no_reboot)
    if args.command == "migrate-k3os":
        from osbuilder.node.install.migrate_k3os import Options
        from osbuilder.node.install.migrate_k3os import command as migrate

        efi = (paths.root / "sys/firmware/efi").is_dir()
        return migrate(paths, Options(args.device, not args.yes, args.skip_images,
                                      args.dry_run, efi), args.force_efi, not args.no_reboot)
    if args.command in ("validate-config", "validate"):
        from osbuilder.shared.login_access import ACCESS_WARNING, has_way_in
        from osbuilder.shared.nodeconfig.loader import validate_command

        cfg = validate_command(args.file, args.strict, "osbuilder-agent")
        if not has_way_in(cfg):
            print(f"osbuilder-agent: warning: {args.file}: {ACCESS_WARNING}", file=sys.stderr)
        return 0
    if args.command == "grow-data":
        from osbuilder.node.grow_mbr import grow_data

        print(f"osbuilder-agent: {grow_data()}")
        return 0
    if args.command == "status":
        from osbuilder.node import status

        facts = status.gather(paths)
        if args.json:
            import json

            print(json.dumps(facts.as_dict(), indent=2))
        else:
            print(facts.oneline() if args.oneline else facts.text())
        return 0
    from osbuilder.node import configure as boot
    from osbuilder.node import first_login
    from osbuilder.shared.nodeconfig.facts import gather

    if args.command == "boot":
        return boot_command(paths)
    if args.command == "config":
        from osbuilder.node.config_dump import dump

        print(dump(paths, gather()), end="")
        return 0
    if args.command == "online":
        boot.online(paths, gather())
        # a changed config was applied again: put the way in back, without a new password
        note = first_login.ensure(paths, boot.fallback(paths)[0], new=False)
        if note:
            print(f"osbuilder-agent: {note}")
        return 0
    if args.command == "save-password":
        note = first_login.save(paths, boot.fallback(paths)[0])
        if note:
            print(f"osbuilder-agent: {note}")
        return 0
    # run-cmd
    from osbuilder.node.user_commands import run_commands

    cfg, _, _ = boot.fallback(paths)  # the config `boot` applied last
    for w in run_commands("run_cmd", cfg.run_cmd, dict(cfg.k3s.environment)):
        print(f"osbuilder-agent: warning: {w}")
    return 0


def boot_command(paths: AgentPaths) -> int:
    """`boot`: 0 when the config applied, 1 when it was refused or an applier failed (the
    node then runs its last good config, and systemd shows the run as failed)."""
    from osbuilder.node import replay
    from osbuilder.node.machine_id import save_machine_id
    from osbuilder.node.sd_notify import notify_ready

    try:
        save_machine_id(paths.root)
    except OSError as exc:  # the node still boots; the next boot tries again
        print(f"osbuilder-agent: warning: machine-id not saved on data: {exc}", flush=True)
    # nothing it reads changed since the last full boot: that boot's steps, and no more
    replayed = replay.again(paths)
    failed = full_boot(paths) if replayed is None else replayed
    # everything the boot waits for is done: the units ordered after this one start now
    # (osbuilder-boot.service is Type=notify), side by side with the status line below
    try:
        notify_ready()
    except OSError as exc:  # systemd fails the unit at exit; the boot goes on either way
        print(f"osbuilder-agent: warning: readiness not sent to systemd: {exc}", flush=True)
    # the console's status line, here rather than in a unit of its own: one Python start
    # less at boot (on a first boot the data is not grown yet: osbuilder-grow-data.service
    # prints the line again when it is)
    try:
        from osbuilder.node import status  # after the readiness: nothing waits for it

        print(status.gather(paths, upgrade=False).oneline(), flush=True)
    except Exception as exc:
        print(f"osbuilder-agent: agent error: status: {type(exc).__name__}", flush=True)
    return 1 if failed else 0


def full_boot(paths: AgentPaths) -> bool:
    """Sources, verdict, appliers, commands, the way in; kept for the next boot to replay
    (osbuilder.node.replay). True when the config was refused or an applier failed."""
    from osbuilder.node import configure, first_login, replay
    from osbuilder.shared import boot_journal
    from osbuilder.shared.nodeconfig.facts import gather

    try:
        before: replay.Snapshot | None = replay.snapshot(paths)
    except Exception as exc:  # kept for no replay; the boot itself goes on
        print(f"osbuilder-agent: warning: inputs not read for the next boot: {exc}",
              flush=True)
        before = None
    journal = boot_journal.start()
    try:
        try:
            out = configure.boot(paths, gather())
            failed = bool(out.errors)
        except Exception as exc:  # configure.boot falls back by itself; the last wall
            print(f"osbuilder-agent: agent error: {type(exc).__name__}: {str(exc)[:300]}",
                  flush=True)
            failed = True
            out = None
        # a way in when the config gives none (a one-time console password); here rather
        # than in a unit of its own: one Python start less at boot
        try:
            note = first_login.ensure(paths, out.config if out else configure.fallback(paths)[0])
            if note:
                configure.say(note)
        except Exception as exc:
            boot_journal.void("first login")
            print(f"osbuilder-agent: agent error: first login: {type(exc).__name__}",
                  flush=True)
    finally:
        boot_journal.stop()
    try:
        replay.keep(paths, journal, before, ok=not failed)
    except OSError as exc:  # the next boot runs in full
        print(f"osbuilder-agent: warning: this boot not kept for the next: {exc}", flush=True)
    return failed
