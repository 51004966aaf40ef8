"""write_files: decoded content, owner and mode, under the node root."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import pytest

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.appliers import write_files as files
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import parse
from tests.unit.test_apply_fs import IS_ROOT, make_root, mode

FACTS = Facts(macs=(), wireless=(), serial=None, hostname=None)
DATA = b"line one\nline two \xe2\x9c\x93\n"


def test_encodings_owner_and_mode(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    b64 = base64.b64encode(DATA).decode()
    gz_b64 = base64.b64encode(gzip.compress(DATA)).decode()
    cfg = parse({"write_files": [
        {"path": "/etc/plain.conf", "content": "plain\n"},
        {"path": "/opt/app/b64.bin", "content": b64, "encoding": "b64",
         "owner": "osb:osb", "permissions": "0600"},
        {"path": "/var/lib/gz.txt", "content": gz_b64, "encoding": "gz+b64",
         "permissions": "0755"},
        {"path": "/var/lib/gzip.txt", "content": gz_b64, "encoding": "gzip+base64",
         "owner": "root:sudo", "permissions": "640"},
    ]})
    files.apply(cfg, FACTS, root)
    assert (root / "etc/plain.conf").read_text() == "plain\n"
    assert mode(root / "etc/plain.conf") == 0o644
    assert (root / "opt/app/b64.bin").read_bytes() == DATA
    assert mode(root / "opt/app/b64.bin") == 0o600
    assert (root / "var/lib/gz.txt").read_bytes() == DATA
    assert mode(root / "var/lib/gz.txt") == 0o755
    assert (root / "var/lib/gzip.txt").read_bytes() == DATA
    assert mode(root / "var/lib/gzip.txt") == 0o640
    if IS_ROOT:
        st = (root / "opt/app/b64.bin").stat()
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        assert (root / "var/lib/gzip.txt").stat().st_gid == 27


def test_unknown_owner_names_the_entry_and_writes_nothing(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    cfg = parse({"write_files": [{"path": "/etc/a", "content": "a"},
                                 {"path": "/etc/b", "content": "b", "owner": "alice"}]})
    with pytest.raises(OsbError, match=r"write_files\[1\]\.owner: owner 'alice'"):
        files.apply(cfg, FACTS, root)
    assert not (root / "etc/a").exists()


def test_dotdot_cannot_escape_the_root(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    cfg = parse({"write_files": [{"path": "/etc/../../escape", "content": "x"}]})
    with pytest.raises(OsbError, match=r"write_files\[0\]\.path: '/etc/\.\./\.\./escape'"):
        files.apply(cfg, FACTS, root)
    assert not (tmp_path / "escape").exists()
