"""The trust chain of a qemu-amd64 image built with the fleet's keys (`osbuilder keys init`,
`osbuilder build --keys`), booted under QEMU TCG on OVMF's Secure Boot firmware
(OVMF_CODE_4M.secboot.fd, a fresh variable store: setup mode) with a swtpm TPM 2.0
(tests/helpers/trust_node.py). Issue 17's tests:

1. first boot: systemd-boot enrolls the fleet's keys, the verified root boots, the data
   partition is encrypted and its recovery key shown once, `applied config`; status
   reports Secure Boot on, verity on, data encrypted; the next boot unlocks with the TPM;
2. one byte of root A changed: that boot stops in the initramfs (dm-verity) and, A being
   the only slot that holds a root, never gets further; the data partition stays blank;
3. upgrade v1 → v2 (both signed by the fleet) with `osbuilder-agent upgrade`: the data
   still unlocks; a v3 whose UKIs another db key signed is refused by the agent, and the
   same UKI put on the ESP by hand is refused by the firmware, and the node falls back;
4. the disk in another machine (another TPM): the TPM does not release the key, the node
   stops at the recovery-key prompt and the data partition is left unchanged; the
   recovery key then unlocks it.

Console lines asserted on come from systemd-boot 257 (src/boot/secure-boot.c "Enrolling
secure boot keys from directory: %ls", "Custom Secure Boot keys successfully enrolled,
rebooting the system now!"; src/boot/boot.c "Error loading %ls: %m"), the kernel's
dm-verity target (drivers/md/dm-verity-target.c "%s: %s block %llu is corrupted"),
cryptsetup ("No key available with this passphrase."), initramfs-tools' panic()
("Rebooting automatically due to panic= boot argument"), and osbuilder's initramfs scripts
and agent.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py); bundles are served from the
host's 127.0.0.1, reached only through QEMU's guestfwd.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.keys import init_keys
from osbuilder.shared.errors import ExitCode
from tests.conftest import EPOCH, Build, require_build_capability
from tests.helpers.http_files import Served, serve_files
from tests.helpers.image import fat_read, partition_bytes, partitions, probe
from tests.helpers.k3s_fixture import write_release_dir
from tests.helpers.relay import guestfwd
from tests.helpers.trust_node import (
    BOOT,
    ENROLLED,
    ENROLLING,
    STATUS,
    TrustNode,
    first_boot,
    root_hash,
    status_fields,
)

pytestmark = pytest.mark.e2e
# `make test` runs the changed-root leg (about 2.5 minutes under TCG: one key enrollment
# reset and two starts that stop in the initramfs); the others are `make test-all` legs

URL = "http://10.0.2.100:8080"
APPLIED = (r"applied config \(sources=/boot/efi/config.yaml, role=server, "
           r"hostname=trust-node\)")
# systemd-boot 257, src/boot/boot.c image_start(): "Error loading %ls: %m" when the
# firmware's LoadImage refuses the image (EFI_SECURITY_VIOLATION is "Access denied")
DENIED = r"Error loading \\osb\\a\\uki\.efi: Access denied"
PANIC = r"Rebooting automatically due to panic= boot argument"


def require_trust_capability() -> None:
    require_build_capability()
    board = load_board("qemu-amd64")
    assert board.qemu is not None
    fw = board.qemu.firmware_secure_boot
    if fw is None or not Path(fw).is_file():
        pytest.skip(f"OVMF's Secure Boot firmware {fw} missing (apt-get install ovmf): "
                    "cannot boot a signed image")
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm missing (apt-get install swtpm swtpm-tools): no TPM 2.0 to seal to")


def build_signed(out: Path, cache: Path, version: str, k3s_dir: Path, keys: Path) -> Build:
    """`osbuilder build --keys` of qemu-amd64 at `version`, as `make image KEYS=` runs it."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "osbuilder", "build", "--board", "qemu-amd64", "--out",
         str(out), "--cache-dir", str(cache), "--version", version, "--k3s-dir", str(k3s_dir),
         "--keys", str(keys)],
        env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH), capture_output=True, text=True,
        timeout=3600)
    assert proc.returncode == 0, f"build {version} failed:\n{proc.stderr[-4000:]}"
    image = out / f"osbuilder-qemu-amd64-{version}.img"
    return Build(out, image, out / f"osbuilder-qemu-amd64-{version}.manifest.json",
                 time.monotonic() - t0, proc.stderr, None)  # type: ignore[arg-type]


