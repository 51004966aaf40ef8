"""The host CLI: listing, validation and bad input, run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from osbuilder.shared.errors import ExitCode

USAGE, BAD_INPUT = ExitCode.USAGE, ExitCode.BAD_INPUT


def osb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "osbuilder", *args],
                          capture_output=True, text=True, timeout=60)


def test_boards_lists_arch_and_every_format() -> None:
    r = osb("boards")
    assert r.returncode == 0
    rows = {line.split()[0]: line.split()[1:4] for line in r.stdout.splitlines()[1:]}
    assert rows["qemu-amd64"] == ["amd64", "systemd-boot", "img*,qcow2,iso,pxe"]
    assert rows["ec2-a1"] == ["arm64", "systemd-boot", "img*,qcow2,ami*,iso,pxe"]
    assert rows["rpi-arm64"] == ["arm64", "u-boot", "img*,qcow2"]


def test_validate_board_ok_and_bad(tmp_path: Path) -> None:
    assert osb("validate-board", "osbuilder/host/boards/qemu-amd64.yaml").returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\narch: sparc\n")
    r = osb("validate-board", str(bad))
    assert r.returncode == BAD_INPUT
    assert 'at arch: "sparc" is not one of' in r.stderr
    assert "'description' is a required property" in r.stderr


def test_build_unknown_board() -> None:
    r = osb("build", "--board", "pi9")
    assert r.returncode == BAD_INPUT
    assert "unknown board 'pi9'" in r.stderr


def test_build_bad_k3s_version() -> None:
    r = osb("build", "--board", "qemu-amd64", "--k3s-version", "latest")
    assert r.returncode == USAGE and "--k3s-version 'latest'" in r.stderr


def test_build_out_dir_not_creatable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = osb("build", "--board", "qemu-amd64", "--out", str(blocker / "out"))
    assert r.returncode == BAD_INPUT
    assert f"--out {blocker / 'out'}: cannot create the output directory" in r.stderr


def test_build_missing_rootfs_tarball(tmp_path: Path) -> None:
    r = osb("build", "--board", "qemu-amd64", "--rootfs-tarball", str(tmp_path / "no.tar"))
    assert r.returncode == BAD_INPUT
    assert f"--rootfs-tarball {tmp_path / 'no.tar'}: no such file" in r.stderr


def test_build_missing_config_file(tmp_path: Path) -> None:
    r = osb("build", "--board", "qemu-amd64", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == BAD_INPUT and "nope.yaml: no such file" in r.stderr


def test_help_explains_build() -> None:
    r = osb("build", "--help")
    assert r.returncode == 0
    for flag in ("--board", "--k3s-dir", "--k3s-channel", "--config", "--format", "--out"):
        assert flag in r.stdout


def test_validate_config_names_the_bad_key(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("k3os: {server_url: 'https://s:6443', token: t}\n")
    bad.write_text("k3os:\n  labels: [a]\n")
    r = osb("validate-config", str(good))
    assert r.returncode == 0 and "ok (role agent, server https://s:6443)" in r.stdout
    r = osb("validate-config", str(bad))
    assert r.returncode == BAD_INPUT
    assert "at k3os.labels: expected object, got list" in r.stderr


def test_build_all_goes_on_after_a_failing_board_and_names_them(tmp_path: Path) -> None:
    """--board all tries every board even when one fails (here each one: --out cannot be
    made), then fails naming them."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = osb("build", "--board", "all", "--out", str(blocker / "out"))
    assert r.returncode == BAD_INPUT
    for name in ("qemu-amd64", "nuc-amd64", "ec2-a1", "rpi-arm64", "rpi5"):
        assert f"building {name} (" in r.stderr and f"error: {name}: --out" in r.stderr
    assert "boards failed: " in r.stderr and "rpi-arm64" in r.stderr.splitlines()[-1]


def test_build_all_with_one_rootfs_tarball_is_refused(tmp_path: Path) -> None:
    r = osb("build", "--board", "all", "--rootfs-tarball", str(tmp_path / "x.tar"))
    assert r.returncode == USAGE and "cannot go with --board all" in r.stderr


def test_armv6_board_is_refused() -> None:
    r = osb("build", "--board", "rpi-zero-w")
    assert r.returncode == BAD_INPUT and "k3s needs ARMv7 or newer" in r.stderr
