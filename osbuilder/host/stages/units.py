"""Stage units: create sysusers.d users; enable/disable units as the preset files list
(overlay layers each bring their own, e.g. the MBR layer's data partition growth); mask
the generators and units a node does not want; let the login prompt wait for less
(ORDER_OVERRIDES, BACKGROUND_AT_STARTUP)."""

from __future__ import annotations

from pathlib import Path

from osbuilder.host.chroot import chroot_run
from osbuilder.host.context import BuildContext
from osbuilder.shared.nodeconfig.appliers import data_sources

PRESETS = "usr/lib/systemd/system-preset"
PACKAGE_UNIT_DIRS = ("usr/lib/systemd/system", "lib/systemd/system")
UNIT_DIRS = (*PACKAGE_UNIT_DIRS, "etc/systemd/system")
# Generators masked in the image (systemd.generator(7): a link to /dev/null of the same
# name in /etc/systemd/system-generators). systemd-ssh-generator offers sshd on AF_VSOCK
# and an AF_UNIX socket, for VMs and containers; its probe of AF_VSOCK loads the vsock
# and VMCI modules on every boot (4 s under emulation before the first unit starts), and
# a node's sshd listens on the network (ssh.service) anyway.
# The cryptsetup, integritysetup and veritysetup generators turn /etc/crypttab,
# /etc/integritytab, /etc/veritytab and their kernel arguments into units; a node has none
# of them (its initramfs opens the verity root and the LUKS2 data itself, and /etc is
# written by the agent after the generators have run), and each is a process start before
# the first unit (0.3 s under emulation).
MASKED_GENERATORS = ("systemd-ssh-generator", "systemd-cryptsetup-generator",
                     "systemd-integritysetup-generator", "systemd-veritysetup-generator")
# Masked where the image ships cloud-init off (overlays/data-sources): the generator runs
# ds-identify (a 2,000-line shell script, and systemd-detect-virt) on every boot only to
# find the marker file, 0.4 s before the first unit under emulation. When a config names
# k3os.data_sources the agent removes the marker and starts cloud-init.target itself
# (node/configure.py), which does not need the generator.
CLOUD_INIT_GENERATOR = "cloud-init-generator"
# Units masked in the image (systemctl mask: a link to /dev/null in /etc/systemd/system).
# Debian's systemd-repart.service (in sysinit.target.wants) never has definitions to run:
# osbuilder's are in /usr/lib/osbuilder/repart.d, for osbuilder-grow-data.service. Its
# condition fails, but its Wants= (units/systemd-repart.service.in) start modprobe@loop
# and modprobe@dm_mod on every boot, and again whenever a start pulls sysinit.target into
# a transaction, as the agent's start of k3s does (which then also started
# modprobe@efi_pstore again): five process starts a boot for nothing, under emulation
# 0.35-0.5 s of CPU each.
# Three more that start a process on every boot and have nothing to do on a node:
# systemd-remount-fs.service remounts what fstab lists for /, /usr and the API file
# systems, and the root without a fstab line only when systemd-gpt-auto-generator asks
# (systemd.gpt_auto=0 here); a node's fstab lists only /data and /boot/efi.
# systemd-udev-load-credentials.service loads udev rules and settings passed as system
# credentials; a node's come with the image or its config. modprobe@drm.service, wanted by
# systemd-logind for graphical seats; a node has none, and udev loads the drm core with a
# GPU's driver anyway. (Wants= on a masked unit is no error.)
MASKED_UNITS = ("systemd-repart.service", "systemd-remount-fs.service",
                "systemd-udev-load-credentials.service", "modprobe@drm.service")
