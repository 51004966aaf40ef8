"""Foreign-arch set-up: what the build registers with binfmt_misc and what it says when it
cannot (a fake binfmt_misc folder stands in for /proc/sys/fs/binfmt_misc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.host import binfmt
from osbuilder.host.binfmt import ensure_binfmt
from osbuilder.shared.errors import OsbError

LINE = ":qemu-aarch64:M::\\x7fELF\\x02:\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OCPF"


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setattr(binfmt, "host_arch", lambda: "amd64")
    monkeypatch.setattr("shutil.which", lambda tool: f"/usr/bin/{tool}")
    (tmp_path / "binfmt").mkdir()
    (tmp_path / "binfmt/register").write_text("")
    (tmp_path / "conf").mkdir()
    return tmp_path / "binfmt", tmp_path / "conf"


def test_native_arch_needs_nothing(fake: tuple[Path, Path]) -> None:
    assert ensure_binfmt("amd64", *fake) is None


def test_registers_qemu_from_its_conf(fake: tuple[Path, Path]) -> None:
    (fake[1] / "qemu-aarch64.conf").write_text(LINE + "\n")
    assert ensure_binfmt("arm64", *fake) == "registered qemu-aarch64 with binfmt_misc"
    assert (fake[0] / "register").read_text() == LINE


def test_already_registered_is_left_alone(fake: tuple[Path, Path]) -> None:
    (fake[0] / "qemu-arm").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/arm\n")
    assert ensure_binfmt("armhf", *fake) == "qemu-arm already registered"
    assert (fake[0] / "register").read_text() == ""


def test_missing_qemu_user_static_is_named(fake: tuple[Path, Path]) -> None:
    with pytest.raises(OsbError, match=r"needs qemu-user-static .*qemu-aarch64\.conf missing"):
        ensure_binfmt("arm64", *fake)


def test_missing_arch_test_is_named(fake: tuple[Path, Path],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda tool: None)
    with pytest.raises(OsbError, match="needs arch-test: apt-get install arch-test"):
        ensure_binfmt("arm64", *fake)
