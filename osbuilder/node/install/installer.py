"""`osbuilder-agent install`: the live system's config decides; the disk is written only
after every check passed. Runs from osbuilder-install.service on live boots (`--auto`:
nothing to do without install.device unless booted with osb.mode=install) or by hand.
Booted with osb.mode=migrate it migrates a k3OS disk instead (migrate_k3os.py)."""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from osbuilder.node import configure as boot
from osbuilder.node.install import disks, prompts
from osbuilder.node.install.k3os_disk import install_hint
from osbuilder.node.install.write_disk import install_disk
from osbuilder.node.paths import AgentPaths
from osbuilder.shared import live
from osbuilder.shared.errors import OsbError
from osbuilder.shared.install_plan import InstallPlan
from osbuilder.shared.layout import MIB
from osbuilder.shared.nodeconfig.appliers.users import password_hash
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.loader import check_text
from osbuilder.shared.nodeconfig.model import NodeConfig, parse
from osbuilder.shared.nodeconfig.source_text import cmdline, merge
from osbuilder.shared.run import run

CONFIG_HEADER = "# written by osbuilder-agent install from the live system's config\n"
CONFIG_URL_FILE = "config.d/50-install-config-url.yaml"


def installed_config(merged: dict[str, Any]) -> str:
    """The live config for the installed node, without its install: block (an installed
    node must not install again)."""
    data = copy.deepcopy(merged)
    for key in ("k3os", "osbuilder"):
        block = data.get(key)
        if isinstance(block, dict):
            block.pop("install", None)
            if not block:
                del data[key]
    return CONFIG_HEADER + yaml.safe_dump(data, sort_keys=False)


def live_squashfs(paths: AgentPaths) -> Path:
    record = paths.root / live.RECORD.lstrip("/")
    try:
        squashfs = Path(record.read_text().strip())
    except OSError as exc:
        raise OsbError("install: this system was not booted live (ISO, USB stick or PXE): "
                       f"{record} missing") from exc
    if not squashfs.is_file():
        raise OsbError(f"install: the live root image {squashfs} is gone")
    return squashfs


def node_config(paths: AgentPaths, facts: Facts) -> tuple[dict[str, Any], NodeConfig]:
    verdict, _ = boot.resolve(paths, facts)
    if verdict.config is None:
        raise OsbError("install: the config is invalid, nothing installed: "
                       + "; ".join(map(str, verdict.problems)))
    return verdict.merged, verdict.config


def install(paths: AgentPaths, facts: Facts, auto: bool, reboot: bool,
            inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    _, control = cmdline(paths.cmdline.read_text() if paths.cmdline.is_file() else "")
    merged, cfg = node_config(paths, facts)
    if control.get("mode") == "migrate":  # the live system's "migrate k3OS" entry
        from osbuilder.node.install import migrate_k3os as mk

        ins = cfg.install
        efi = (paths.root / "sys/firmware/efi").is_dir()
        opts = mk.Options(ins.device, not ins.silent, False, False, efi)
        return mk.command(paths, opts, ins.force_efi, reboot, ins.power_off, inp, out)
    device = cfg.install.device
    if device is None:
        if auto and control.get("mode") != "install":
            return 0  # a live boot without install.device: stay live
        answers = prompts.ask(inp, out, disks.list_disks())
        if answers is None:
            return 1
        merged = merge(merged, answers.config())
        cfg = parse(merged, "installer answers")
        device = answers.device
        if answers.password:  # hashed: the config sits on the FAT boot partition
            merged["k3os"]["password"] = password_hash(answers.password, None)
    elif not cfg.install.silent and not prompts.confirm(inp, out, device):
        boot.say(f"install to {device} not confirmed (set install.silent to skip asking)")
        return 1
    ins = cfg.install
    efi = (paths.root / "sys/firmware/efi").is_dir()
    if not efi and not ins.force_efi:
        raise OsbError("install: this machine did not boot through UEFI, and osbuilder "
                       "installs systemd-boot (UEFI only); set install.force_efi: true to "
                       "install anyway (for a disk moved to a UEFI machine later)")
    plan = InstallPlan.load(paths.root)
    squashfs = live_squashfs(paths)
    target = disks.gather(device)
    problems = disks.problems(target, plan.min_disk_mib * MIB, ins.force, ins.no_format)
    if problems:
        hint = install_hint(target.signatures)
        problems += [hint] if hint else []
        raise OsbError("install refused, nothing written:\n  " + "\n  ".join(problems))
    configs = {"config.yaml": installed_config(merged)}
    if ins.config_url:
        data = boot.fetch_config_url(ins.config_url)
        check_text(data, f"install.config_url {ins.config_url.url}")
        configs[CONFIG_URL_FILE] = data.decode()
    started = time.monotonic()
    boot.say(f"installing {plan.board} {plan.version} to {target.path}")
    install_disk(target.path, plan, squashfs, configs, ins.no_format, boot.say, paths.root,
                 efi)
    then = ("powering off" if ins.power_off else "rebooting") if reboot else "done"
    boot.say(f"installed to {target.path} in {time.monotonic() - started:.0f} s; {then}")
    if reboot:
        run(["systemctl", "poweroff" if ins.power_off else "reboot"])
    return 0
