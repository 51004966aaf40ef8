"""The one config loader: sources in, a typed config plus its problems out.

Every command that judges a node config runs this: `osbuilder validate-config`,
`build --config`, `flash --config`, `serve-pxe --config` on the workstation; `boot`,
`online`, `install` and `validate` of `osbuilder-agent` on the node. So each gives the
same verdict for the same input. Steps, each a wall for the next:
  bytes -> plain data (yaml_input: encoding, size, depth, aliases, key types)
  sources -> one merged mapping (sources: maps merge, lists replace; `nodes:` entries)
  mapping -> schema problems (schema: every bad key at once, secrets never shown)
  mapping -> NodeConfig (model: write_files decoded within limits)
  NodeConfig -> every applier's own check (appliers: what `apply` would refuse)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from osbuilder.shared.errors import ConfigError, OsbError
from osbuilder.shared.nodeconfig import appliers
from osbuilder.shared.nodeconfig.accounts import Accounts
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.limits import MAX_SOURCE_BYTES
from osbuilder.shared.nodeconfig.model import SCHEMA, NodeConfig, parse
from osbuilder.shared.nodeconfig.source_text import Source, parse_source
from osbuilder.shared.nodeconfig.sources import merge_all
from osbuilder.shared.schema import validation_errors

NO_FACTS = Facts(macs=(), wireless=(), serial=None, hostname=None)


@dataclass(frozen=True)
class Problem:
    where: str  # a key path (k3os.wifi[0].passphrase) or a source (its file name)
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Verdict:
    merged: dict[str, Any]  # what the sources said together (JSON-able plain data)
    sources: tuple[str, ...]  # the sources that said anything, in merge order
    problems: tuple[Problem, ...]
    config: NodeConfig | None  # None exactly when there are problems
    warnings: tuple[str, ...] = ()  # keys set aside (unknown to osbuilder and k3OS)

    @property
    def ok(self) -> bool:
        return not self.problems


def problem(exc: OsbError) -> Problem:
    if isinstance(exc, ConfigError):
        return Problem(exc.where, exc.message)
    where, sep, msg = str(exc).partition(": ")  # appliers say "<key path>: <what>"
    return Problem(where, msg) if sep else Problem("(config)", where)


def judge(merged: dict[str, Any], sources: tuple[str, ...] = (),
          accounts: Accounts | None = None) -> Verdict:
    """The verdict on one merged config: schema, then the model, then the appliers."""
    found = validation_errors(merged, SCHEMA)
    if found:
        return Verdict(merged, sources, tuple(Problem(w, m) for w, m in found), None)
    try:
        cfg = parse(merged, validated=True)
    except OsbError as exc:
        return Verdict(merged, sources, (problem(exc),), None)
    checks = appliers.check_all(cfg, accounts or Accounts.image())
    if checks:
        return Verdict(merged, sources, tuple(problem(e) for e in checks), None)
    return Verdict(merged, sources, (), cfg)


def load(sources: list[Source], facts: Facts = NO_FACTS, accounts: Accounts | None = None,
         strict: bool = False) -> Verdict:
    """Merge the sources in order (then the `nodes:` entries that match `facts`) and judge.
    Keys set aside are warnings, or with `strict` problems."""
    merged, used = merge_all(sources, facts)
    warnings = tuple(w for s in sources for w in s.warnings)
    verdict = judge(merged, tuple(used), accounts)
    if strict and warnings:
        extra = tuple(Problem(*w.rsplit(": ", 1)) for w in warnings)
        return replace(verdict, problems=verdict.problems + extra, config=None)
    return replace(verdict, warnings=warnings)


def load_bytes(data: bytes | str, source: str, accounts: Accounts | None = None,
               strict: bool = False) -> Verdict:
    """One config file's verdict, as the node would give it with that file alone."""
    try:
        src = parse_source(data, source)
    except OsbError as exc:
        return Verdict({}, (), (problem(exc),), None)
    return load([src], NO_FACTS, accounts, strict)


def load_file(path: Path, source: str | None = None, accounts: Accounts | None = None,
              strict: bool = False) -> Verdict:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        return Verdict({}, (), (Problem(str(path), f"cannot read it: {exc.strerror}"),), None)
    return load_bytes(data, source or str(path), accounts, strict)


def check_file(path: Path, source: str | None = None, strict: bool = False) -> NodeConfig:
    """The config of a file that must be valid; raises one OsbError listing every problem."""
    return _valid(load_file(path, source, strict=strict), source or str(path))


def check_text(text: bytes | str, source: str, strict: bool = False) -> NodeConfig:
    return _valid(load_bytes(text, source, strict=strict), source)


def _valid(verdict: Verdict, source: str) -> NodeConfig:
    if verdict.config is None:
        raise OsbError(f"invalid config {source}:\n"
                       + "\n".join(f"  at {p}" for p in verdict.problems))
    return verdict.config


def validate_command(path: Path, strict: bool, prog: str) -> NodeConfig:
    """`osbuilder validate-config` and `osbuilder-agent validate`: the same verdict, the
    keys set aside as warnings (as errors with `strict`), one line when good."""
    verdict = load_file(path, strict=strict)
    for w in verdict.warnings:
        print(f"{prog}: warning: {w} (ignored; --strict refuses it)", file=sys.stderr)
    cfg = _valid(verdict, str(path))
    print(f"{path}: ok (role {cfg.k3s.role}"
          + (f", server {cfg.k3s.server_url}" if cfg.k3s.server_url else "") + ")")
    return cfg
