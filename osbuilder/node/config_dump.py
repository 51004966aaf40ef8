"""`osbuilder-agent config --dump`: the merged config the node would apply, as YAML, each
value with the source it came from; secrets (the schema's x-osb-secret keys) masked.
k3OS's `k3os config --dump` printed the merged config too (rancher/k3os
pkg/cli/config/config.go), without sources and with secrets in clear."""

from __future__ import annotations

from typing import Any

import yaml

from osbuilder.node import configure
from osbuilder.node.paths import AgentPaths
from osbuilder.shared.nodeconfig.facts import Facts
from osbuilder.shared.nodeconfig.model import SCHEMA
from osbuilder.shared.nodeconfig.source_text import Origins
from osbuilder.shared.nodeconfig.sources import merge_all
from osbuilder.shared.schema import secret_keys

MASK = "(secret)"
COMMENT_COLUMN = 48


def dump(paths: AgentPaths, facts: Facts) -> str:
    sources, unreadable, _ = configure.collect(paths)
    origins: Origins = {}
    merged, _ = merge_all(sources, facts, origins)
    lines = [f"# unreadable source, not merged: {p}" for p in unreadable]
    lines += [f"# warning: {w}, ignored" for s in sources for w in s.warnings]
    lines += render(merged, origins, secret_keys(SCHEMA))
    return "\n".join(lines) + "\n" if lines else "{}\n"


def render(value: dict[str, Any], origins: Origins, secrets: frozenset[str],
           at: tuple[str, ...] = (), indent: str = "") -> list[str]:
    out = []
    for key, v in value.items():
        path = (*at, key)
        secret = key in secrets or any(p in secrets for p in at)
        if isinstance(v, dict) and v:
            out.append(f"{indent}{_scalar(key)}:")
            out += render(v, origins, secrets, path, indent + "  ")
            continue
        shown = MASK if secret else v
        source = origins.get(path, "")
        if isinstance(shown, list) and shown:
            out.append(_with(f"{indent}{_scalar(key)}:", source))
            for item in shown:
                text = yaml.safe_dump(item, default_flow_style=True, width=10**6).strip()
                out.append(f"{indent}- {text.removesuffix('...').strip()}")
        else:
            out.append(_with(f"{indent}{_scalar(key)}: {_scalar(shown)}", source))
    return out


def _scalar(v: Any) -> str:
    return str(yaml.safe_dump(v, default_flow_style=True, width=10**6)).strip() \
        .removesuffix("...").strip()


def _with(line: str, source: str) -> str:
    return f"{line:{COMMENT_COLUMN}} # {source}" if source else line
