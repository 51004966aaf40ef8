"""The node agent's modules as one zip (part of stage node-package): the osbuilder package
and the standard-library modules and packages that `osbuilder-agent boot` imports, as
byte-code, first on the agent's sys.path (its entry script).

Why: `boot` runs before the login prompt on every boot, while udev's coldplug and early
units keep the CPU busy. Each module it imports from the squashfs root is a file of its
own: a read that blocks and waits for its turn again. Measured with `-X importtime` in a
later boot under TCG (docs/benchmarks.md), a module read from its own file cost 50-100 ms,
a frozen or built-in one 1-10 ms, and the agent's imports took 9 of its 12 s. Read from one
zip, the archive is read once and each module comes out of the page cache.

What goes in: every top-level package or module that importing the boot path loads (asked
of the image's own python3, in the root), whole packages, so that a module imported later
(`online`, another config) is found in its package too. Left out: extension modules
(a zip cannot hold them) and packages that hold one (PyYAML's `yaml._yaml`), which stay
on the normal path. The byte-code is the image's own pycs (unchecked-hash: stage
node-package), written in a fixed order with fixed metadata: the same root gives the
same bytes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from pathlib import Path

ZIP = "usr/lib/osbuilder/agent-modules.zip"
# what `osbuilder-agent boot` imports (agent_cli.boot_command), those it imports inside a
# function too; a module missing here still loads, from its own file
BOOT_MODULES = ("osbuilder.node.agent_cli", "osbuilder.node.configure",
                "osbuilder.node.first_login", "osbuilder.node.machine_id",
                "osbuilder.shared.nodeconfig.facts", "osbuilder.node.status",
                "osbuilder.node.sd_notify", "osbuilder.node.replay", "socket")
# The agent's interpreter (its entry script, and the listing below): isolated (-I), and
# without the site module (-S): site's imports took 36.8 ms of `python3 -I -c pass` in a
# booted image under TCG (-X importtime), beside ~390 ms for a whole `osbuilder-agent
# status`. Of the folders site adds, the agent needs Debian's python3-* packages (its own
# package among them): added by hand.
PYTHON_FLAGS = "-IS"
DIST_PACKAGES = "/usr/lib/python3/dist-packages"
# run in the root by its python3 as the agent runs: its pyc tag, then each module the
# boot path loads beyond the interpreter's own start, with the file it came from
LIST_SCRIPT = f"""
import sys
sys.path.append({DIST_PACKAGES!r})
before = set(sys.modules)
for name in {BOOT_MODULES!r}:
    __import__(name)
print(sys.implementation.cache_tag)
for name in sorted(set(sys.modules) - before):
    spec = getattr(sys.modules[name], "__spec__", None)
    if spec is not None and spec.has_location and "." not in name:
        print(name, spec.origin)
"""
# the zip format's earliest date: every entry the same
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def parse_listing(text: str) -> tuple[str, list[tuple[str, str]]]:
    """LIST_SCRIPT's output -> (pyc tag, [(top-level module, its file in the image)])."""
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ValueError("the image's python3 printed no pyc tag")
    mods = []
    for line in lines[1:]:
        name, _, origin = line.partition(" ")
        if origin:
            mods.append((name, origin))
    return lines[0].strip(), mods


def pyc_of(source: Path, tag: str) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"


def _entry(source: Path, arcname: str, tag: str) -> tuple[str, Path]:
    """A module's byte-code if it was compiled, else its source (zipimport compiles it)."""
    pyc = pyc_of(source, tag)
    return (f"{arcname}.pyc", pyc) if pyc.is_file() else (f"{arcname}.py", source)


def entries(root: Path, modules: Iterable[tuple[str, str]], tag: str
            ) -> list[tuple[str, Path]]:
    """(name in the zip, file in the root) for the listed top-level modules, sorted."""
    out: dict[str, Path] = {}
    for name, origin in modules:
        source = root / origin.lstrip("/")
        if source.name == "__init__.py":  # a package: all of it, or nothing
            pkg = source.parent
            files = sorted(f for f in pkg.rglob("*")
                           if f.is_file() and "__pycache__" not in f.relative_to(pkg).parts)
            if any(f.suffix == ".so" for f in files):
                continue
            for f in files:
                arc = f"{name}/{f.relative_to(pkg).as_posix()}"
                if f.suffix == ".py":
                    k, v = _entry(f, arc.removesuffix(".py"), tag)
                    out[k] = v
                else:  # data beside the modules (osbuilder's schemas)
                    out[arc] = f
        elif source.suffix == ".py":
            k, v = _entry(source, name, tag)
            out[k] = v
    return sorted(out.items())


def write_zip(dest: Path, files: list[tuple[str, Path]]) -> None:
    """Stored, not deflated: the squashfs compresses the root, and zipimport would
    otherwise inflate each module at every start."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as z:
        for arcname, path in files:
            info = zipfile.ZipInfo(arcname, ZIP_DATE)
            info.create_system = 3  # Unix, whatever the build host
            info.external_attr = 0o644 << 16
            z.writestr(info, path.read_bytes())
