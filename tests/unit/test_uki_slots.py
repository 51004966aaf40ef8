"""Signed nodes on the ESP: the slot chooser writes entries that start a slot's UKI
(Boot Loader Specification type #1 `efi` key), drops a slot's UKI when RAUC marks the
slot bad before writing it, and the bundle's hook (stage-boot) refuses a UKI that is
not this board's, not this slot's, or not signed by a key the firmware trusts."""

from __future__ import annotations

import io
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from osbuilder.bootloaders.systemd_boot.chooser import Chooser
from osbuilder.bootloaders.systemd_boot.entries import boots_uki, parse_entry
from osbuilder.node.paths import AgentPaths
from osbuilder.node.upgrade import boot_files
from osbuilder.shared import pe
from osbuilder.shared.errors import OsbError

OSREL = 'ID=osbuilder\nIMAGE_ID="osbuilder-qemu-amd64"\nIMAGE_VERSION="1.1.0"\n'


def make_pe(sections: dict[str, bytes]) -> bytes:
    """A PE image with these sections and no optional header: enough for a reader of
    the section table (PE/COFF: e_lfanew at 0x3C, "PE\\0\\0", COFF header, table)."""
    head = bytearray(0x40)
    head[:2] = b"MZ"
    struct.pack_into("<I", head, 0x3C, 0x40)
    coff = b"PE\0\0" + struct.pack("<HHIIIHH", 0x8664, len(sections), 0, 0, 0, 0, 0x22)
    data_at = 0x40 + len(coff) + pe.SECTION.size * len(sections)
    table, blob = b"", b""
    for name, data in sections.items():
        table += pe.SECTION.pack(name.encode(), len(data), 0, len(data), data_at + len(blob),
                                 0, 0, 0, 0, 0)
        blob += data
    return bytes(head) + coff + table + blob


def uki(cmdline: str, osrel: str = OSREL) -> bytes:
    return make_pe({".osrel": osrel.encode(), ".cmdline": cmdline.encode() + b"\0",
                    ".linux": b"kernel", ".initrd": b"initrd"})


@pytest.fixture
def esp(tmp_path: Path) -> Path:
    esp = tmp_path / "esp"
    (esp / "loader/entries").mkdir(parents=True)
    (esp / "loader/entries/osb-a.conf").write_text(
        "title osbuilder 1.0.0 (slot A)\nsort-key osbuilder\nversion 1\nefi /osb/a/uki.efi\n")
    (esp / "osb/a").mkdir(parents=True)
    (esp / "osb/a/uki.efi").write_bytes(uki("osb.slot=a"))
    return esp


def test_pe_section_table() -> None:
    image = make_pe({".osrel": b"ID=x\n", ".cmdline": b"quiet"})
    path_sections = pe.sections(io.BytesIO(image), "x.efi")
    assert set(path_sections) == {".osrel", ".cmdline"}
    with pytest.raises(OsbError, match="not a PE image"):
        pe.sections(io.BytesIO(b"ELF" + bytes(100)), "x.efi")


def test_set_primary_starts_the_staged_uki(esp: Path) -> None:
    ch = Chooser(esp, "a")
    ch.set_state("b", False)  # RAUC, before it writes slot b
    (esp / "osb/b").mkdir()
    (esp / "osb/b/uki.efi").write_bytes(uki("osb.slot=b"))  # the bundle's hook
    ch.set_primary("b")
    entry = parse_entry((esp / "loader/entries/osb-b+3.conf").read_text())
    assert boots_uki(entry) and entry["efi"] == "/osb/b/uki.efi" and "options" not in entry
    assert entry["title"] == "osbuilder 1.1.0 (slot B)" and entry["version"] == "2"
    assert ch.primary() == "b" and ch.version("b") == "1.1.0"


def test_marking_a_slot_bad_drops_its_uki_after_its_entry(esp: Path) -> None:
    ch = Chooser(esp, "b")
    ch.set_state("a", False)
    assert sorted(p.name for p in (esp / "loader/entries").iterdir()) == ["osb-a+0.conf"]
    assert not (esp / "osb/a/uki.efi").exists()


