"""sha256_file hashes a sparse file's holes from a zero buffer: the digest must be the one
of the file's bytes, wherever the holes are (start, middle, end, none, all)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from osbuilder.host.download import CHUNK, sha256_file

# (gap before, data length) pairs; gaps of a few MiB make real holes (4 KiB blocks)
SEGMENTS = st.lists(st.tuples(st.integers(0, 3 * CHUNK), st.binary(min_size=0, max_size=9000)),
                    max_size=5)


@settings(max_examples=60, deadline=None)
@given(SEGMENTS, st.integers(0, 2 * CHUNK))
def test_digest_is_the_files_bytes_digest(segments: list[tuple[int, bytes]], tail: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sparse.img"
        with path.open("wb") as f:
            for gap, data in segments:
                f.seek(gap, os.SEEK_CUR)
                f.write(data)
            f.truncate(f.tell() + tail)  # a hole up to the end
        assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_empty_and_all_hole_files(tmp_path: Path) -> None:
    empty, hole = tmp_path / "empty", tmp_path / "hole"
    empty.write_bytes(b"")
    with hole.open("wb") as f:
        f.truncate(5 * CHUNK + 7)
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
    assert sha256_file(hole) == hashlib.sha256(bytes(5 * CHUNK + 7)).hexdigest()
