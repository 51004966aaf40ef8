"""The records that let a node skip the validator (osbuilder/shared/nodeconfig/judged.py):
each counts only for the very same config under the very same schema, and a record read
from disk in any shape is no record rather than a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

from osbuilder.shared.nodeconfig.judged import (
    BUILD,
    LAST_GOOD,
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