def test_a_signed_node_without_a_staged_uki_cannot_flip(esp: Path) -> None:
    """No kernel options to copy from a UKI entry: the flip fails rather than write an
    entry that boots an unverified kernel."""
    root = esp.parent / "root-b"
    (root / "boot").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    (root / "boot/vmlinuz-6.12").write_bytes(b"kernel")
    (root / "boot/initrd.img-6.12").write_bytes(b"initrd")
    (root / "usr/lib/os-release").write_text(OSREL)

    @contextmanager
    def mount(slot: str) -> Iterator[Path]:
        yield root

    ch = Chooser(esp, "a", mount)
    with pytest.raises(OsbError, match=r"needs slot b's UKI staged first"):
        ch.set_primary("b")
    assert sorted(p.name for p in (esp / "loader/entries").iterdir()) == ["osb-a.conf"]


@pytest.fixture
def node(tmp_path: Path) -> AgentPaths:
    """A signed node's root: its os-release and the fleet's db certificate (one no test
    UKI here is signed with)."""
    root = tmp_path / "root"
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/os-release").write_text(OSREL.replace("1.1.0", "1.0.0"))
    cert = root / boot_files.IMAGE_DB_CERT
    cert.parent.mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=test db", "-keyout", str(tmp_path / "db.key"),
                    "-out", str(cert)], check=True, capture_output=True)
    return AgentPaths(root=root, boot_dir=tmp_path / "esp")


def write(tmp: Path, name: str, data: bytes) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_bytes(data)
    return tmp / name


def test_a_uki_of_another_board_is_refused(node: AgentPaths, tmp_path: Path) -> None:
    f = write(tmp_path / "bundle", "uki-b.efi",
              uki("osb.slot=b", OSREL.replace("qemu-amd64", "nuc-amd64")))
    with pytest.raises(OsbError, match=r"uki-b\.efi: a UKI of osbuilder-nuc-amd64, this node "
                                       r"runs osbuilder-qemu-amd64: refusing it"):
        boot_files.check_uki(node, "b", f, efivars=tmp_path / "no-efivars")


def test_the_other_slots_uki_is_refused(node: AgentPaths, tmp_path: Path) -> None:
    f = write(tmp_path / "bundle", "uki-b.efi", uki("root=/dev/mapper/osb-root osb.slot=a"))
    with pytest.raises(OsbError, match=r"its command line is not slot b's"):
        boot_files.check_uki(node, "b", f, efivars=tmp_path / "no-efivars")


def test_an_unsigned_uki_is_refused_and_never_staged(node: AgentPaths, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    write(bundle, "uki-a.efi", uki("osb.slot=a"))
    write(bundle, "uki-b.efi", uki("osb.slot=b"))
    with pytest.raises(OsbError, match=r"uki-a\.efi: not signed by a key in "
                                       r"/usr/share/osbuilder/secure-boot/db\.cert\.pem"):
        boot_files.check_boot_files(node, bundle)
    with pytest.raises(OsbError, match=r"not signed by a key in"):
        boot_files.stage_boot(node, "b", bundle)
    assert not (node.boot_dir / "osb/b/uki.efi").exists()


def test_a_signed_node_refuses_a_bundle_without_ukis(node: AgentPaths, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    with pytest.raises(OsbError, match=r"carries no signed UKI and this node boots only "
                                       r"signed kernels"):
        boot_files.check_boot_files(node, bundle)
    with pytest.raises(OsbError, match=r"carries no uki-b\.efi"):
        boot_files.stage_boot(node, "b", bundle)


def test_u_boot_verity_file_is_staged_and_checked(tmp_path: Path) -> None:
    paths = AgentPaths(root=tmp_path / "root", boot_dir=tmp_path / "boot")
    bundle = tmp_path / "bundle"
    write(bundle, "verity.txt", b"OSB_VERITY=osb.verity=" + b"ab" * 32
          + b" osb.verity_offset=8192\n")
    assert boot_files.stage_boot(paths, "b", bundle) == 0
    assert (paths.boot_dir / "osb/b/verity.txt").read_bytes().startswith(b"OSB_VERITY=")
    write(bundle, "verity.txt", b"OSB_VERITY=garbage\n")
    with pytest.raises(OsbError, match="names no root hash"):
        boot_files.stage_boot(paths, "a", bundle)
