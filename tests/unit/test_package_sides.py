"""The package is split by the machine code runs on (osbuilder.SIDES): the host never
imports the node side, the node never imports the host side, and the shared core imports
neither; the image gets the node side and the shared core only."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import osbuilder
from osbuilder.host.stages.node_package import module_name, node_files

PACKAGE = Path(osbuilder.__file__).resolve().parent
FORBIDDEN = {("host", "node"), ("node", "host"), ("shared", "host"), ("shared", "node")}


def modules() -> dict[str, Path]:
    return {module_name(f.relative_to(PACKAGE)): f for f in sorted(PACKAGE.rglob("*.py"))}


def imported(path: Path) -> set[str]:
    """Every osbuilder module a file names in an import, wherever the import stands
    (inside functions and TYPE_CHECKING blocks too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] == "osbuilder"}


def test_every_module_has_a_side() -> None:
    sides = {osbuilder.side_of(m) for m in modules()}
    assert sides == {"host", "node", "shared"}


def test_imports_respect_the_sides() -> None:
    crossings = [f"{mod} ({osbuilder.side_of(mod)}) imports {name} ({osbuilder.side_of(name)})"
                 for mod, path in modules().items() for name in sorted(imported(path))
                 if (osbuilder.side_of(mod), osbuilder.side_of(name)) in FORBIDDEN]
    assert crossings == []


def test_the_node_side_runs_without_the_host_side() -> None:
    """Import every node module in a fresh interpreter: no host module may come along."""
    node = [m for m in modules() if osbuilder.side_of(m) == "node"]
    code = ("import importlib, json, sys\n"
            f"for m in {node!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('osbuilder'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = json.loads(out)
    assert "osbuilder.node.agent_cli" in loaded
    assert [m for m in loaded if osbuilder.side_of(m) == "host"] == []


def test_the_image_gets_node_and_shared_files_only() -> None:
    files = [str(f) for f in node_files()]
    assert "node/agent_cli.py" in files and "shared/schemas/config.schema.json" in files
    assert "bootloaders/uboot/chooser.py" in files and "bootloaders/uboot/env_file.py" in files
    assert not [f for f in files if f.startswith("host/") or "/build" in f], files
    assert "__main__.py" not in files
    # every node and shared module is there: nothing the node imports is left behind
    wanted = {str(p.relative_to(PACKAGE)) for m, p in modules().items()
              if osbuilder.side_of(m) != "host"}
    assert wanted <= set(files)
