"""What `osbuilder-agent status` and the console status line say of the trust chain, from
the firmware's variables (efivarfs: 4 attribute bytes, then the value) and device-mapper's
names and UUIDs in sysfs (cryptsetup names its devices CRYPT-VERITY-..., CRYPT-LUKS2-...)."""

from __future__ import annotations

from pathlib import Path

from osbuilder.node import secure_boot as trust
from osbuilder.node.status import Status
from osbuilder.shared import efi_sig

G = str(efi_sig.GLOBAL_VARIABLE)
ATTRS = b"\x06\x00\x00\x00"


def efivars(tmp: Path, **values: bytes) -> Path:
    d = tmp / "efivars"
    d.mkdir(parents=True, exist_ok=True)
    for name, value in values.items():
        guid = str(efi_sig.IMAGE_SECURITY_DATABASE) if name == "db" else G
        (d / f"{name}-{guid}").write_bytes(ATTRS + value)
    return d


def dm(tmp: Path, *devices: tuple[str, str]) -> Path:
    for i, (name, uuid) in enumerate(devices):
        d = tmp / "sys" / f"dm-{i}" / "dm"
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "uuid").write_text(uuid + "\n")
    return tmp / "sys"


def test_secure_boot_states(tmp_path: Path) -> None:
    assert trust.secure_boot_state(tmp_path / "none") == "none"
    assert trust.secure_boot_state(efivars(tmp_path / "a", SecureBoot=b"\x01")) == "on"
    assert trust.secure_boot_state(efivars(tmp_path / "b", SecureBoot=b"\x00",
                                           SetupMode=b"\x01")) == "setup"
    assert trust.secure_boot_state(efivars(tmp_path / "c", SecureBoot=b"\x00",
                                           SetupMode=b"\x00")) == "off"


def test_enrolled_db_certificates(tmp_path: Path) -> None:
    owner = efi_sig.GLOBAL_VARIABLE
    db = efi_sig.signature_list(b"\x30cert-one", owner) + efi_sig.signature_list(
        b"\x30cert-two", owner)
    assert trust.enrolled_db(efivars(tmp_path, db=db)) == [b"\x30cert-one", b"\x30cert-two"]
    assert trust.enrolled_db(tmp_path / "nothing") == []


def test_verity_and_encryption_from_device_mapper(tmp_path: Path) -> None:
    devices = trust.dm_devices(dm(tmp_path, ("osb-root", "CRYPT-VERITY-0123-osb-root"),
                                  ("osb-data", "CRYPT-LUKS2-4567-osb-data")))
    assert trust.verity_state(devices) == "on"
    state = tmp_path / "data-state"
    assert trust.encryption_state(devices, state) == "luks2"
    state.write_text("tpm2\n")
    assert trust.encryption_state(devices, state) == "luks2-tpm2"
    assert trust.verity_state([]) == "off" and trust.encryption_state([], state) == "none"
    plain = trust.dm_devices(dm(tmp_path / "x", ("osb-root", "LVM-abc")))
    assert trust.verity_state(plain) == "off"


def test_status_line_and_text() -> None:
    s = Status("a", "1.0.0", "qemu-amd64", None, None, None, None, None,
               secure_boot="on", verity="on", encryption="luks2-tpm2")
    assert s.oneline().endswith("secure_boot=on verity=on encryption=luks2-tpm2")
    assert "trust:     secure boot on, verity on, data encryption luks2-tpm2" in s.text()
    assert "recovery key" not in s.text()
    r = Status("a", "1.0.0", "qemu-amd64", None, None, None, None, None,
               encryption="luks2-recovery", recovery_key_waiting=True).text()
    assert "data unlocked with the recovery key" in r
    assert "systemd-cryptenroll --wipe-slot=tpm2" in r
    assert "the recovery key is in /run/osbuilder/recovery-key until the next reboot" in r


def test_data_partition_size_is_read_through_the_luks2_device(tmp_path: Path) -> None:
    """The status line's data_part= and disk= of encrypted data: /data is on dm-1, whose one
    slave is the partition (sysfs: /sys/class/block/dm-1/slaves/vda4); a plain partition is
    its own. The first signed boot under QEMU printed data_part=- disk=- before this."""
    from osbuilder.node.status import backing_partition, block_name, parent_disk

    sys_block = tmp_path / "class" / "block"
    vda = tmp_path / "devices" / "vda"
    (vda / "vda4").mkdir(parents=True)
    (vda / "vda4" / "partition").write_text("4\n")
    sys_block.mkdir(parents=True)
    (sys_block / "vda4").symlink_to(vda / "vda4")
    (sys_block / "vda").symlink_to(vda)
    (sys_block / "dm-1" / "slaves").mkdir(parents=True)
    (sys_block / "dm-1" / "slaves" / "vda4").symlink_to(vda / "vda4")
    assert backing_partition("dm-1", sys_block) == "vda4"
    assert backing_partition("vda4", sys_block) == "vda4"
    assert parent_disk(backing_partition("dm-1", sys_block), sys_block) == "vda"
    # a name that is no device node: its own base name
    assert block_name("/dev/mapper/none", tmp_path / "dev-block") == "none"
