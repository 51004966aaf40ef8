"""`boot` on a node whose inputs have not changed since its last full boot: that boot's
steps done again, without the config's parser, validator, model or appliers.

The reboot after an upgrade or a power cut changes nothing the config depends on, yet /etc
is a tmpfs rebuilt at every boot, so every boot must write the applied config again; the
full path's imports (PyYAML, the model's dataclasses, the appliers) and its work took
5-6 s of CPU before the login prompt under emulation (docs/benchmarks.md).

A full boot keeps, in RECORD (0600: it holds the password hash and the cluster token, as
the last good config does):
- its journal (osbuilder.shared.boot_journal): each file written, removed, linked, each
  directory made, the user commands run, the units started, the lines printed, in order;
- `inputs`: every file, folder listing and existence the full path reads, each with the
  digests it may have: as the boot found it, and as the boot left it (a cache the boot
  writes on /var). Either is the same boot again: the appliers are idempotent, so a boot
  on what the last one left does what the last one did.
It keeps none when the boot failed, fell back, or did what must not repeat (a one-time
password). Before a full boot, `again` reads RECORD; when every input still has one of its
digests, it does the journal's steps (each idempotent) and the full path does not run.
The agent's own code is an input (its module zip), and so are the image's os-release, the
kernel command line, every config source and the machine's facts: an upgrade, a new
config or another board runs in full. test_boot_replay checks `inputs` against every
file a full boot opens.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import resource
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from osbuilder.node.paths import AgentPaths
from osbuilder.shared import boot_journal
from osbuilder.shared.file_writes import (
    ensure_dir,
    read_json,
    remove,
    symlink,
    write_atomic,
    write_json,
)

RECORD = "boot-replay.json"
FORMAT = 1
MAX_RECORD_BYTES = 16 << 20  # the files a config writes: manifests, write_files (limits.py)
MAX_INPUTS = 4096
# an input bigger than this is not read (its size is its digest): config sources are
# limited far below it (limits.py), the image's files are small
MAX_INPUT_BYTES = 64 << 20
KINDS = ("file", "dir", "exists", "zip")
ABSENT = "absent"


def record_path(paths: AgentPaths) -> Path:
    return paths.state_dir / RECORD


def code_archive() -> Path | None:
    """The zip the agent's modules run from on a node (agent-modules.zip); None when they
    are plain files (a checkout, the tests)."""
    archive = getattr(getattr(sys.modules["osbuilder"], "__loader__", None), "archive", None)
    return Path(archive) if isinstance(archive, str) else None


def inputs(paths: AgentPaths, sys_root: Path = Path("/")) -> list[tuple[str, Path]]:
    """What a full `boot` reads, as (kind, path): the config sources, the facts
    (osbuilder.shared.nodeconfig.facts, from sys_root as `boot` gathers them), the image's
    identity and the files the appliers read besides the config. Run before and after a
    full boot only: it imports the appliers' names, which the full path loads anyway."""
    from osbuilder.node import first_login
    from osbuilder.shared.nodeconfig import sources
    from osbuilder.shared.nodeconfig.appliers import (
        data_sources,
        hostname,
        k3s,
        network,
        ssh_keys,
        users,
    )

    r = paths.root
    archive = code_archive()
    files = [
        paths.cmdline, paths.image_default, paths.boot_dir / "config.yaml",
        r / sources.K3OS_LOCAL, paths.instance_data, paths.user_data,
        paths.config_url_cache, first_login.record_path(paths),
        # who judged the config: the validator runs when neither says it was judged
        paths.last_good, paths.build_verdict,
        r / users.HASH_CACHE, r / hostname.STATE, r / ssh_keys.CACHE,
        r / "etc/passwd", r / "etc/group", r / "etc/shadow", r / "usr/lib/os-release",
        sys_root / "proc/device-tree/serial-number",
        sys_root / "sys/class/dmi/id/product_serial",
        sys_root / "proc/sys/kernel/hostname",
    ]
    out = [("file", f) for f in files]
    out += [("zip", archive)] if archive else []
    out += [("exists", r / data_sources.CLOUD_INIT), ("exists", r / data_sources.DISABLED)]
    # folders whose listing the boot reads, and the pattern of the files it reads in them
    for folder, pattern in ((paths.boot_dir / "config.d", "*.yaml"),
                            (r / sources.K3OS_LOCAL_DIR, "*"),
                            (r / k3s.IMAGE_MANIFESTS, "*.yaml"),
                            (r / network.NETWORK_DIR, None)):
        out.append(("dir", folder))
        if pattern:  # glob: nothing from a folder that is not there or not readable
            out += [("file", f) for f in sorted(folder.glob(pattern))]
    net = sys_root / "sys/class/net"
    out.append(("dir", net))
    try:
        ifaces = sorted(net.iterdir())
    except OSError:
        ifaces = []  # its digest says what is wrong
    for iface in ifaces:
        out += [("file", iface / "address"), ("exists", iface / "device"),
                ("exists", iface / "wireless"), ("exists", iface / "phy80211")]
    return out


