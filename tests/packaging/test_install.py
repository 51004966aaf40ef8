"""osbuilder as a user installs it, outside the checkout: a wheel built from a copy of the
tracked files carries every data file (boards, overlays with their executable bits, DIB
elements, schemas, the licence), installs into a fresh venv in a temp folder, and its
commands work there; `make install` puts a working `osbuilder` on a PATH."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tracked_copy(dest: Path) -> Path:
    # tracked files and new ones not ignored: what a commit of this tree would hold
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def pip(*args: str, cwd: Path, python: str = sys.executable) -> None:
    r = subprocess.run([python, "-m", "pip", "-q", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=900)
    if r.returncode != 0 and ("Could not find a version" in r.stderr
                              or "NewConnectionError" in r.stderr):
        pytest.skip(f"PyPI unreachable, cannot fetch setuptools or the dependencies: "
                    f"missing capability ({r.stderr.strip().splitlines()[-1]})")
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: cannot list the tracked files (missing capability)")
    src = tracked_copy(tmp_path_factory.mktemp("src"))
    dist = tmp_path_factory.mktemp("dist")
    pip("wheel", "--no-deps", "-w", str(dist), str(src), cwd=dist)
    [whl] = dist.glob("osbuilder-*.whl")
    print(f"\nwheel {whl.name}: {whl.stat().st_size / 1e3:.0f} kB")
    return whl


def test_wheel_carries_every_data_file_with_its_mode(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        infos = {i.filename: i for i in z.infolist()}
    package = ROOT / "osbuilder"
    for f in sorted(package.rglob("*")):
        if not f.is_file() or "__pycache__" in f.parts or f.suffix == ".pyc":
            continue
        name = f.relative_to(ROOT).as_posix()
        assert name in infos, f"{name} missing from the wheel"
        if f.stat().st_mode & stat.S_IXUSR:
            assert (infos[name].external_attr >> 16) & stat.S_IXUSR, f"{name} lost its x bit"
    assert any(n.endswith("licenses/LICENSE") for n in infos)
    assert "osbuilder/host/overlays/common/usr/lib/osbuilder/rauc-bootloader-backend" in infos


def test_installed_commands_work_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip("install", str(wheel), cwd=tmp_path, python=str(venv / "bin/python"))
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}

    def osb(*args: str) -> str:
        r = subprocess.run([str(venv / "bin/osbuilder"), *args], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        return r.stdout

    site = subprocess.run([str(venv / "bin/python"), "-c", "import osbuilder; print("
                           "osbuilder.__file__)"], cwd=tmp_path, capture_output=True, text=True,
                          check=True).stdout
    assert site.startswith(str(venv)) and not site.startswith(str(ROOT))
    boards = osb("boards")
    assert len(boards.splitlines()) == 9 and "qemu-amd64" in boards and "rpi5" in boards
    assert "arch: arm64" in osb("show-board", "rpi-arm64")
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: n1\nk3os:\n  password: pw\n")
    assert osb("validate-config", str(cfg)) == f"{cfg}: ok (role server)\n"
    assert '"$id": "https://osbuilder.io/schemas/config.schema.json"' in osb("schema", "config")
    assert osb("--version").startswith("osbuilder 0.")
    agent = subprocess.run([str(venv / "bin/osbuilder-agent"), "--version"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert agent.returncode == 0 and agent.stdout.startswith("osbuilder-agent 0.")


def test_make_install_links_a_working_osbuilder(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("make missing: cannot run `make install` (missing capability)")
    venv_osb = ROOT / ".venv/bin/osbuilder"
    if not venv_osb.exists():
        pytest.skip("no .venv in the checkout (run `make venv`): nothing to link")
    prefix, completions = tmp_path / "prefix", tmp_path / "completions"
    (prefix / "bin").mkdir(parents=True)
    completions.mkdir()
    r = subprocess.run(["make", "-s", "install", f"PREFIX={prefix}",
                        f"BASH_COMPLETION_DIR={completions}"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    link = prefix / "bin/osbuilder"
    assert os.readlink(link) == str(venv_osb)
    assert "complete " in (completions / "osbuilder").read_text()  # bash's `complete -F`
    # as sudo would run it: secure_path only, from another folder
    out = subprocess.run([str(link), "boards"], cwd=tmp_path, capture_output=True, text=True,
                         env={"PATH": f"{prefix / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"},
                         timeout=60)
    assert out.returncode == 0 and "qemu-amd64" in out.stdout