# Package files left out of the image. Python's binfmt.d entry runs .pyc files as programs,
# which no node needs; it is the image's only one, and systemd-binfmt.service runs on every
# boot while any binfmt.d folder is not empty (its ConditionDirectoryNotEmpty=), a process
# start beside the boot's own under emulation. An entry a config writes to /etc/binfmt.d
# still starts it.
DROPPED_FILES = ("usr/lib/binfmt.d/python3*.conf",)
# Package units written to /etc without one order, which overrides /usr/lib
# (systemd.unit(5)): each copy is made from the package's own unit, so that it keeps the
# rest of Debian's. (A drop-in cannot take a dependency away.)
# - systemd-user-sessions.service removes /run/nologin at boot, and every getty is ordered
#   after it. Upstream also orders it after network.target (systemd commit 8c85680, for
#   systemd issue 2390) so that at shutdown logind's session scopes, ordered after it,
#   stop before the network, and an SSH client is not left hanging. At boot that made the
#   login prompt wait for the agent's network config and networkd's start (systemd issue
#   12853): 7-9 s of a first boot under emulation (docs/benchmarks.md). A node has no
#   logind sessions (no pam_systemd), so the order protected nothing here; its SSH
#   sessions end before the network through osbuilder-ssh-sessions.service, which would
#   also cover sessions in logind's scopes (it ends sshd's session processes).
# - systemd-resolved and systemd-timesyncd are Before=sysinit.target upstream, so that
#   early units can resolve names and find the clock set forward; every unit after
#   sysinit.target, the gettys among them, waited for their start. On a node nothing
#   before the network resolves a name (the agent writes resolved's servers and restarts
#   it), and the units that speak TLS (k3s, k3s-agent, osbuilder-online) are ordered
#   after time-set.target, which timesyncd reaches once it has set the clock forward to
#   its saved time (systemd-timesyncd.service(8)): a Pi has no clock of its own.
USER_SESSIONS = "systemd-user-sessions.service"
ORDER_OVERRIDES = ((USER_SESSIONS, "After", "network.target"),
                   ("systemd-resolved.service", "Before", "sysinit.target"),
                   ("systemd-timesyncd.service", "Before", "sysinit.target"))
# Units the login prompt does not wait for, given a small share of the CPU while the
# system starts (StartupCPUWeight=, systemd.resource-control(5); the default weight is
# 100). Under emulation, and on a single-core board (Pi Zero, Pi 1), the boot is
# CPU-bound up to the prompt: beside udev's coldplug, which the serial getty waits for
# (its tty's device unit), these took the CPU the prompt waited for (docs/benchmarks.md).
# networkd still starts after the agent, as before; on such a board the network comes up
# after the prompt rather than before it.
# systemd.resource-control(5) says CPUWeight= applies once startup finishes, but systemd
# re-applies weights then only to the units in its startup set, and
# unit_has_startup_cgroup_constraints() (src/core/cgroup.c), which picks them, checks the
# Startup IO, cpuset and memory settings, not StartupCPUWeight=. So 10 stayed in their
# cpu.weight on a running node (seen in the e2e server test), and SHARE_RESET resets the
# startup weight at runtime once the login prompts are up.
BACKGROUND_AT_STARTUP = ("systemd-resolved.service", "systemd-timesyncd.service",
                         "systemd-networkd.service", "dbus.service", "systemd-logind.service")
STARTUP_WEIGHT = 10
DROPIN = "50-osbuilder-startup.conf"
SHARE_RESET = "osbuilder-startup-share.service"


def apply_presets(ctx: BuildContext) -> None:
    # users declared in sysusers.d (the default user osb) exist in the image's /etc; with
    # SOURCE_DATE_EPOCH, not today, as /etc/shadow's last-change day (else two builds a
    # day apart differ)
    chroot_run(ctx.rootfs, ["systemd-sysusers"], env=ctx.env)
    verbs: dict[str, str] = {}  # unit -> enable/disable; a later preset file wins
    for preset in sorted((ctx.rootfs / PRESETS).glob("*-osbuilder*.preset")):
        for line in preset.read_text().splitlines():
            verb, _, unit = line.partition(" ")
            if verb in ("enable", "disable") and unit.strip():
                verbs[unit.strip()] = verb
    if write_startup_weights(ctx.rootfs):
        verbs[SHARE_RESET] = "enable"
    for verb in ("enable", "disable"):
        # a rootfs from a tarball or DIB may lack a unit the presets disable; one
        # systemctl per verb, as each costs seconds under qemu-user on foreign boards
        units = [u for u, v in verbs.items()
                 if v == verb and (verb == "enable" or unit_exists(ctx.rootfs, u))]
        if units:
            chroot_run(ctx.rootfs, ["systemctl", verb, *units], env=ctx.env)
    generators = ctx.rootfs / "etc/systemd/system-generators"
    generators.mkdir(parents=True, exist_ok=True)
    masked = [*MASKED_GENERATORS]
    if (ctx.rootfs / data_sources.DISABLED).exists():
        masked.append(CLOUD_INIT_GENERATOR)
    for link in [generators / n for n in masked] + [
            ctx.rootfs / "etc/systemd/system" / n for n in MASKED_UNITS]:
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for pattern in DROPPED_FILES:
        for f in ctx.rootfs.glob(pattern):
            f.unlink()
    write_order_overrides(ctx.rootfs)


