"""Command-line conventions, run as a user would: formats and versions checked before any
work, --json output, `run` taking the image's own board, shell completion, SHA256SUMS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from osbuilder.host.checksums import read_sums, update_sums
from osbuilder.shared.errors import ExitCode


def osb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([sys.executable, "-m", "osbuilder", *args], capture_output=True,
                       text=True, timeout=120, env=env)
    assert "Traceback" not in r.stderr
    return r


def test_impossible_format_fails_before_the_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = osb("build", "--board", "rpi-arm64", "--format", "iso", "--out", str(out))
    assert r.returncode == ExitCode.BAD_INPUT
    assert ("--format iso: board rpi-arm64 cannot be built as iso: its boot loader u-boot "
            "does not boot through UEFI (its formats: img, qcow2)") in r.stderr
    r = osb("build", "--board", "all", "--format", "pxe", "--out", str(out))
    assert r.returncode == ExitCode.BAD_INPUT and "board jetson-nano cannot" in r.stderr
    r = osb("build", "--board", "qemu-amd64", "--format", "img,floppy", "--out", str(out))
    assert r.returncode == ExitCode.USAGE and "--format floppy: unknown format" in r.stderr
    assert "building" not in r.stderr and not out.exists()


def test_version_is_checked_at_build_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for bad in ("1.0 beta", "../../x", "1.0"):
        r = osb("build", "--version", bad, "--out", str(out))
        assert r.returncode == ExitCode.USAGE
        assert f"argument --version: {bad!r} is not a semantic version" in r.stderr
    assert not out.exists()
    r = osb("show-config", "--version", "v1.1.0-rc.1+git.5")
    assert r.returncode == 0 and "v1.1.0-rc.1+git.5" in r.stdout


def test_boards_and_show_board_as_json() -> None:
    boards = {b["name"]: b for b in json.loads(osb("boards", "--json").stdout)}
    assert boards["qemu-amd64"]["formats"] == ["img", "qcow2", "iso", "pxe"]
    assert boards["rpi-arm64"]["formats"] == ["img", "qcow2"]
    assert boards["ec2-a1"]["default_formats"] == ["img", "ami"]
    one = json.loads(osb("show-board", "rpi5", "--json").stdout)
    assert one["name"] == "rpi5" and one["bootloader"] == "u-boot"
    assert "linux-image-arm64" in " ".join(one["packages"]) or one["packages"]
    r = osb("show-board", "osbuilder/host/boards/nuc-amd64.yaml")
    assert r.returncode == 0 and "formats: img (default), qcow2, iso, pxe" in r.stdout


def test_schema_is_printed_for_editors() -> None:
    schema = json.loads(osb("schema", "config").stdout)
    assert schema["$id"].endswith("config.schema.json") and "k3os" in json.dumps(schema)


def fake_qemu(bin_dir: Path) -> None:
    """A stand-in for qemu-system-x86_64 (TEST DOUBLE) that prints its argv and fails, so
    `run` goes all the way without booting anything."""
    bin_dir.mkdir()
    q = bin_dir / "qemu-system-x86_64"
    q.write_text("#!/bin/sh\necho \"fake qemu: $*\" >&2\nexit 3\n")
    q.chmod(0o755)


def test_run_takes_the_images_board_shows_accel_and_leaves_no_scratch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    img = out / "osbuilder-qemu-amd64-1.0.0.img"
    img.write_bytes(b"\0" * (1 << 20))
    r = osb("run", str(img))
    assert r.returncode == ExitCode.BAD_INPUT and "pass --board" in r.stderr
    (out / "osbuilder-qemu-amd64-1.0.0.manifest.json").write_text('{"board": "rpi5"}')
    r = osb("run", str(img))  # rpi5 has no qemu: section: the manifest's board was used
    assert r.returncode == ExitCode.BAD_INPUT and "rpi5.yaml: board has no `qemu:`" in r.stderr
    (out / "osbuilder-qemu-amd64-1.0.0.manifest.json").write_text('{"board": "qemu-amd64"}')
    fake_qemu(tmp_path / "bin")
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}",
               OSB_QEMU_ACCEL="tcg")
    r = osb("run", str(img), env=env)
    assert "as qemu-amd64 (amd64) with accelerator tcg" in r.stderr
    assert "fake qemu: -accel tcg,thread=single" in r.stderr
    assert r.returncode == ExitCode.EXTERNAL and "QEMU exited with status 3" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "osbuilder-qemu-amd64-1.0.0.img", "osbuilder-qemu-amd64-1.0.0.manifest.json"]


def complete(line: str, tmp_path: Path) -> list[str]:
    """What argcomplete offers bash for `line` (its protocol: _ARGCOMPLETE, COMP_LINE,
    COMP_POINT; answers separated by \\v, here into a file instead of fd 8)."""
    answer = tmp_path / "completion"
    env = dict(os.environ, _ARGCOMPLETE="1", COMP_LINE=line, COMP_POINT=str(len(line)),
               _ARGCOMPLETE_STDOUT_FILENAME=str(answer), _ARGCOMPLETE_IFS="\v")
    subprocess.run([sys.executable, "-m", "osbuilder"], env=env, timeout=60,
                   capture_output=True)
    return answer.read_text().split("\v")


def test_shell_completion(tmp_path: Path) -> None:
    assert "build " in complete("osbuilder bu", tmp_path)
    assert complete("osbuilder show-board qemu-a", tmp_path) == ["qemu-amd64 "]
    assert complete("osbuilder build --board rpi-a", tmp_path) == ["rpi-arm64", "rpi-armhf"]
    assert "--config " in complete("osbuilder flash --con", tmp_path)


def test_sha256sums_keep_other_builds_and_drop_gone_files(tmp_path: Path) -> None:
    (tmp_path / "a.img").write_text("a")
    (tmp_path / "old.img").write_text("o")
    (tmp_path / "SHA256SUMS").write_text(f"{'1' * 64}  old.img\n{'2' * 64}  gone.img\n"
                                         "garbage line\n")
    update_sums(tmp_path, {"a.img": "3" * 64})
    assert read_sums(tmp_path / "SHA256SUMS") == {"a.img": "3" * 64, "old.img": "1" * 64}
    assert (tmp_path / "SHA256SUMS").read_text() == f"{'3' * 64}  a.img\n{'1' * 64}  old.img\n"