def digest(kind: str, path: Path) -> str:
    """What the boot sees of path now: a file's bytes, a folder's names, whether it
    exists, a zip's table of contents; as a sha256, ABSENT, or what stopped the read.
    Never blocks or reads without end: a record is read as hostile, and one that named a
    FIFO or /dev/zero would hold up the boot."""
    try:
        if kind == "exists":
            return "yes" if os.path.exists(path) else "no"
        h = hashlib.sha256()
        if kind == "dir":
            h.update("\0".join(sorted(os.listdir(path))).encode(errors="surrogateescape"))
        elif kind == "zip":
            h.update(zip_directory(path))
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            with open(fd, "rb") as f:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return f"not a file {stat.S_IFMT(st.st_mode):o}"
                if st.st_size > MAX_INPUT_BYTES:
                    return f"size {st.st_size}"
                h.update(f.read(MAX_INPUT_BYTES))
        return h.hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return ABSENT
    except OSError as exc:
        return f"error {exc.errno}"
    except ValueError:  # a NUL in the path
        return "error path"


# the end of central directory record: its signature, and where the size (4 bytes at 12)
# and the offset (4 bytes at 16) of the central directory are (APPNOTE.TXT 4.3.16)
EOCD = b"PK\x05\x06"
EOCD_MAX = 22 + 0xFFFF  # the record and the longest comment


