"""`osbuilder-agent migrate-k3os`: from the live system (ISO, USB stick, PXE), a disk that
k3OS's installer laid out becomes an osbuilder A/B disk in place, keeping the node's k3s
datastore, TLS, token, node password, host name, SSH host keys, /home and config, so it
rejoins its cluster as the same Node.

Order (migrate_plan.py; docs/architecture-notes.md "In-place migration from k3OS"):
every check first (the disk, its size, K3OS_STATE's consistency, the k3s state, the
config, the room for the new partitions): a refusal changes nothing. Then the new data
file system, slot A and the boot partition go into space k3OS does not use, k3OS's file
system is checked unchanged, and only then is the partition table replaced, in an order
where a cut leaves either k3OS's table or the new one. After that the disk boots
osbuilder; the rest (wiping k3OS's old signature in slot B, the UEFI entry) is tidying.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from osbuilder.node.configure import say
from osbuilder.node.install import disks, migrate_io
from osbuilder.node.install.k3os_disk import Extent, NotK3os
from osbuilder.node.install.k3os_state import Unreadable, read_state
from osbuilder.node.install.migrate_steps import (
    Inputs,
    Migration,
    Prepared,
    Refused,
    prepare,
)
from osbuilder.node.install.prompts import Console, Ended
from osbuilder.node.install.write_disk import add_boot_entry
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.errors import Cancelled, ConfigError
from osbuilder.shared.file_writes import lookup_ids
from osbuilder.shared.install_plan import InstallPlan
from osbuilder.shared.layout import MIB
from osbuilder.shared.run import run


@dataclass(frozen=True)
class Options:
    device: str | None  # None: the one disk that k3OS laid out
    ask: bool  # confirm on the console first
    skip_images: bool  # leave container images behind (pulled again)
    dry_run: bool  # check and plan, print the plan, write nothing
    efi: bool  # this machine booted through UEFI: add a boot entry


class NodeMigration(Migration):
    """On the node: k3OS's file system is mounted read-only until its check."""

    def __init__(self, inputs: Inputs, part: str, mount: ExitStack, efi: bool) -> None:
        super().__init__(inputs)
        self.part, self.mount, self.efi = part, mount, efi

    def check_k3os(self) -> None:
        self.mount.close()  # unmounted, its block device writable again
        migrate_io.fsck_state(self.part)

    def wipe_b(self, span: Extent) -> None:
        migrate_io.reread(self.p.disk.path)
        super().wipe_b(span)

    def boot_entry(self) -> None:
        if self.efi:
            add_boot_entry(self.p.disk.path, 1, self.i.plan.efi_arch, self.say)


def _confirm(device: str, inp: TextIO, out: TextIO) -> None:
    try:
        answer = Console(inp, out).ask(f"osbuilder: migrate k3OS on {device} to osbuilder in "
                                       "place (keeps the k3s state)? [y/N]: ")
    except Ended:
        answer = ""
    if answer.lower() not in ("y", "yes"):
        raise Cancelled(f"migration of {device} not confirmed; nothing written")


def pick_device(device: str | None) -> str:
    if device:
        return device
    found = migrate_io.find_k3os_disks([d.path for d in disks.list_disks()])
    if len(found) != 1:
        raise Refused("migration refused: " + (
            "no disk laid out by k3OS's installer found" if not found else
            f"several k3OS disks ({', '.join(found)}): name one (--device, or "
            "install.device in the live config)"))
    return found[0]


def migrate(opts: Options, root: Path, squashfs: Path, say: migrate_io.Say,
            inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> Prepared:
    """Check, plan, (ask,) migrate. Returns the plan carried out (dry run: only made)."""
    plan = InstallPlan.load(root)
    device = pick_device(opts.device)
    target = disks.gather(device)
    problems = disks.problems(target, plan.min_disk_mib * MIB, True, False)
    if problems:
        raise Refused("migration refused, nothing written:\n  " + "\n  ".join(problems))
    try:
        disk = migrate_io.read_disk(target.path)
    except NotK3os as exc:
        raise Refused(f"migration refused, nothing written: {exc}") from None
    part = disks.partition_path(target.path, disk.state_number)
    say(f"{target.path}: k3OS's {disk.table.upper()} layout, K3OS_STATE on {part}")
    with ExitStack() as mount:
        try:
            if disk.fs.needs_recovery or not disk.fs.clean:
                say("k3OS was not shut down cleanly: replaying its journal (as its own next "
                    "boot would)")
                migrate_io.replay_journal(part)
            migrate_io.fsck_state(part)
            free = migrate_io.dumpe2fs(part)
            state = read_state(mount.enter_context(migrate_io.state_mounted(part)))
            prepared = prepare(disk, state, free, plan, squashfs.stat().st_size,
                               opts.skip_images)
        except (Unreadable, ConfigError, Refused) as exc:  # a config error: a YAML file
            raise Refused(f"migration refused, nothing written: {exc}") from None
        say(f"k3s {state.role} ({state.datastore} datastore), its node password, "
            f"{len(state.host_keys)} SSH host key files, host name "
            f"{state.config.hostname or state.hostname}")
        say(prepared.describe())
        if opts.dry_run:
            return prepared
        if opts.ask:
            _confirm(target.path, inp, out)
        started = time.monotonic()
        inputs = Inputs(prepared, state, migrate_io.LoopRegions(target.path), squashfs, plan,
                        root, lookup_ids(root, "rancher"), opts.skip_images, Path("/run"), say)
        NodeMigration(inputs, part, mount, opts.efi).run()
    say(f"migrated {target.path} to osbuilder in {time.monotonic() - started:.0f} s")
    return prepared


def command(paths: AgentPaths, opts: Options, force_efi: bool, reboot: bool,
            power_off: bool = False, inp: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """`osbuilder-agent migrate-k3os` and the live system's osb.mode=migrate."""
    from osbuilder.node.install.installer import live_squashfs

    squashfs = live_squashfs(paths)
    if not opts.efi and not force_efi:
        raise Refused("migration refused, nothing written: this machine did not boot through "
                      "UEFI, and osbuilder boots with systemd-boot (UEFI only); switch the "
                      "firmware to UEFI (k3OS's MBR installs came from BIOS boots), or "
                      "--force-efi (install.force_efi) for a disk moved to a UEFI machine later")
    migrate(opts, paths.root, squashfs, say, inp, out)
    if opts.dry_run:
        return 0
    if reboot:
        say("powering off" if power_off else "rebooting into osbuilder")
        run(["systemctl", "poweroff" if power_off else "reboot"])
    return 0
