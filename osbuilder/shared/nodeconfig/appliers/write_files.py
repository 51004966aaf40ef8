"""`write_files`: files written verbatim (already decoded) at every boot, k3OS style."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from osbuilder.shared.errors import OsbError
from osbuilder.shared.file_writes import write_atomic
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import NodeConfig


def target(root: Path, path: str, where: str) -> Path:
    """root/path for a node path, a relative one taken from / as k3OS does
    (rancher/k3os pkg/writefile: path.Join("/", path)); `..` is refused so nothing lands
    outside root."""
    parts = PurePosixPath("/" + path.lstrip("/")).parts
    if ".." in parts or len(parts) < 2:
        raise OsbError(f"{where}: {path!r} is not a file path without '..'")
    return root.joinpath(*parts[1:])


def plan(cfg: NodeConfig, accounts: Accounts, root: Path
         ) -> list[tuple[Path, bytes, int, int, int]]:
    """(destination, content, mode, uid, gid) per entry; raises before anything is written."""
    out = []
    for i, wf in enumerate(cfg.write_files):
        dest = target(root, wf.path, f"write_files[{i}].path")
        try:
            uid, gid = accounts.lookup(wf.owner)
        except OsbError as e:
            raise OsbError(f"write_files[{i}].owner: {e}") from e
        out.append((dest, wf.content, wf.permissions, uid, gid))
    return out


def check(cfg: NodeConfig, accounts: Accounts) -> None:
    """Absolute paths without '..', owners the image has."""
    plan(cfg, accounts, Path("/"))


def apply(cfg: NodeConfig, facts: Facts, root: Path) -> None:
    for dest, content, mode, uid, gid in plan(cfg, Accounts.of_root(root), root):
        write_atomic(dest, content, mode, uid, gid)
