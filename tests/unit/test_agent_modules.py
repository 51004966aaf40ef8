"""The agent's module zip (osbuilder/host/stages/agent_modules.py): what goes in, the same
bytes every time, and an agent that runs from it: its modules, its data files (schemas,
k3s flags) and a C extension left on the normal path."""

from __future__ import annotations

import subprocess
import sys
import tokenize
import zipfile
from pathlib import Path

import pytest

import osbuilder
from osbuilder.host.stages import agent_modules as am
from osbuilder.host.stages.node_package import NODE_SIDES, module_name

TAG = "cpython-313"


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_entries_take_whole_packages_and_leave_extensions_out(tmp_path: Path) -> None:
    lib = tmp_path / "usr/lib/python3.13"
    touch(lib / "json/__init__.py")
    touch(lib / "json/__pycache__/__init__.cpython-313.pyc", b"pyc-init")
    touch(lib / "json/decoder.py")  # never compiled: the source goes in
    touch(lib / "json/tool/__init__.py")
    touch(lib / "json/tool/__pycache__/__init__.cpython-313.pyc", b"pyc-tool")
    touch(lib / "json/__pycache__/stale.cpython-312.pyc")  # another tag: not ours
    touch(lib / "typing.py")
    touch(lib / "__pycache__/typing.cpython-313.pyc", b"pyc-typing")
    site = tmp_path / "usr/lib/python3/dist-packages"
    touch(site / "osbuilder/__init__.py")
    touch(site / "osbuilder/__pycache__/__init__.cpython-313.pyc", b"pyc-osb")
    touch(site / "osbuilder/shared/schemas/config.schema.json", b"{}")
    touch(site / "yaml/__init__.py")
    touch(site / "yaml/_yaml.cpython-313-x86_64-linux-gnu.so")
    listing = (f"{TAG}\njson /usr/lib/python3.13/json/__init__.py\n"
               "typing /usr/lib/python3.13/typing.py\n"
               "osbuilder /usr/lib/python3/dist-packages/osbuilder/__init__.py\n"
               "yaml /usr/lib/python3/dist-packages/yaml/__init__.py\n"
               "math /usr/lib/python3.13/lib-dynload/math.cpython-313-x86_64-linux-gnu.so\n")
    tag, mods = am.parse_listing(listing)
    got = {name: path.read_bytes() for name, path in am.entries(tmp_path, mods, tag)}
    assert got == {"json/__init__.pyc": b"pyc-init", "json/decoder.py": b"x",
                   "json/tool/__init__.pyc": b"pyc-tool", "typing.pyc": b"pyc-typing",
                   "osbuilder/__init__.pyc": b"pyc-osb",
                   "osbuilder/shared/schemas/config.schema.json": b"{}"}


def test_a_listing_without_the_tag_is_refused() -> None:
    with pytest.raises(ValueError, match="pyc tag"):
        am.parse_listing("")


def test_the_same_files_give_the_same_bytes(tmp_path: Path) -> None:
    a = touch(tmp_path / "a.pyc", b"A")
    b = touch(tmp_path / "b.pyc", b"B")
    am.write_zip(tmp_path / "1.zip", [("a.pyc", a), ("b.pyc", b)])
    a.touch()  # a newer mtime changes nothing
    am.write_zip(tmp_path / "2.zip", [("a.pyc", a), ("b.pyc", b)])
    assert (tmp_path / "1.zip").read_bytes() == (tmp_path / "2.zip").read_bytes()
    info = zipfile.ZipFile(tmp_path / "1.zip").getinfo("a.pyc")
    assert info.compress_type == zipfile.ZIP_STORED and info.date_time == am.ZIP_DATE


def test_the_agent_runs_from_the_zip(tmp_path: Path) -> None:
    """Built from this checkout's package and this Python's standard library, the way the
    build does it in the image's root (here the root is /), then imported with the zip first
    on sys.path as the agent's entry script puts it."""
    checkout = str(Path(osbuilder.__file__).resolve().parent.parent)
    listing = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {checkout!r})\n"
         + am.LIST_SCRIPT], capture_output=True, text=True, check=True).stdout
    tag, mods = am.parse_listing(listing)
    assert "osbuilder" in dict(mods) and "dataclasses" in dict(mods), listing
    dest = tmp_path / "agent-modules.zip"
    am.write_zip(dest, am.entries(Path("/"), mods, tag))
    code = (f"import sys; sys.path.insert(0, {str(dest)!r})\n"
            "import json, yaml, osbuilder.node.agent_cli, osbuilder.node.configure\n"
            "from osbuilder.shared.schema import load_schema\n"
            "from osbuilder.shared.nodeconfig.k3s_args import flags\n"
            "print(osbuilder.__file__, json.__file__, yaml.__file__)\n"
            "print('properties' in load_schema('config.schema.json'), 'node-name' in flags())\n")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == f"{dest}/osbuilder/__init__.pyc", out
    assert out[1].startswith(f"{dest}/json/"), out
    assert not out[2].startswith(str(dest)), out  # PyYAML holds a C extension
    assert out[3:] == ["True", "True"], out  # data files read from the zip


def test_node_code_makes_no_path_from_its_file() -> None:
    """On a node these modules are imported from the zip, where `__file__` is a name inside
    the archive, not a file: data beside a module is read with package_data.read_beside."""
    package = Path(osbuilder.__file__).resolve().parent

    def uses_file(source: Path) -> bool:  # the name in code, not in a docstring
        with source.open("rb") as f:
            return any(t.type == tokenize.NAME and t.string == "__file__"
                       for t in tokenize.tokenize(f.readline))

    found = [str(f.relative_to(package)) for f in sorted(package.rglob("*.py"))
             if osbuilder.side_of(module_name(f.relative_to(package))) in NODE_SIDES
             and uses_file(f)]
    assert found == [], f"node or shared modules that use __file__: {found}"