def digest(image: Path, index: int) -> str:
    """sha256 of partition `index` (0-based) of a disk image."""
    h = hashlib.sha256()
    for chunk in partition_bytes(image, partitions(image)[1][index]):
        h.update(chunk)
    return h.hexdigest()


def esp_files(disk: Path, prefix: str) -> list[str]:
    esp = partitions(disk)[1][0]
    out = subprocess.run(["mdir", "-i", f"{disk}@@{esp.start}", "-/", "-b", f"::/{prefix}"],
                         check=True, capture_output=True, text=True).stdout
    return sorted(line.rsplit("/", 1)[-1] for line in out.split() if line.strip())


@dataclass
class Enrolled:
    """A machine after its first boot, powered off: its disk, firmware variables, TPM."""
    node: TrustNode
    recovery_key: str
    fields: dict[str, str]
    status: str
    first_applied: float  # s from power-on to `applied config`, first boot
    second_applied: float  # the same, second boot
    console: str


@pytest.fixture(scope="module")
def signed(qemu_amd64_signed_build: Build) -> Build:
    require_trust_capability()
    return qemu_amd64_signed_build


@pytest.fixture(scope="module")
def enrolled(signed: Build, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Enrolled]:
    """Leg 1's machine, kept for leg 4: first boot, a look from the shell, second boot."""
    node = TrustNode.fresh(signed.image, tmp_path_factory.mktemp("trust-n1"))
    try:
        key, fields, t1 = first_boot(node, root_hash(signed.log))
        node.login()
        rc, status = node.sh("sudo osbuilder-agent status")
        assert rc == 0, status
        # the recovery key: a root-only file on a tmpfs, and not in the journal (grep reads
        # the key from the file: the test never puts it on the console)
        rc, perm = node.sh("sudo stat -c 'perm=%a:%U' /run/osbuilder/recovery-key")
        assert rc == 0 and "perm=400:root" in perm, perm
        _, journal = node.sh("sudo journalctl -b --no-pager | "
                             "sudo grep -c -F -f /run/osbuilder/recovery-key | sed s/^/lines=/")
        assert re.search(r"lines=0\b", journal), journal
        _, lsblk = node.sh("findmnt -n -o SOURCE,FSTYPE /data")
        node.poweroff()
        # second boot: the TPM releases the key, no enrollment, no recovery key
        vm = node.start()
        vm.wait_for(r"osbuilder: data: unlocked with the TPM2", BOOT)
        vm.wait_for(APPLIED, BOOT)
        t2 = vm.elapsed()
        fields2 = status_fields(vm.wait_for(STATUS, 300).group(1))
        node.login()
        _, status2 = node.sh("sudo osbuilder-agent status")
        # the AES that dm-crypt took when the initramfs opened the data: /proc/crypto's
        # refcnt of a driver counts its registration and each transform in use
        _, aes = node.sh("awk '/^driver/ {d = $3} /^refcnt/ && $3 > 1 {print \"aes \" d \" \" $3}'"
                         " /proc/crypto")
        console = (node.folder / "console-1.log").read_text(errors="replace") + vm.console()
        node.poweroff()
        yield Enrolled(node, key, {**fields, **{f"2nd.{k}": v for k, v in fields2.items()}},
                       status + "\n" + lsblk + "\n" + status2 + "\n" + aes, t1, t2, console)
    finally:
        node.stop()


