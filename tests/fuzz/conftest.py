"""Fuzzing budget: 2,000 examples per property in `make test`, OSB_FUZZ_EXAMPLES (20,000
in `make test-all`) otherwise; a fixed seed, so a run is repeatable."""

from __future__ import annotations

import os
from datetime import timedelta

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("OSB_FUZZ_EXAMPLES", "2000"))
settings.register_profile(
    "osbuilder", max_examples=EXAMPLES, derandomize=True, deadline=timedelta(seconds=2),
    database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.load_profile("osbuilder")
