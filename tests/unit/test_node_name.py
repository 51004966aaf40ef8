"""The node's name is one fact (issue 15): k3s's node-name when set, else the host name
lower-cased, as k3s registers it (k3s pkg/agent/config getHostnameAndIPs)."""

from __future__ import annotations

from pathlib import Path

from osbuilder.node.node_name import node_name


def test_node_name_is_k3s_node_name_else_the_lowercased_hostname(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    assert node_name(cfg, hostname="Edge-9") == "edge-9"
    cfg.write_text("token: x\nnode-name: rack1-n3\n")
    assert node_name(cfg, hostname="Edge-9") == "rack1-n3"
    cfg.write_text("node-name: [a, b]\n")  # a repeated flag in config-file form
    assert node_name(cfg, hostname="h") == "b"
    cfg.write_text("node-name: [unclosed\n")
    assert node_name(cfg, hostname="h") == "h"