@pytest.mark.slow
def test_first_boot_enrolls_keys_encrypts_data_and_applies_config(enrolled: Enrolled) -> None:
    c = enrolled.console
    # enrollment happens once, on the machine in setup mode, then the firmware resets; the
    # second boot finds the machine in user mode
    assert len(re.findall(ENROLLING, c)) == 1 and len(re.findall(ENROLLED, c)) == 1
    assert enrolled.fields["slot"] == "a"
    assert enrolled.fields["secure_boot"] == "on", enrolled.fields
    assert enrolled.fields["verity"] == "on", enrolled.fields
    assert enrolled.fields["encryption"] == "luks2-formatted", enrolled.fields
    assert enrolled.fields["2nd.encryption"] == "luks2-tpm2", enrolled.fields
    # the partition under the LUKS2 device grew to the end of the 4 GiB disk
    assert enrolled.fields["disk"] == "4.00GiB", enrolled.fields
    assert float(enrolled.fields["data_part"].removesuffix("GiB")) > 1.6, enrolled.fields
    assert "trust:     secure boot on, verity on, data encryption luks2-formatted" in \
        enrolled.status, enrolled.status
    assert "trust:     secure boot on, verity on, data encryption luks2-tpm2" in \
        enrolled.status, enrolled.status
    # the key is on the console once, and no second boot shows it again
    assert c.count(enrolled.recovery_key) == 1
    assert re.search(r"/dev/mapper/osb-data\s+ext4", enrolled.status), enrolled.status
    # the data is encrypted with AES-NI, not the generic C code: dm-crypt keeps the AES it
    # finds at open (drivers/md/dm-crypt.c, crypt_alloc_tfms_skcipher: its transforms are
    # allocated once, there), so aesni_intel must be loaded and self-tested by then
    # (its udev loads it for the CPU's AES flag; loaded by name just before the open, the
    # data was opened with aes-generic)
    in_use = re.findall(r"aes (\S+) \d+\r?$", enrolled.status, re.M)
    assert [d for d in in_use if d.startswith("xts-aes-aesni")], " ".join(in_use)
    print(f"\nsigned first boot to applied config: {enrolled.first_applied:.0f} s (TCG, incl. "
          f"key enrollment reset and LUKS format); second boot: {enrolled.second_applied:.0f} s")


@pytest.mark.slow
def test_disk_in_another_machine_asks_for_the_recovery_key_and_formats_nothing(
        enrolled: Enrolled, tmp_path: Path) -> None:
    other = enrolled.node.another_machine(tmp_path / "n2")
    before = digest(other.disk, 3)
    assert probe(other.disk, partitions(other.disk)[1][3]).get("TYPE") == "crypto_LUKS"
    vm = other.start()
    try:
        vm.wait_for(ENROLLED, 300)  # its own firmware: setup mode, the fleet's keys again
        vm.wait_for(r"osbuilder: data: the TPM2 did not release the key", BOOT)
        vm.wait_for(r"osbuilder: data: enter the recovery key of /dev/vda4:", 120)
        m = other.mark()
        time.sleep(2)
        other.vm.type("aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-eeeeeeee-ffffffff-gggggggg-hhhhhhhh\n")  # type: ignore[union-attr]
        # cryptsetup's answer to a wrong passphrase, then the next prompt
        vm.wait_for(r"No key available with this passphrase", 120, m)
        vm.wait_for(r"osbuilder: data: enter the recovery key of /dev/vda4:", 120, m)
        assert not re.search(APPLIED, vm.console()), "the node went on without its data"
    finally:
        other.stop()
    assert digest(other.disk, 3) == before, "the data partition changed without its key"
    # the recovery key opens it on this machine
    vm = other.start()
    try:
        vm.wait_for(r"osbuilder: data: enter the recovery key of /dev/vda4:", BOOT)
        time.sleep(2)
        vm.type(enrolled.recovery_key + "\n")
        vm.wait_for(r"osbuilder: data: unlocked with the recovery key", 300)
        vm.wait_for(APPLIED, BOOT)
        fields = status_fields(vm.wait_for(STATUS, 300).group(1))
        assert fields["encryption"] == "luks2-recovery", fields
    finally:
        other.stop()


