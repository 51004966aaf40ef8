"""The fleet at 10 and 100 nodes (`make test`) and 1,000 (`make test-all`, marked slow):
the scenario of tests/helpers/fleet_scale.py, checked by tests/helpers/fleet_checks.py
(order, concurrency, window, halt within one node of maxFailures, end state, least
privilege, metrics), and the targets for fleet scale, the same at every size:

- controller writes per node per upgrade under one constant (cordon, request, uncordon,
  the evictions of its two pods, three events, and its share of status writes);
- status writes as big as the nodes in flight, not as the fleet;
- no relist (bookmarks keep reconnects cheap);
- controller peak RSS <= 60 MiB and a planner pass <= 100 ms of CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.fleet_scale import run

# per node: cordon, request, uncordon (3), evicting its two pods (2), three events (3),
# and its share of status writes: at most one per change of its record (about 4 at 10
# nodes, a fraction at 1,000 where one write carries many nodes' changes)
WRITES_PER_NODE = 12.0
RECORD_BYTES = 400  # one listed node in the status, generously


@pytest.mark.parametrize("n", [10, 100, pytest.param(1000, marks=pytest.mark.slow)])
def test_rollout_at_fleet_scale(n: int, tmp_path: Path) -> None:
    f = run(n, tmp_path)
    print(f"\n{n} nodes: {json.dumps(f)}")
    assert f["controller_writes_per_node"] <= WRITES_PER_NODE, f
    # three per node; a rollout's few (phases, failures); drains given up at the halt
    # (a tenth of the fleet in flight) and claimed again cost two more each
    assert f["controller_writes_per_node_by_kind"]["events"] <= 3.25 + 10 / n, f
    assert f["watcher_writes_per_node"] <= 6, f
    in_flight = f["concurrency"] + f["max_failures"] + 2
    assert f["status_write_max_bytes"] <= 3000 + RECORD_BYTES * in_flight, f
    assert f["watches_expired_410"] == 0 and f["controller_list_requests"] == 0, f
    assert f["controller_peak_rss_mib"] <= 60, f
    assert f["planner_ms_max"] <= 100, f
