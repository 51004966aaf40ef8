"""`osbuilder serve-pxe`: run as a user would, fetched over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from osbuilder.host.pxe_http import byte_range
from osbuilder.shared.errors import ExitCode

NAME = "osbuilder-qemu-amd64-1.0.0-pxe"
SQUASHFS = b"hsqs" + bytes(range(256)) * 64


@contextmanager
def serving(folder: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """serve-pxe on its default address (127.0.0.1), a free port; (base URL, process)."""
    proc = subprocess.Popen([sys.executable, "-m", "osbuilder", "serve-pxe", str(folder),
                             "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.search(r"on 127\.0\.0\.1:(\d+);", first)
        assert m, first + (proc.stderr.read() if proc.stderr else "")
        yield f"http://127.0.0.1:{m.group(1)}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, dict(r.headers), bytes(r.read())


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        return get(url, headers)[0]
    except urllib.error.HTTPError as exc:
        return exc.code


def pxe_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    (d / f"{NAME}.ipxe").write_text("#!ipxe\n")
    (d / f"{NAME}.squashfs").write_bytes(SQUASHFS)
    return d


def test_serves_files_boot_script_and_config(tmp_path: Path) -> None:
    d = pxe_dir(tmp_path)
    cfg = tmp_path / "node.yaml"
    cfg.write_text("hostname: pxe-node\n")
    with serving(d, "--url", "http://10.0.2.100:8080", "--config", str(cfg),
                 "--args", "osb.install.device=/dev/sda") as (base, _):
        assert get(f"{base}/boot.ipxe")[2].decode() == (
            "#!ipxe\n# written by osbuilder serve-pxe\nset osb_url http://10.0.2.100:8080\n"
            "set osb_args osb.config_url=http://10.0.2.100:8080/config.yaml "
            "osb.config_url_allow_http=1 osb.install.device=/dev/sda\n"
            f"chain ${{osb_url}}/{NAME}.ipxe\n")
        assert get(f"{base}/config.yaml")[2] == b"hostname: pxe-node\n"
        status, headers, body = get(f"{base}/{NAME}.squashfs")
        assert (status, body, headers["Accept-Ranges"]) == (200, SQUASHFS, "bytes")
        for missing in ("/", "/nope.ipxe", "/../etc/passwd", f"/{NAME}.squashfs/x"):
            assert status_of(base + missing) == 404


def test_only_this_builds_files_no_hidden_file_no_symlink_out(tmp_path: Path) -> None:
    d = pxe_dir(tmp_path)
    secret = tmp_path / "ca.key.pem"
    secret.write_text("KEY")
    (d / f"{NAME}.grub.cfg").symlink_to(secret)  # a link out of the folder
    (d / f"{NAME}.pxelinux.cfg").symlink_to(d / f"{NAME}.ipxe")  # a link inside: fine
    (d / f".{NAME}.ipxe.swp").write_text("hidden")
    (d / ".osbuilder-qemu-amd64-work").mkdir()
    (d / ".osbuilder-qemu-amd64-work/rootfs.tar").write_text("work")
    (d / "osbuilder-qemu-amd64-1.0.0.img").write_bytes(b"disk")  # another artifact
    (d / "SHA256SUMS").write_text("sums")
    with serving(d) as (base, proc):
        assert get(f"{base}/{NAME}.pxelinux.cfg")[2] == b"#!ipxe\n"
        for name in (f"{NAME}.grub.cfg", f".{NAME}.ipxe.swp", ".osbuilder-qemu-amd64-work/"
                     "rootfs.tar", "osbuilder-qemu-amd64-1.0.0.img", "SHA256SUMS"):
            assert status_of(f"{base}/{name}") == 404, name
    assert proc.stderr is not None
    assert f"not serving {NAME}.grub.cfg: it leads out of {d}" in proc.stderr.read()


def test_byte_ranges(tmp_path: Path) -> None:
    with serving(pxe_dir(tmp_path)) as (base, _):
        url = f"{base}/{NAME}.squashfs"
        size = len(SQUASHFS)
        status, headers, body = get(url, {"Range": "bytes=4-19"})
        assert (status, body) == (206, SQUASHFS[4:20])
        assert headers["Content-Range"] == f"bytes 4-19/{size}"
        status, headers, body = get(url, {"Range": "bytes=16000-"})  # resume
        assert (status, body) == (206, SQUASHFS[16000:])
        assert get(url, {"Range": "bytes=-10"})[2] == SQUASHFS[-10:]
        assert status_of(url, {"Range": f"bytes={size}-"}) == 416
        # several ranges, or nonsense: the whole file (RFC 9110 lets a server ignore them)
        assert get(url, {"Range": "bytes=0-1,5-6"})[:3:2] == (200, SQUASHFS)
        assert get(url, {"Range": "pages=1-2"})[:3:2] == (200, SQUASHFS)


def test_byte_range_parser() -> None:
    assert byte_range(None, 100) is None
    assert byte_range("bytes=0-0", 100) == (0, 0)
    assert byte_range("bytes=90-200", 100) == (90, 99)
    assert byte_range("bytes=-200", 100) == (0, 99)
    assert byte_range("bytes=5-4", 100) is None
    assert byte_range("bytes=-0", 100) == "416"
    assert byte_range("bytes=100-", 100) == "416"


def test_secrets_over_plain_http_are_warned_about(tmp_path: Path) -> None:
    d = pxe_dir(tmp_path)
    (d / f"{NAME}.config.yaml").write_text("k3os:\n  token: K10secret\n")  # baked by build
    cfg = tmp_path / "node.yaml"
    cfg.write_text("k3os:\n  password: hunter2hunter2\n  server_url: https://s:6443\n"
                   "  token: K10secret\n")
    with serving(d, "--config", str(cfg)) as (_, proc):
        pass
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert ("warning: config.yaml holds secrets (k3os.password, k3os.token) and is served "
            "over plain HTTP") in err
    assert f"warning: {NAME}.config.yaml holds secrets (k3os.token)" in err
    assert "hunter2" not in err and "K10secret" not in err
    clean = tmp_path / "clean.yaml"
    clean.write_text("hostname: a\n")
    (d / f"{NAME}.config.yaml").unlink()
    with serving(d, "--config", str(clean)) as (_, proc):
        pass
    assert proc.stderr is not None and "warning" not in proc.stderr.read()


def osb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "osbuilder", "serve-pxe", *args],
                          capture_output=True, text=True, timeout=30)


def test_loopback_url_is_never_advertised_to_the_network(tmp_path: Path) -> None:
    d = pxe_dir(tmp_path)
    for url in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080"):
        r = osb(str(d), "--bind", "0.0.0.0", "--port", "0", "--url", url)
        assert r.returncode == ExitCode.USAGE, r.stderr
        assert "is a loopback address: nodes on the network would ask themselves" in r.stderr
        assert "Traceback" not in r.stderr


def test_help_says_the_default_address() -> None:
    r = osb("--help")
    assert "default 127.0.0.1: this machine only" in " ".join(r.stdout.split())


def test_bad_input_is_named(tmp_path: Path) -> None:
    r = osb(str(tmp_path / "none"))
    assert r.returncode == ExitCode.BAD_INPUT
    assert "serve-pxe" in r.stderr and "no such directory" in r.stderr
    (tmp_path / "empty").mkdir()
    r = osb(str(tmp_path / "empty"))
    assert r.returncode == ExitCode.BAD_INPUT
    assert "no *-pxe.ipxe script (build with --format pxe)" in r.stderr
    d = pxe_dir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("k3os:\n  labels: [red]\n")
    r = osb(str(d), "--config", str(bad), "--port", "0")
    assert r.returncode == ExitCode.BAD_INPUT and "k3os.labels" in r.stderr, r.stderr
    r = osb(str(d), "--port", "80000")
    assert r.returncode == ExitCode.USAGE and "'80000' is not a TCP port" in r.stderr
    r = osb(str(d), "--script", "../x.ipxe")
    assert r.returncode == ExitCode.USAGE and "--script ../x.ipxe" in r.stderr
    if os.geteuid() != 0:  # root may bind port 1
        r = osb(str(d), "--port", "1")
        assert r.returncode == ExitCode.BAD_INPUT and "cannot listen on" in r.stderr