def test_one_changed_byte_of_root_a_stops_the_boot_and_the_data_stays_blank(
        signed: Build, tmp_path: Path) -> None:
    node = TrustNode.fresh(signed.image, tmp_path / "n")
    root_a = partitions(node.disk)[1][1]
    with node.disk.open("r+b") as f:  # block 0 of the squashfs: its superblock
        f.seek(root_a.start + 100)
        b = f.read(1)
        f.seek(root_a.start + 100)
        f.write(bytes([b[0] ^ 0xFF]))
    hash_a = root_hash(signed.log)
    vm = node.start()
    try:
        vm.wait_for(ENROLLED, 300)
        why = vm.wait_for(r"osbuilder: verity: root of PARTLABEL=OSB_ROOT_A does not match "
                          rf"its root hash {hash_a}: refusing to boot", BOOT)
        m = why.end()
        vm.wait_for(PANIC, 120, m)
        # A is the only slot holding a root: the next start tries A again, and fails again
        vm.wait_for(r"osbuilder: verity: root of PARTLABEL=OSB_ROOT_A does not match", BOOT, m)
        c = vm.console()
    finally:
        node.stop()
    assert "device-mapper: verity" in c and "is corrupted" in c, c[-3000:]
    assert not re.search(r"osbuilder: data:|osbuilder: slot a|applied config", c), c[-3000:]
    assert probe(node.disk, partitions(node.disk)[1][3]) == {}, "the data partition was touched"


@dataclass
class Releases:
    v1: Build
    v2: Build
    v3: Build
    www: Path


