"""The systemd-boot slot chooser on a temp ESP: the state machine RAUC drives on a node."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from osbuilder.bootloaders.systemd_boot.chooser import Chooser as SystemdBootChooser
from osbuilder.bootloaders.systemd_boot.entries import parse_entry, parse_name, slot_options
from osbuilder.shared.errors import OsbError

OPTS = ("root=PARTLABEL=OSB_ROOT_A rootfstype=squashfs ro osb.slot=a rauc.slot=a "
        "console=ttyS0,115200 quiet")


def slot_root(tmp: Path, slot: str, version: str) -> Path:
    root = tmp / f"root-{slot}"
    (root / "boot").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "boot/vmlinuz-6.12.0-1").write_bytes(f"kernel {version}".encode())
    (root / "boot/initrd.img-6.12.0-1").write_bytes(f"initrd {version}".encode())
    (root / "usr/lib/os-release").write_text(f'ID=osbuilder\nIMAGE_VERSION="{version}"\n')
    return root


@pytest.fixture
def esp(tmp_path: Path) -> Path:
    esp = tmp_path / "esp"
    (esp / "loader/entries").mkdir(parents=True)
    (esp / "loader/entries/osb-a.conf").write_text(
        "title osbuilder 1.0.0 (slot A)\nsort-key osbuilder\nversion 1\n"
        "linux /osb/a/vmlinuz\ninitrd /osb/a/initrd.img\n" f"options {OPTS}\n")
    return esp


def chooser(esp: Path, tmp: Path, booted: str = "a",
            versions: dict[str, str] | None = None) -> SystemdBootChooser:
    roots = {s: slot_root(tmp / booted, s, v)
             for s, v in (versions or {"a": "1.0.0", "b": "1.1.0"}).items()}

    @contextmanager
    def mount(slot: str) -> Iterator[Path]:
        yield roots[slot]

    return SystemdBootChooser(esp, booted, mount)


def entries(esp: Path) -> list[str]:
    return sorted(p.name for p in (esp / "loader/entries").iterdir())


def boot_attempt(esp: Path) -> str:
    """What systemd-boot does at power-on: pick the first entry (tries left, then
    highest priority) and count one try down. Returns the slot it boots."""
    files = []
    for p in (esp / "loader/entries").glob("osb-*.conf"):
        n = parse_name(p.name)
        assert n is not None
        files.append((n.bad, -int(parse_entry(p.read_text())["version"]), n, p))
    _, _, name, path = sorted(files, key=lambda f: (f[0], f[1]))[0]
    if name.tries_left:
        path.rename(path.with_name(f"osb-{name.slot}+{name.tries_left - 1}-"
                                   f"{name.tries_done + 1}.conf"))
    return name.slot


def test_fresh_image_boots_a_and_has_no_b(esp: Path, tmp_path: Path) -> None:
    ch = chooser(esp, tmp_path)
    assert ch.primary() == "a" and ch.state("a") == "good" and ch.state("b") == "bad"
    assert ch.tries_left("a") is None


def test_install_flow_flips_to_b_with_tries_then_bless(esp: Path, tmp_path: Path) -> None:
    ch = chooser(esp, tmp_path)
    ch.set_state("b", False)  # RAUC: mark the target bad before writing it
    ch.set_primary("b")
    assert entries(esp) == ["osb-a.conf", "osb-b+3.conf"]
    b = parse_entry((esp / "loader/entries/osb-b+3.conf").read_text())
    assert b["title"] == "osbuilder 1.1.0 (slot B)" and b["version"] == "2"
    assert b["options"] == OPTS.replace("OSB_ROOT_A", "OSB_ROOT_B").replace(
        "slot=a", "slot=b")
    assert (esp / "osb/b/vmlinuz").read_bytes() == b"kernel 1.1.0"
    assert (esp / "osb/b/initrd.img").read_bytes() == b"initrd 1.1.0"
    assert ch.primary() == "b" and ch.tries_left("b") == 3
    assert boot_attempt(esp) == "b"
    on_b = chooser(esp, tmp_path, booted="b")
    assert on_b.tries_left("b") == 2
    on_b.set_state("b", True)  # health gate passed
    assert entries(esp) == ["osb-a.conf", "osb-b.conf"]
    assert boot_attempt(esp) == "b" and on_b.primary() == "b"


def test_tries_run_out_then_a_boots_again(esp: Path, tmp_path: Path) -> None:
    ch = chooser(esp, tmp_path)
    ch.set_primary("b")
    assert [boot_attempt(esp) for _ in range(4)] == ["b", "b", "b", "a"]
    assert entries(esp) == ["osb-a.conf", "osb-b+0-3.conf"]
    assert ch.state("b") == "bad" and ch.primary() == "a"


def test_gate_failure_marks_bad_and_next_boot_is_a(esp: Path, tmp_path: Path) -> None:
    chooser(esp, tmp_path).set_primary("b")
    assert boot_attempt(esp) == "b"
    on_b = chooser(esp, tmp_path, booted="b")
    on_b.set_state("b", False)
    assert entries(esp) == ["osb-a.conf", "osb-b+0-1.conf"]
    assert boot_attempt(esp) == "a"


def test_rollback_to_blessed_a_keeps_it_blessed(esp: Path, tmp_path: Path) -> None:
    ch = chooser(esp, tmp_path)
    ch.set_primary("b")
    boot_attempt(esp)
    on_b = chooser(esp, tmp_path, booted="b")
    on_b.set_state("b", True)
    on_b.set_primary("a")  # `osbuilder-agent rollback` → rauc mark-active other
    assert entries(esp) == ["osb-a.conf", "osb-b.conf"]
    assert parse_entry((esp / "loader/entries/osb-a.conf").read_text())["version"] == "3"
    assert boot_attempt(esp) == "a"


def test_second_upgrade_reuses_slot_and_counts_afresh(esp: Path, tmp_path: Path) -> None:
    ch = chooser(esp, tmp_path)
    ch.set_primary("b")
    boot_attempt(esp)
    on_b = chooser(esp, tmp_path, booted="b", versions={"a": "1.2.0", "b": "1.1.0"})
    on_b.set_state("b", True)
    on_b.set_state("a", False)
    on_b.set_primary("a")
    assert entries(esp) == ["osb-a+3.conf", "osb-b.conf"]
    assert (esp / "osb/a/vmlinuz").read_bytes() == b"kernel 1.2.0"
    assert boot_attempt(esp) == "a"


def test_power_cut_between_write_and_cleanup_prefers_new_entry(esp: Path,
                                                               tmp_path: Path) -> None:
    ch = chooser(esp, tmp_path)
    ch.set_primary("b")
    boot_attempt(esp)
    chooser(esp, tmp_path, booted="b").set_state("b", True)
    # a later set_primary("b") that wrote its new file but lost power before the clean-up
    (esp / "loader/entries/osb-b+3.conf").write_text(
        (esp / "loader/entries/osb-b.conf").read_text().replace("version 2", "version 9"))
    assert ch.entry("b") is not None and ch.entry("b")[1].name == "osb-b+3.conf"  # type: ignore[index]


def test_marking_a_slot_without_entry_good_is_refused(esp: Path, tmp_path: Path) -> None:
    ch = chooser(esp, tmp_path)
    with pytest.raises(OsbError, match="slot b has no boot entry"):
        ch.set_state("b", True)
    with pytest.raises(OsbError, match="unknown slot 'c'"):
        ch.set_primary("c")


def test_slot_without_osbuilder_root_is_refused_before_any_entry(esp: Path,
                                                                 tmp_path: Path) -> None:
    ch = chooser(esp, tmp_path)
    for k in (tmp_path / "a/root-b/boot").iterdir():
        k.unlink()
    with pytest.raises(OsbError, match="slot b: expected one kernel"):
        ch.set_primary("b")
    assert entries(esp) == ["osb-a.conf"]


def test_slot_options_rewrites_only_slot_tokens() -> None:
    assert slot_options(OPTS, "b") == (
        "root=PARTLABEL=OSB_ROOT_B rootfstype=squashfs ro osb.slot=b rauc.slot=b "
        "console=ttyS0,115200 quiet")
