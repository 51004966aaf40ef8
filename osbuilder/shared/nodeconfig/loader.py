"""The node's verdict on a config file, wherever it is asked: `osbuilder validate-config`,
`build --config`, `flash --config`, `serve-pxe --config` on the workstation and
`osbuilder-agent validate` on the node run this same check."""

from __future__ import annotations

from pathlib import Path

from osbuilder.shared.errors import OsbError
from osbuilder.shared.nodeconfig.model import NodeConfig, parse
from osbuilder.shared.nodeconfig.sources import load_yaml_mapping


def check_text(text: str, source: str) -> NodeConfig:
    """YAML, k3OS spellings, schema; raises OsbError naming every bad key."""
    return parse(load_yaml_mapping(text, source), source)


def check_file(path: Path, source: str | None = None) -> NodeConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise OsbError(f"{path}: {exc.strerror}") from exc
    return check_text(text, source or str(path))


def verdict(path: Path) -> str:
    """The one-line answer of the validate commands for a good file."""
    cfg = check_file(path)
    return (f"{path}: ok (role {cfg.k3s.role}"
            + (f", server {cfg.k3s.server_url}" if cfg.k3s.server_url else "") + ")")
