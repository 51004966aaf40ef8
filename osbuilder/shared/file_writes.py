"""Small filesystem helpers of the node agent: its appliers and its own records.

Every helper is idempotent and reports whether it changed anything, so that a second
`boot` in the same session touches no file (mtimes stay as they were) and the
orchestrator can tell what a config change actually did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from osbuilder.shared.boot_journal import note

HEADER = "# Written by osbuilder-agent from config.yaml at every boot: edit config.yaml instead.\n"


def _chown_wanted() -> bool:
    # The agent runs as root on the node; unit tests run unprivileged and cannot chown.
    return os.geteuid() == 0


def _same(path: Path, data: bytes, mode: int, uid: int, gid: int) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if not path.is_file() or path.is_symlink():
        return False
    if (st.st_mode & 0o7777) != mode:
        return False
    if _chown_wanted() and (st.st_uid, st.st_gid) != (uid, gid):
        return False
    return st.st_size == len(data) and path.read_bytes() == data


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644, uid: int = 0,
                 gid: int = 0) -> bool:
    """Replace `path` with `data` in one step; True if content, mode or owner changed."""
    raw = data.encode() if isinstance(data, str) else data
    note("write", str(path), raw, mode, uid, gid)
    if _same(path, raw, mode, uid, gid):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temp file lives beside the target so os.replace is a same-filesystem rename:
    # a power cut leaves either the old or the new file, never a truncated one.
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), mode)
            if _chown_wanted():
                os.fchown(f.fileno(), uid, gid)
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself, not only the data, survives a power cut
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new file beside path, 0600, for write_atomic. O_EXCL: nothing already there is
    opened or followed (a symlink planted in a user's ~/.ssh). Not tempfile.mkstemp: its
    import (shutil, random, bz2, lzma) cost the agent 0.2 s per boot under emulation."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for n in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{n}.tmp")
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path.parent}: no free name for a temporary file beside "
                          f"{path.name}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> bool:
    """Remove a file or symlink; True if there was one."""
    note("remove", str(path))
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def write_or_remove(path: Path, data: bytes | str | None, mode: int = 0o644) -> bool:
    """Write `data`, or remove the file when there is nothing to say; True if changed."""
    return write_atomic(path, data, mode) if data is not None else remove(path)


def ensure_dir(path: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> bool:
    """Make `path` a real directory with this mode and owner; True if anything changed."""
    note("dir", str(path), mode, uid, gid)
    changed = False
    # A symlink here could redirect root's writes (e.g. ~/.ssh planted by the user).
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
        changed = True
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir()
        changed = True
    st = path.stat()
    if (st.st_mode & 0o7777) != mode:
        path.chmod(mode)
        changed = True
    if _chown_wanted() and (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid)
        changed = True
    return changed


def symlink(path: Path, target: str) -> bool:
    """Make `path` a symlink to `target` (as systemctl enable does); True if changed."""
    note("link", str(path), target)
    if path.is_symlink() and os.readlink(path) == target:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, path)
    return True


def lookup_ids(root: Path, owner: str) -> tuple[int, int]:
    """(uid, gid) of "user[:group]" as root/etc/passwd and root/etc/group say."""
    from osbuilder.shared.nodeconfig.accounts import Accounts

    return Accounts.of_root(root).lookup(owner)


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    """The agent's records (last good config, state): atomic and not rewritten when
    unchanged, as write_atomic does."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path, max_bytes: int | None = None) -> Any:
    """A JSON file's data, or None when it is missing, unreadable, not JSON, nested
    deeper than the parser goes, or longer than max_bytes (a file others can write)."""
    try:
        with path.open("rb") as f:
            raw = f.read() if max_bytes is None else f.read(max_bytes + 1)
        if max_bytes is not None and len(raw) > max_bytes:
            return None
        return json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return None
