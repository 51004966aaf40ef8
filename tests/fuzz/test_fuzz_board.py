"""Property-based fuzzing of the board loader (issue 15): any bytes in a board file give a
Board or one OsbError naming the file, never a traceback, within 2 s."""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given

from osbuilder.host.boards import load_board_file
from osbuilder.shared.errors import OsbError
from tests.fuzz.strategies import board_bytes
from tests.fuzz.tally import Tally, rss_mib


def test_board_loader_gives_a_board_or_one_clear_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally("board loader")

    @given(board_bytes())
    def one(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            # named as the board says, so a good one gets past the name check
            named = re.search(rb"^name: ([a-z0-9][a-z0-9-]{0,40})$", data, re.M)
            path = Path(tmp) / f"{named.group(1).decode() if named else 'fuzz-board'}.yaml"
            path.write_bytes(data)
            t0 = time.monotonic()
            try:
                load_board_file(path)
                ok = True
            except OsbError as exc:
                assert str(path) in str(exc) or "board" in str(exc), str(exc)
                assert "Traceback" not in str(exc)
                ok = False
            tally.timed(len(data), t0, ok)

    one()
    assert rss_mib() - tally.rss_before < 256
    with capsys.disabled():
        print("\n" + tally.line())
