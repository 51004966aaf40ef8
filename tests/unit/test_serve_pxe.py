"""`osbuilder serve-pxe`: run as a user would, fetched over HTTP on 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

NAME = "osbuilder-qemu-amd64-1.0.0-pxe"


@contextmanager
def serving(folder: Path, *args: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "osbuilder", "serve-pxe", str(folder),
                             "--bind", "127.0.0.1", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.search(r"on 127\.0\.0\.1:(\d+);", first)
        assert m, first + (proc.stderr.read() if proc.stderr else "")
        yield f"http://127.0.0.1:{m.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return bytes(r.read())


def pxe_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    (d / f"{NAME}.ipxe").write_text("#!ipxe\n")
    (d / f"{NAME}.squashfs").write_bytes(b"hsqs" + bytes(range(256)) * 64)
    return d


def test_serves_files_boot_script_and_config(tmp_path: Path) -> None:
    d = pxe_dir(tmp_path)
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: pxe-node\n")
    with serving(d, "--url", "http://10.0.2.100:8080", "--config", str(cfg),
                 "--args", "osb.install.device=/dev/sda") as base:
        assert get(f"{base}/boot.ipxe").decode() == (
            "#!ipxe\n# written by osbuilder serve-pxe\nset osb_url http://10.0.2.100:8080\n"
            "set osb_args osb.config_url=http://10.0.2.100:8080/config.yaml "
            "osb.config_url_allow_http=1 osb.install.device=/dev/sda\n"
            f"chain ${{osb_url}}/{NAME}.ipxe\n")
        assert get(f"{base}/config.yaml") == b"hostname: pxe-node\n"
        assert get(f"{base}/{NAME}.squashfs") == (d / f"{NAME}.squashfs").read_bytes()
        for missing in ("/", "/nope.ipxe", "/../etc/passwd"):
            with pytest.raises(urllib.error.HTTPError) as exc:
                get(base + missing)
            assert exc.value.code == 404


def test_plain_boot_script_keeps_the_builds_defaults(tmp_path: Path) -> None:
    with serving(pxe_dir(tmp_path), "--url", "http://pxe.lan:8080/") as base:
        script = get(f"{base}/boot.ipxe").decode()
    assert "set osb_url http://pxe.lan:8080\n" in script
    assert "osb_args" not in script


def test_bad_input_is_named(tmp_path: Path) -> None:
    def osb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "osbuilder", "serve-pxe", *args],
                              capture_output=True, text=True, timeout=30)

    r = osb(str(tmp_path / "none"))
    assert r.returncode == 2 and "serve-pxe" in r.stderr and "no such directory" in r.stderr
    (tmp_path / "empty").mkdir()
    r = osb(str(tmp_path / "empty"))
    assert r.returncode == 2 and "no *-pxe.ipxe script (build with --format pxe)" in r.stderr
    d = pxe_dir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("k3os:\n  labels: [red]\n")
    r = osb(str(d), "--config", str(bad), "--port", "0")
    assert r.returncode == 2 and "k3os.labels" in r.stderr, r.stderr
