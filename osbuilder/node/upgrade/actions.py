"""`osbuilder-agent upgrade|rollback|mark-good|health-gate|bootloader` on the node.

Order of an upgrade: download (resumable) → RAUC checks signature, our checks compatible
and version → RAUC marks the inactive slot bad, writes it, and asks the chooser to make it
primary with limited tries (the last write) → reboot → health gate → mark good, or mark
bad and reboot into the previous slot. The booted slot is never written.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from osbuilder.node.node_name import node_name
from osbuilder.node.paths import AgentPaths
from osbuilder.node.sysinfo import cmdline_args, os_release, read
from osbuilder.node.upgrade import rauc
from osbuilder.node.upgrade import slots as choosers
from osbuilder.node.upgrade.boot_files import check_boot_files
from osbuilder.node.upgrade.bundle_download import fetch_bundle
from osbuilder.node.upgrade.health_gate import evaluate, standard_checks
from osbuilder.node.upgrade.slots import SlotChooser
from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import read_json, write_json
from osbuilder.shared.layout import SLOTS, root_device_path
from osbuilder.shared.nodeconfig.model import parse
from osbuilder.shared.run import run
from osbuilder.shared.versions import check_bundle


def say(msg: str) -> None:
    print(f"osbuilder-agent: upgrade: {msg}", flush=True)


def booted_slot(paths: AgentPaths) -> str:
    slot = cmdline_args(read(str(paths.cmdline))).get("osb.slot")
    if slot not in SLOTS:
        raise OsbError("booted slot unknown: no osb.slot= on the kernel command line")
    return slot


def running_version(paths: AgentPaths) -> str:
    return os_release(read(str(paths.root / "usr/lib/os-release"))).get("IMAGE_VERSION", "0")


def slot_device(slot: str) -> str:
    """GPT disks name the slot (PARTLABEL); MBR disks only number it (PARTUUID)."""
    gpt = root_device_path("gpt", slot)
    return gpt if Path(gpt).exists() else root_device_path("mbr", slot)


@contextmanager
def mount_slot(slot: str, booted: str) -> Iterator[Path]:
    """A slot's root, read-only: the running root for the booted slot."""
    if slot == booted:
        yield Path("/")
        return
    with tempfile.TemporaryDirectory(prefix=f"osb-slot-{slot}-", dir="/run") as mnt:
        run(["mount", "-o", "ro", "-t", "squashfs", slot_device(slot), mnt])
        try:
            yield Path(mnt)
        finally:
            run(["umount", mnt])


def chooser(paths: AgentPaths) -> SlotChooser:
    booted = booted_slot(paths)
    return choosers.chooser(paths, booted, lambda slot: mount_slot(slot, booted))


def record(paths: AgentPaths, **fields: Any) -> dict[str, Any]:
    rec: dict[str, Any] = read_json(paths.upgrade_record) or {}
    rec.update(fields, updated=int(time.time()))
    write_json(paths.upgrade_record, rec)
    return rec


def reboot() -> None:
    say("rebooting")
    run(["systemctl", "reboot"])


def upgrade(paths: AgentPaths, source: str, allow_downgrade: bool, do_reboot: bool) -> int:
    current = booted_slot(paths)
    if chooser(paths).tries_left(current) is not None:
        # the inactive slot is then the only known-good one: never write over it
        raise OsbError(f"slot {current} is still on trial (its health gate has not passed): "
                       "an upgrade now would overwrite the known-good slot; wait for the "
                       "gate, or run `osbuilder-agent mark-good` first")
    write_json(paths.upgrade_record, {"state": "downloading", "source": source,
                                      "from_slot": current, "from_version": running_version(paths),
                                      "started": int(time.time())})
    try:
        if source.startswith(("http://", "https://")):
            # named by URL: only a download of the same URL is resumed
            name = hashlib.sha256(source.encode()).hexdigest()[:16] + ".raucb"
            for stale in paths.download_dir.glob("*.raucb.part"):
                if stale.name != name + ".part":
                    stale.unlink()
            bundle = fetch_bundle(source, paths.download_dir / name, say)
        else:
            bundle = Path(source)
            if not bundle.is_file():
                raise OsbError(f"{source}: no such bundle file (expected a .raucb file or URL)")
        record(paths, state="verifying")
        info = rauc.info(bundle)
        check_bundle(compatible=info.compatible, version=info.version,
                     system_compatible=rauc.system_compatible(paths.root / rauc.SYSTEM_CONF),
                     running_version=running_version(paths), allow_downgrade=allow_downgrade)
        rauc.verify_payload(bundle, info, paths.root / rauc.MOUNT_POINT,
                            lambda mounted: check_boot_files(paths, mounted))
        say(f"bundle {info.version} for {info.compatible}: signature, payload, boot files "
            "and compatibility ok")
        record(paths, state="installing", to_version=info.version)
        say(f"installing {info.version} into the inactive slot")
        t0 = time.monotonic()
        rauc.install(bundle)
        seconds = round(time.monotonic() - t0, 1)
        target = chooser(paths).primary()
        if target is None or target == current:
            raise OsbError("RAUC finished but the new slot is not the next boot")
        say(f"installed slot {target} in {seconds} s; it boots next, "
            f"{chooser(paths).tries_left(target)} tries to pass the health gate")
        record(paths, state="rebooting", to_slot=target, install_seconds=seconds, error=None)
    except OsbError as exc:
        record(paths, state="failed", error=str(exc).splitlines()[0])
        raise
    finally:
        for f in paths.download_dir.glob("*.raucb"):  # keep only a resumable .part
            f.unlink()
    if do_reboot:
        reboot()
    return 0


