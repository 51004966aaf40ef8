"""The records that let a node skip the validator (osbuilder/shared/nodeconfig/judged.py):
each counts only for the very same config under the very same schema, and a record read
from disk in any shape is no record rather than a crash."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from osbuilder.shared.file_writes import read_json
from osbuilder.shared.nodeconfig.judged import (
    BUILD,
    LAST_GOOD,
    MAX_RECORD_BYTES,
    judged_before,
    schema_digest,
    verdict_record,
)
from tests.fuzz.strategies import plain

CONFIG: dict[str, Any] = {"hostname": "n1", "k3os": {"password": "pw"}}


def test_each_record_counts_for_its_own_config_and_schema() -> None:
    last = {"config": CONFIG, "schema": schema_digest(), "sources": ["boot"]}
    assert judged_before(CONFIG, last, None) == LAST_GOOD
    assert judged_before(CONFIG, None, verdict_record(CONFIG)) == BUILD
    assert judged_before(CONFIG, last, verdict_record(CONFIG)) == LAST_GOOD
    other = {**CONFIG, "hostname": "n2"}
    assert judged_before(other, last, verdict_record(CONFIG)) is None
    assert judged_before(CONFIG, {**last, "schema": "0" * 64}, None) is None
    assert judged_before(CONFIG, None, {**verdict_record(CONFIG), "schema": "0" * 64}) is None
    assert judged_before(CONFIG, None, {**verdict_record(CONFIG), "extra": "x"}) is None


def test_the_build_record_holds_digests_only() -> None:
    record = verdict_record(CONFIG)
    assert set(record) == {"config", "schema"}
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in record.values())
    assert "pw" not in str(record)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(plain, plain)
def test_a_record_of_any_shape_is_no_record(last: Any, build: Any) -> None:
    assert judged_before(CONFIG, last, build) is None


def test_the_build_record_is_read_within_its_bound(tmp_path: Path) -> None:
    """The record lies on the boot partition, which anyone with the card can write: a file
    too long or nested too deep is no record, never an agent error."""
    f = tmp_path / "config-verdict.json"
    record = verdict_record(CONFIG)
    f.write_text(json.dumps(record))
    assert read_json(f, MAX_RECORD_BYTES) == record
    f.write_text(json.dumps({**record, "pad": "x" * MAX_RECORD_BYTES}))
    assert read_json(f, MAX_RECORD_BYTES) is None
    f.write_text("[" * 100_000)
    assert read_json(f) is None and read_json(f, MAX_RECORD_BYTES) is None


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=2 * MAX_RECORD_BYTES))
def test_any_bytes_read_as_a_record_give_data_or_none(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "config-verdict.json"
        f.write_bytes(data)
        got = read_json(f, MAX_RECORD_BYTES)
        assert got is None or len(data) <= MAX_RECORD_BYTES
        assert judged_before(CONFIG, None, got) in (None, BUILD)
