"""What `osbuilder-agent status` reports: booted slot, image version, root and data, and
the trust chain: Secure Boot, the dm-verity root, data encryption (node/secure_boot.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from osbuilder.node import secure_boot as trust
from osbuilder.node.paths import AgentPaths
from osbuilder.node.sysinfo import cmdline_args, os_release, read
from osbuilder.shared.file_writes import read_json

if TYPE_CHECKING:
    from osbuilder.node.upgrade import slot_report as report


# NamedTuples, not dataclasses: the boot prints the one-line status while the units ordered
# after the agent start, and `dataclasses` (inspect, ast, dis) was most of that line's
# imports (with the line left out, the login prompt came 2.5-8.4 s of virtual time sooner:
# docs/benchmarks.md)
class MountFact(NamedTuple):
    source: str
    fstype: str
    read_only: bool


class Status(NamedTuple):
    slot: str | None
    version: str | None
    board: str | None
    root: MountFact | None
    data: MountFact | None
    data_fs_bytes: int | None
    data_part_bytes: int | None
    disk_bytes: int | None
    result: str | None = None
    sources: tuple[str, ...] = ()
    judged_by: str | None = None  # validator, last good config, build (nodeconfig.judged)
    role: str | None = None
    hostname: str | None = None
    node: str | None = None  # as k3s registers it (the health gate and watcher use it too)
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    apply_seconds: float | None = None
    peak_rss_kib: int | None = None
    upgrade: report.UpgradeFacts | None = None
    secure_boot: str = "-"  # on, off, setup (keys not enrolled), none (no UEFI)
    verity: str = "-"  # on: the root is the dm-verity device
    encryption: str = "-"  # none, luks2-tpm2, luks2-recovery, luks2-formatted
    recovery_key_waiting: bool = False  # the first boot's key in /run, for run_cmd to send

    def as_dict(self) -> dict[str, Any]:
        """For `status --json`: the fields, mounts and upgrade facts as objects."""
        from dataclasses import asdict  # the upgrade facts are dataclasses

        return {**self._asdict(), "root": self.root._asdict() if self.root else None,
                "data": self.data._asdict() if self.data else None,
                "upgrade": asdict(self.upgrade) if self.upgrade else None}

    def text(self) -> str:
        lines = [
            f"slot:      {self.slot or '-'}",
            f"version:   {self.version or '-'} ({self.board or '-'})",
            f"root:      {self.root.source} {self.root.fstype} "
            f"{'read-only' if self.root.read_only else 'read-write'}" if self.root else "root: -",
            f"data:      {self.data.source if self.data else '-'}",
            f"trust:     secure boot {self.secure_boot}, verity {self.verity}, "
            f"data encryption {self.encryption}",
            f"config:    {self.result or 'not applied yet'} from {', '.join(self.sources) or '-'}"
            + (f" (judged by {self.judged_by})" if self.judged_by else ""),
            f"k3s role:  {self.role or '-'}",
            f"hostname:  {self.hostname or '-'}",
            f"node:      {self.node or '-'}",
            f"last boot: {self.apply_seconds} s, peak RSS {self.peak_rss_kib} KiB",
        ]
        if self.upgrade:
            u = self.upgrade
            for f in u.slots:
                tries = f", {f.tries_left} tries left" if f.tries_left is not None else ""
                lines.append(f"slot {f.slot}:    {f.version or '-'} {f.state}{tries}"
                             + (" (booted)" if f.slot == self.slot else "")
                             + (" (next boot)" if f.slot == u.primary else ""))
            lines.append(f"upgrade:   {u.last_state or 'none yet'}"
                         + (f" to {u.last_to_version}" if u.last_to_version else "")
                         + (f": {u.last_error}" if u.last_error else ""))
        if self.encryption == "luks2-recovery":
            lines.append("warning:   data unlocked with the recovery key: this TPM does not "
                         "hold its key; to seal it here: systemd-cryptenroll --wipe-slot=tpm2 "
                         "--tpm2-device=auto --tpm2-public-key-pcrs=11 --tpm2-pcrs=7 "
                         "/dev/disk/by-partlabel/OSB_DATA")
        if self.recovery_key_waiting:
            lines.append(f"note:      the recovery key is in {trust.RECOVERY_KEY} until the next "
                         "reboot (docs/trust.md)")
        lines += [f"error:     {e}" for e in self.errors]
        lines += [f"warning:   {w}" for w in self.warnings]
        return "\n".join(lines)

    def oneline(self) -> str:
        def mnt(m: MountFact | None) -> str:
            return f"{m.source}:{m.fstype}:{'ro' if m.read_only else 'rw'}" if m else "-"

        def gib(n: int | None) -> str:
            return f"{n / 2**30:.2f}GiB" if n is not None else "-"

        return (
            f"osbuilder-agent: status slot={self.slot or '-'} version={self.version or '-'} "
            f"board={self.board or '-'} root={mnt(self.root)} data={mnt(self.data)} "
            f"data_fs={gib(self.data_fs_bytes)} data_part={gib(self.data_part_bytes)} "
            f"disk={gib(self.disk_bytes)} node={self.node or '-'} "
            f"secure_boot={self.secure_boot} verity={self.verity} encryption={self.encryption}"
        )




def find_mount(mountinfo: str, target: str) -> MountFact | None:
    """The last (topmost) mount at target, from /proc/self/mountinfo text."""
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 10 or fields[4] != target:
            continue
        sep = fields.index("-")
        opts = fields[5].split(",")
        found = MountFact(source=fields[sep + 2], fstype=fields[sep + 1], read_only="ro" in opts)
    return found


def block_size_bytes(dev: str, sys_block: Path = Path("/sys/class/block")) -> int | None:
    p = sys_block / os.path.basename(dev) / "size"
    return int(p.read_text()) * 512 if p.is_file() else None


def parent_disk(dev: str, sys_block: Path = Path("/sys/class/block")) -> str | None:
    p = sys_block / os.path.basename(dev)
    if not (p / "partition").is_file():
        return None
    return p.resolve().parent.name


def block_name(dev: str, sys_dev_block: Path = Path("/sys/dev/block")) -> str:
    """The kernel's name of a block device node (dm-1 for /dev/mapper/osb-data, which the
    initramfs made as a plain node, not a udev symlink), by its device number."""
    try:
        rdev = os.stat(dev).st_rdev
    except OSError:
        return os.path.basename(dev)
    link = sys_dev_block / f"{os.major(rdev)}:{os.minor(rdev)}"
    return link.resolve().name if link.exists() else os.path.basename(dev)


def backing_partition(name: str, sys_block: Path = Path("/sys/class/block")) -> str:
    """The partition under a device-mapper device (LUKS2 data: dm-1 over vda4), following
    single-slave layers; a partition is its own."""
    for _ in range(8):
        slaves = sys_block / name / "slaves"
        below = sorted(slaves.iterdir()) if slaves.is_dir() else []
        if len(below) != 1:
            break
        name = below[0].name
    return name



def slot_facts(paths: AgentPaths, slot: str | None) -> report.UpgradeFacts | None:
    from osbuilder.node.upgrade import slot_report  # only when asked for: see gather

    return slot_report.gather(paths, slot)


def gather(paths: AgentPaths | None = None, upgrade: bool = True) -> Status:
    """The node's status; without `upgrade`, no slot and upgrade facts (the one-line
    status needs none, and the boot saves their imports: 1.3 s of an emulated boot)."""
    cmd = cmdline_args(read("/proc/cmdline"))
    rel = os_release(read("/usr/lib/os-release"))
    mountinfo = read("/proc/self/mountinfo")
    data = find_mount(mountinfo, "/data")
    fs_bytes = part_bytes = disk_bytes = None
    if data is not None:
        st = os.statvfs("/data")
        fs_bytes = st.f_blocks * st.f_frsize
        part = backing_partition(block_name(data.source))
        part_bytes = block_size_bytes(part)
        disk = parent_disk(part)
        disk_bytes = block_size_bytes(disk) if disk else None
    paths = paths or AgentPaths()
    state = read_json(paths.state_file) or {}
    dm = trust.dm_devices()
    return Status(
        secure_boot=trust.secure_boot_state(), verity=trust.verity_state(dm),
        encryption=trust.encryption_state(dm), recovery_key_waiting=trust.RECOVERY_KEY.exists(),
        result=state.get("result"), sources=tuple(state.get("sources", ())),
        judged_by=state.get("judged_by"),
        role=state.get("role"), hostname=state.get("hostname"), node=state.get("node"),
        errors=tuple(state.get("errors", ())), warnings=tuple(state.get("warnings", ())),
        apply_seconds=state.get("seconds"), peak_rss_kib=state.get("peak_rss_kib"),
        slot=cmd.get("osb.slot"), version=rel.get("IMAGE_VERSION"), board=rel.get("VARIANT_ID"),
        root=find_mount(mountinfo, "/"), data=data, data_fs_bytes=fs_bytes,
        data_part_bytes=part_bytes, disk_bytes=disk_bytes,
        upgrade=slot_facts(paths, cmd.get("osb.slot")) if upgrade else None,
    )