def write_order_overrides(rootfs: Path) -> None:
    """/etc's copy of each ORDER_OVERRIDES unit without its order, where the package's
    unit has it."""
    for name, key, target in ORDER_OVERRIDES:
        unit = next((rootfs / d / name for d in PACKAGE_UNIT_DIRS
                     if (rootfs / d / name).is_file()), None)
        if unit is None:
            continue  # a rootfs from a tarball or DIB without it: nothing waits for it
        text = without_order(unit.read_text(), key, target)
        if text is not None:
            (rootfs / "etc/systemd/system" / name).write_text(
                f"{override_note(key, target)}\n{text}")


def override_note(key: str, target: str) -> str:
    return (f"# osbuilder: the package's unit without {key}={target} "
            "(osbuilder/host/stages/units.py: ORDER_OVERRIDES)")


def without_order(unit: str, key: str, target: str) -> str | None:
    """unit with target taken out of its key= lines (After, Before, ...; a line left with
    nothing after it is dropped); None when no such line names it."""
    out, changed = [], False
    for line in unit.splitlines(keepends=True):
        k, sep, value = line.partition("=")
        if sep and k.strip() == key and target in value.split():
            changed = True
            kept = [v for v in value.split() if v != target]
            if not kept:
                continue
            line = f"{key}={' '.join(kept)}\n"
        out.append(line)
    return "".join(out) if changed else None


def write_startup_weights(rootfs: Path) -> bool:
    """A drop-in with StartupCPUWeight=STARTUP_WEIGHT for each BACKGROUND_AT_STARTUP unit
    the image has, and SHARE_RESET, which resets it once the prompts are up; True when
    SHARE_RESET was written (apply_presets enables it with the presets' units)."""
    units = [n for n in BACKGROUND_AT_STARTUP if unit_exists(rootfs, n)]
    if not units:
        return False  # a rootfs from a tarball or DIB without them: nothing to reset
    for name in units:
        dropin = rootfs / PACKAGE_UNIT_DIRS[0] / f"{name}.d" / DROPIN
        dropin.parent.mkdir(parents=True, exist_ok=True)
        dropin.write_text("# osbuilder: not needed for the login prompt "
                          "(osbuilder/host/stages/units.py: BACKGROUND_AT_STARTUP)\n"
                          f"[Service]\nStartupCPUWeight={STARTUP_WEIGHT}\n")
    (rootfs / PACKAGE_UNIT_DIRS[0] / SHARE_RESET).write_text(share_reset_unit(units))
    return True


def share_reset_unit(units: list[str]) -> str:
    """SHARE_RESET: after the gettys, each of units' StartupCPUWeight= reset at runtime
    (systemctl set-property --runtime: a drop-in under /run), so its CPUWeight= (default
    100) applies from then on."""
    resets = "".join(f"ExecStart=/usr/bin/systemctl set-property --runtime {u} "
                     "StartupCPUWeight=\n" for u in units)
    return ("# osbuilder: written by osbuilder/host/stages/units.py (SHARE_RESET)\n"
            "[Unit]\n"
            "Description=osbuilder: the full CPU share again for the units that let the "
            "login prompt go first\n"
            "After=getty.target\n\n"
            "[Service]\nType=oneshot\n" + resets +
            "\n[Install]\nWantedBy=multi-user.target\n")


def unit_exists(rootfs: Path, unit: str) -> bool:
    return any((rootfs / d / unit).exists() for d in UNIT_DIRS)