def zip_directory(path: Path) -> bytes:
    """A zip's central directory: each member's name, size and CRC-32. The agent's code
    identity at the cost of a few kilobytes that zipimport has just read: hashing the
    whole 3 MB zip read it from the squashfs (decompressing) while the boot waited."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        f.seek(max(0, end - EOCD_MAX))
        tail = f.read()
        at = tail.rfind(EOCD)
        if at < 0 or len(tail) - at < 22:
            raise OSError(0, "not a zip")
        size = int.from_bytes(tail[at + 12:at + 16], "little")
        offset = int.from_bytes(tail[at + 16:at + 20], "little")
        f.seek(offset)
        directory = f.read(size)
    if len(directory) != size:
        raise OSError(0, "a zip cut short")
    return directory


Snapshot = dict[tuple[str, str], str]


def snapshot(paths: AgentPaths, sys_root: Path = Path("/")) -> Snapshot:
    return {(kind, str(p)): digest(kind, p) for kind, p in inputs(paths, sys_root)}


def keep(paths: AgentPaths, journal: boot_journal.Journal, before: Snapshot | None,
         ok: bool, sys_root: Path = Path("/")) -> bool:
    """After a full boot: keep its journal for the next boot (True), or drop the old
    record when this boot may not be repeated."""
    if not ok or journal.void or before is None:
        remove(record_path(paths))
        return False
    after = snapshot(paths, sys_root)
    entries = [[kind, path, sorted({d for d in (before.get((kind, path)),
                                                after.get((kind, path))) if d})]
               for kind, path in sorted(set(before) | set(after))]
    state = str(paths.state_file)  # written afresh by each boot, full or replayed
    ops = [_encoded(op) for op in journal.ops if op[:2] != ["write", state]]
    text = json.dumps({"format": FORMAT, "inputs": entries, "ops": ops})
    if len(text) > MAX_RECORD_BYTES:
        remove(record_path(paths))
        return False
    write_atomic(record_path(paths), text, 0o600)
    return True


def _encoded(op: boot_journal.Op) -> boot_journal.Op:
    if op[0] == "write":
        return [*op[:2], base64.b64encode(op[2]).decode(), *op[3:]]
    return op


# Each kind of step: the JSON types of its arguments. A record is read as hostile (a file
# on the data partition): any other shape and the boot runs in full.
def _str(v: Any) -> bool:
    return isinstance(v, str)


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(map(_str, v))


def _flag(v: Any) -> bool:
    return type(v) is bool


def _mode(v: Any) -> bool:
    return type(v) is int and 0 <= v <= 0o7777


def _id(v: Any) -> bool:
    return type(v) is int and 0 <= v < 2**32


def _commands(v: Any) -> bool:
    return isinstance(v, list) and all(_str(c) or _strs(c) for c in v)


def _env(v: Any) -> bool:
    return isinstance(v, dict) and all(_str(k) and _str(x) for k, x in v.items())


def _fields(v: Any) -> bool:
    return isinstance(v, dict) and _strs(v.get("warnings", []))


OPS: dict[str, tuple[Callable[[Any], bool], ...]] = {
    "write": (_str, _str, _mode, _id, _id),  # path, base64 bytes, mode, uid, gid
    "remove": (_str,),
    "dir": (_str, _mode, _id, _id),
    "link": (_str, _str),  # path, target
    "commands": (_str, _commands, _env),  # stage, commands, environment
    "activate": (_str, _strs, _flag, _flag),  # hostname, units, cloud-init, online
    "say": (_str,),
    "state": (_fields,),
}


def _valid_op(op: Any) -> bool:
    if not isinstance(op, list) or not op or not _str(op[0]) or op[0] not in OPS:
        return False
    checks = OPS[op[0]]
    return len(op) == len(checks) + 1 and all(
        check(v) for check, v in zip(checks, op[1:], strict=True))


def _valid_input(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) == 3 and _str(entry[0]) and entry[0] in KINDS
            and _str(entry[1]) and _strs(entry[2]) and 0 < len(entry[2]) <= 2)


def load(paths: AgentPaths) -> tuple[list[list[Any]], list[boot_journal.Op]] | None:
    """RECORD's (inputs, steps), or None when there is none, or it is not one this agent
    wrote (format, shape, size)."""
    rec = read_json(record_path(paths), MAX_RECORD_BYTES)
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        return None
    entries, ops = rec.get("inputs"), rec.get("ops")
    if not (isinstance(entries, list) and 0 < len(entries) <= MAX_INPUTS
            and all(map(_valid_input, entries))):
        return None
    if not (isinstance(ops, list) and all(map(_valid_op, ops))):
        return None
    return entries, ops


def changed(entries: list[list[Any]]) -> str | None:
    """The first input whose digest is none the record allows, else None."""
    for kind, path, allowed in entries:
        if digest(kind, Path(path)) not in allowed:
            return str(path)
    return None


def again(paths: AgentPaths) -> bool | None:
    """Replay the last full boot when nothing it read has changed: False (done, as that
    boot did), or None: the full path must run (no record, an input changed, a step
    failed; each step is idempotent, so the full path rewrites whatever was begun)."""
    started = time.monotonic()
    rec = load(paths)
    if rec is None:
        return None
    entries, ops = rec
    moved = changed(entries)
    if moved:
        print(f"osbuilder-agent: {moved} changed since the last boot: judging the config",
              flush=True)
        return None
    try:
        _do(ops, paths, started)
    except Exception as exc:  # the full path must run whatever went wrong here
        print(f"osbuilder-agent: the last boot's steps failed again ({type(exc).__name__}: "
              f"{str(exc)[:200]}): judging the config", flush=True)
        return None
    return False


def _do(ops: list[boot_journal.Op], paths: AgentPaths, started: float) -> None:
    """The journal's steps, in order (a failed user command is a warning in the state
    record, as on a full boot)."""
    warnings: list[str] = []
    for kind, *a in ops:
        if kind == "write":
            write_atomic(Path(a[0]), base64.b64decode(a[1], validate=True), a[2], a[3], a[4])
        elif kind == "remove":
            remove(Path(a[0]))
        elif kind == "dir":
            ensure_dir(Path(a[0]), a[1], a[2], a[3])
        elif kind == "link":
            symlink(Path(a[0]), a[1])
        elif kind == "commands":
            from osbuilder.node.user_commands import run_commands

            warnings += run_commands(a[0], tuple(c if isinstance(c, str) else tuple(c)
                                                 for c in a[1]), a[2])
        elif kind == "activate":
            from osbuilder.node.activate import start

            start(paths.root, a[0], a[1], a[2], a[3])
        elif kind == "say":
            print(f"osbuilder-agent: {a[0]}", flush=True)
        else:  # state
            write_state(paths, {**a[0], "replayed": True,
                                "warnings": [*a[0].get("warnings", []), *warnings]},
                        time.monotonic() - started)


def write_state(paths: AgentPaths, state: dict[str, Any], seconds: float) -> None:
    """The state record `status` reads: what the boot applied, and its cost."""
    write_json(paths.state_file, {
        **state, "time": int(time.time()), "seconds": round(seconds, 3),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    })