@pytest.fixture(scope="module")
def releases(signed: Build, fleet_keys: Path, build_cache: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Releases:
    """v2 (1.1.0) signed by the fleet; v3 (1.2.0) whose bundle the fleet signed but whose
    UKIs another Secure Boot db key signed (as if a build machine had the wrong keys)."""
    tmp = tmp_path_factory.mktemp("trust-releases")
    k3s = write_release_dir(tmp / "k3s")
    www = tmp / "www"
    v2 = build_signed(www, build_cache, "1.1.0", k3s, fleet_keys)
    other = tmp / "other-keys"
    init_keys(other, "someone else")
    mixed = tmp / "v3-keys"
    shutil.copytree(fleet_keys, mixed)
    for name in ("PK", "KEK", "db"):
        for suffix in (".key.pem", ".cert.pem", ".auth"):
            shutil.copyfile(other / f"{name}{suffix}", mixed / f"{name}{suffix}")
    shutil.copyfile(other / "secure-boot-owner.guid", mixed / "secure-boot-owner.guid")
    v3 = build_signed(tmp / "v3", build_cache, "1.2.0", k3s, mixed)
    shutil.copyfile(v3.out / "osbuilder-qemu-amd64-1.2.0.raucb",
                    www / "osbuilder-qemu-amd64-1.2.0.raucb")
    return Releases(signed, v2, v3, www)


@pytest.fixture
def www(releases: Releases) -> Iterator[Served]:
    with serve_files(releases.www) as served:
        yield served


@pytest.mark.slow
def test_upgrade_keeps_data_unlocked_and_a_foreign_signed_uki_falls_back(
        releases: Releases, www: Served, tmp_path: Path) -> None:
    node = TrustNode.fresh(releases.v1.image, tmp_path / "n",
                           guest_forwards=(guestfwd("10.0.2.100:8080", www.port),))
    try:
        first_boot(node, root_hash(releases.v1.log))
        node.login()
        rc, _ = node.sh("echo kept-across-slots | sudo tee /var/lib/keep.txt && sync")
        assert rc == 0
        # v1 -> v2, the product's upgrade path: RAUC, the slot hook stages B's UKI
        m0 = node.mark()
        vm = node.vm
        assert vm is not None
        vm.type(f"sudo osbuilder-agent upgrade {URL}/osbuilder-qemu-amd64-1.1.0.raucb\n")
        vm.wait_for(r"installed slot b in ([\d.]+) s; it boots next, 3 tries", 900, m0)
        vm.wait_for(r"upgrade: rebooting", 120, m0)
        # B's UKI, staged by the bundle's slot hook, carries v2's root hash
        vm.wait_for(r"osbuilder: verity: root PARTLABEL=OSB_ROOT_B verified against "
                    rf"{root_hash(releases.v2.log)}", BOOT, m0)
        vm.wait_for(r"osbuilder: data: unlocked with the TPM2", 300, m0)
        vm.wait_for(r"health gate passed: slot b \(1\.1\.0\) marked good", BOOT, m0)
        node.login(since=m0)
        rc, out = node.sh("sudo osbuilder-agent status; cat /var/lib/keep.txt")
        assert "version:   1.1.0" in out and "kept-across-slots" in out, out
        assert "data encryption luks2-tpm2" in out, out

        # v3: the fleet signed the bundle, another db key the UKIs: the agent refuses it
        # before RAUC writes anything (the firmware would not start it)
        rc, out = node.sh(f"sudo osbuilder-agent upgrade {URL}/osbuilder-qemu-amd64-1.2.0.raucb",
                          900)
        assert rc == ExitCode.BAD_INPUT, out
        assert re.search(r"uki-[ab]\.efi: not signed by a key in this machine's Secure Boot "
                         r"db: refusing it", out), out
        node.poweroff()
    finally:
        node.stop()

    # the same UKI put on the ESP by hand as slot A's, on trial with 3 tries and the highest
    # priority (what the agent's check keeps an update from doing): the firmware refuses it
    esp = partitions(node.disk)[1][0]
    foreign = tmp_path / "uki.efi"
    foreign.write_bytes(fat_read(releases.v3.image, partitions(releases.v3.image)[1][0],
                                 "osb/a/uki.efi"))
    entries = esp_files(node.disk, "loader/entries")
    assert "osb-b.conf" in entries, entries
    target = f"{node.disk}@@{esp.start}"
    for old in entries:
        if old.startswith("osb-a"):
            subprocess.run(["mdel", "-i", target, f"::/loader/entries/{old}"], check=True)
    entry = tmp_path / "osb-a+3.conf"
    entry.write_text("title osbuilder 1.2.0 (slot A)\nsort-key osbuilder\nversion 9\n"
                     "efi /osb/a/uki.efi\n")
    subprocess.run(["mcopy", "-o", "-i", target, str(foreign), "::/osb/a/uki.efi"], check=True)
    subprocess.run(["mcopy", "-o", "-i", target, str(entry), "::/loader/entries/osb-a+3.conf"],
                   check=True)
    try:
        vm = node.start()
        denied = 0
        # systemd-boot 257 counts the try, then hands the refusal back to the firmware,
        # which does not reset (reboot-on-error came in 258): a power cycle per try
        while True:
            m = vm.wait_for(rf"{DENIED}|osbuilder: slot b", BOOT)
            if "osbuilder: slot b" in m.group(0):
                break
            denied += 1
            assert denied <= 3, "slot A was tried more than its 3 tries"
            vm = node.power_cycle()
        assert denied == 3, denied
        vm.wait_for(r"osbuilder: data: unlocked with the TPM2", 300)
        vm.wait_for(APPLIED, BOOT)
    finally:
        node.stop()
    assert "osb-a+0-3.conf" in esp_files(node.disk, "loader/entries")


@pytest.mark.slow
def test_figures_boot_time_with_and_without_verity_and_luks(
        enrolled: Enrolled, qemu_amd64_build: Build, signed: Build, tmp_path: Path) -> None:
    """The same qemu-amd64 build without keys (no Secure Boot, no verity, ext4 data), booted
    twice on this host right after the signed one: boot to `applied config`, build time,
    image and bundle size."""
    node = TrustNode.fresh(qemu_amd64_build.image, tmp_path / "plain", secure_boot=False)
    try:
        vm = node.start()
        vm.wait_for(APPLIED, BOOT)
        t1 = vm.elapsed()
        fields = status_fields(vm.wait_for(STATUS, 300).group(1))
        node.login()
        node.poweroff()
        vm = node.start()
        vm.wait_for(APPLIED, BOOT)
        t2 = vm.elapsed()
    finally:
        node.stop()
    # OVMF's plain build with an empty variable store has no platform key: setup mode
    assert fields["secure_boot"] in ("off", "setup") and fields["verity"] == "off", fields
    assert fields["encryption"] == "none", fields

    def size(b: Build, ext: str) -> str:  # the session's plain build makes no bundle
        found = list(b.out.glob(f"*.{ext}"))
        return f"{found[0].stat().st_size / 1e6:.1f}" if found else "-"

    def used(b: Build) -> float:
        return next(b.out.glob("*.img")).stat().st_blocks * 512 / 1e6

    print(f"\nboot to applied config (TCG, s): first boot plain {t1:.0f}, signed "
          f"{enrolled.first_applied:.0f} (ratio {enrolled.first_applied / t1:.2f}); second boot "
          f"plain {t2:.0f}, signed {enrolled.second_applied:.0f} (ratio "
          f"{enrolled.second_applied / t2:.2f})")
    print(f"build (s): plain {qemu_amd64_build.seconds:.0f}, signed {signed.seconds:.0f}")
    print(f"image on disk (MB): plain {used(qemu_amd64_build):.1f}, signed {used(signed):.1f}; "
          f"bundle (MB): plain {size(qemu_amd64_build, 'raucb')}, signed "
          f"{size(signed, 'raucb')}")


@pytest.mark.slow
def test_changed_root_of_the_slot_on_trial_falls_back_to_the_other_slot(
        releases: Releases, www: Served, tmp_path: Path) -> None:
    """Leg 2 with two slots: v2 installed in B by the upgrade path and on trial; one byte of
    B's root changed before its tries ran out. Each try stops in the initramfs, then
    systemd-boot's boot counting boots A (v1), whose data still unlocks."""
    node = TrustNode.fresh(releases.v1.image, tmp_path / "n",
                           guest_forwards=(guestfwd("10.0.2.100:8080", www.port),))
    hash_b = root_hash(releases.v2.log)
    try:
        first_boot(node, root_hash(releases.v1.log))
        node.login()
        m0 = node.mark()
        vm = node.vm
        assert vm is not None
        vm.type(f"sudo osbuilder-agent upgrade {URL}/osbuilder-qemu-amd64-1.1.0.raucb\n")
        vm.wait_for(r"installed slot b in [\d.]+ s; it boots next, 3 tries", 900, m0)
        # B's first try opens its root: power off there, B stays on trial (one try used)
        vm.wait_for(rf"osbuilder: verity: root PARTLABEL=OSB_ROOT_B verified against {hash_b}",
                    BOOT, m0)
    finally:
        node.stop()
    assert "osb-b+2-1.conf" in esp_files(node.disk, "loader/entries")
    root_b = partitions(node.disk)[1][2]
    with node.disk.open("r+b") as f:  # block 0 of B's squashfs
        f.seek(root_b.start + 100)
        b = f.read(1)
        f.seek(root_b.start + 100)
        f.write(bytes([b[0] ^ 0xFF]))
    try:
        vm = node.start()
        m = 0
        for _ in range(2):  # the two tries B has left, each ending in panic= (a reboot)
            m = vm.wait_for(r"osbuilder: verity: root of PARTLABEL=OSB_ROOT_B does not match "
                            rf"its root hash {hash_b}: refusing to boot", BOOT, m).end()
            m = vm.wait_for(PANIC, 120, m).end()
        vm.wait_for(r"osbuilder: verity: root PARTLABEL=OSB_ROOT_A verified against "
                    rf"{root_hash(releases.v1.log)}", BOOT, m)
        vm.wait_for(r"osbuilder: data: unlocked with the TPM2", 300, m)
        vm.wait_for(APPLIED, BOOT, m)
        fields = status_fields(vm.wait_for(STATUS, 300, m).group(1))
    finally:
        node.stop()
    assert fields["slot"] == "a" and fields["version"] == "1.0.0", fields
    assert "osb-b+0-3.conf" in esp_files(node.disk, "loader/entries")