def health_gate(paths: AgentPaths) -> int:
    """Run on every boot (osbuilder-health.service, before boot-complete.target)."""
    ch = chooser(paths)
    slot = ch.booted
    rec = read_json(paths.upgrade_record) or {}
    if ch.tries_left(slot) is None:
        if rec.get("state") in ("rebooting", "verifying") and rec.get("to_slot") != slot:
            record(paths, state="failed", error=f"slot {rec.get('to_slot')} did not come up "
                   f"(boot tries used up); running slot {slot} again")
            say(f"the new slot {rec.get('to_slot')} failed to boot; back on slot {slot}")
        return 0
    last = read_json(paths.last_good) or {"config": {}}
    cfg = parse(last["config"], validated=True).upgrade
    node = node_name()  # as k3s registered it: its node-name, else the host name
    record(paths, state="verifying")
    say(f"slot {slot} ({running_version(paths)}) on trial: health gate, {cfg.health_timeout} s")
    t0 = time.monotonic()
    verdict = evaluate(standard_checks(node, cfg.require_node_ready, cfg.health_checks),
                       cfg.health_timeout, time.monotonic, time.sleep, say=say)
    if verdict.ok:
        rauc.mark("good")
        record(paths, state="done", error=None,
               gate_seconds=round(time.monotonic() - t0, 1))
        say(f"health gate passed: slot {slot} ({running_version(paths)}) marked good")
        return 0
    record(paths, state="failed", error=f"health gate: {verdict.reason}")
    say(f"health gate failed: {verdict.reason}; rolling back")
    rauc.mark("bad")
    reboot()
    return 1


def rollback(paths: AgentPaths, do_reboot: bool) -> int:
    ch = chooser(paths)
    other = next(s for s in SLOTS if s != ch.booted)
    if ch.state(other) != "good":
        raise OsbError(f"slot {other} holds no bootable OS (never installed or marked bad): "
                       "nothing to roll back to")
    rauc.mark("active", "other")
    record(paths, state="rolled-back", to_slot=other, error=None)
    say(f"slot {other} boots next")
    if do_reboot:
        reboot()
    return 0


def mark_good(paths: AgentPaths) -> int:
    rauc.mark("good")
    say(f"slot {booted_slot(paths)} marked good")
    return 0


def console_note(msg: str) -> None:
    """Boot selector changes go to the console too: RAUC runs the backend with its output
    captured, and these are the lines to read after a power cut."""
    try:
        with open("/dev/console", "w") as c:
            c.write(f"osbuilder-agent: boot selector: {msg}\n")
    except OSError:
        pass


BACKEND_OPS = {"get-primary": 0, "set-primary": 1, "get-state": 1, "set-state": 2,
               "get-current": 0}  # operation -> operands


def bootloader_backend(paths: AgentPaths, argv: list[str]) -> int:
    """RAUC's custom bootloader backend protocol (system.conf [handlers])."""
    op, args = (argv[0], argv[1:]) if argv else ("", [])
    if BACKEND_OPS.get(op) != len(args) or (op == "set-state" and args[1] not in ("good",
                                                                                 "bad")):
        print(f"usage: get-primary | set-primary SLOT | get-state SLOT | set-state SLOT good|bad"
              f" | get-current (got {' '.join(argv)!r})", file=sys.stderr)
        return 2
    ch = chooser(paths)  # reads the booted slot: only for a well-formed request
    if op == "get-primary":
        primary = ch.primary()
        if primary is None:
            raise OsbError("no slot has a boot entry")
        print(primary)
    elif op == "set-primary":
        console_note(f"staging slot {args[0]} as the next boot")
        ch.set_primary(args[0])
        console_note(f"slot {args[0]} boots next ({ch.tries_left(args[0])} tries)")
    elif op == "get-state":
        print(ch.state(args[0]))
    elif op == "set-state":
        ch.set_state(args[0], args[1] == "good")
        console_note(f"slot {args[0]} marked {args[1]}")
    else:
        print(ch.booted)
    return 0
