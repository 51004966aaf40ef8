"""Configs judged valid before, recognised without starting the validator (jsonschema's
import alone took 9 s of a first boot under emulation): the node's last good config, and
the verdict the build gave the config it put on the boot partition, which it writes
beside that config for the node's first boot. Either counts only for the very same
merged config under the very same schema."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from osbuilder.shared.schema import load_schema

# On the boot partition, beside config.yaml: a file the image's FAT holds reproducibly
# (mtools), which a config-only rebuild makes anew with the config
BUILD_VERDICT = "config-verdict.json"
# a record is about 150 bytes; the boot partition is anyone's to write, so no more is read
MAX_RECORD_BYTES = 1024
# who judged the config a boot applied (the agent's state record, `status --json`)
VALIDATOR, LAST_GOOD, BUILD = "validator", "last good config", "build"


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@cache
def schema_digest() -> str:
    """Once per process: a boot compares it with both records and writes it with the
    last good config."""
    # imported here, not above: AgentPaths names BUILD_VERDICT, and every agent command
    # (status, grow-data, watch-node) would otherwise load the config model at start
    from osbuilder.shared.nodeconfig.model import SCHEMA

    return digest(load_schema(SCHEMA))


def verdict_record(merged: dict[str, Any]) -> dict[str, str]:
    """What the build writes for a merged config it judged valid: digests only (the
    config itself holds the password and the cluster token)."""
    return {"config": digest(merged), "schema": schema_digest()}


def judged_before(merged: dict[str, Any], last_good: Any, build_verdict: Any) -> str | None:
    """Which record says `merged` was judged valid under this schema: the node's last good
    config, or the build's verdict; None when neither does. Records are read from disk as
    they are: anything malformed counts as no record."""
    schema = schema_digest()
    if isinstance(last_good, dict) and last_good.get("config") == merged \
            and last_good.get("schema") == schema:
        return LAST_GOOD
    if isinstance(build_verdict, dict) and build_verdict == verdict_record(merged):
        return BUILD
    return None
