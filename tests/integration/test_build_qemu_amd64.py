"""A real build of qemu-amd64 from an empty cache, inspected on the image file alone.

k3s here is a stand-in (TEST DOUBLE) served by a local HTTP fixture playing the k3s
channel server and release downloads; user builds fetch the real release.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from osbuilder.host.download import sha256_file
from osbuilder.host.stages import ROOT_STAGES, agent_modules
from osbuilder.host.stages.units import (
    BACKGROUND_AT_STARTUP,
    DROPIN,
    SHARE_RESET,
    STARTUP_WEIGHT,
)
from osbuilder.shared.errors import ExitCode
from osbuilder.shared.nodeconfig.judged import BUILD_VERDICT, verdict_record
from tests.conftest import EPOCH, Build, osbuilder_build, require_build_capability
from tests.helpers.image import (
    fat_files,
    fat_read,
    initramfs_files,
    partitions,
    probe,
    read_range,
    squash_extract,
    squash_list,
    squash_read,
)
from tests.helpers.k3s_fixture import VERSION, Served
from tests.unit.test_rootfs_checks import AARCH64, make_rootfs

pytestmark = pytest.mark.integration

ROOT_X86_64 = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
MIB = 1 << 20


def test_partition_table_and_file_systems(qemu_amd64_build: Build) -> None:
    img = qemu_amd64_build.image
    label, parts = partitions(img)
    assert label == "gpt"
    assert [(p.name, p.type) for p in parts] == [
        ("OSB_BOOT", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
        ("OSB_ROOT_A", ROOT_X86_64),
        ("OSB_ROOT_B", ROOT_X86_64),
        ("OSB_DATA", "0fc63daf-8483-4772-8e79-3d69d8477de4"),
    ]
    assert [p.size // MIB for p in parts] == [256, 1024, 1024, 128]
    assert all(p.start % MIB == 0 for p in parts)
    boot, root_a, root_b, data = (probe(img, p) for p in parts)
    assert (boot["TYPE"], boot["LABEL"]) == ("vfat", "OSB_BOOT")
    assert root_a["TYPE"] == "squashfs"
    assert root_b == {} or "TYPE" not in root_b, f"slot B must be empty, found {root_b}"
    assert (data["TYPE"], data["LABEL"]) == ("ext4", "OSB_DATA")


def test_esp_has_systemd_boot_and_slot_a(qemu_amd64_build: Build) -> None:
    img = qemu_amd64_build.image
    esp = partitions(img)[1][0]
    files = fat_files(img, esp)
    for f in ("EFI/BOOT/BOOTX64.EFI", "loader/loader.conf", "loader/entries/osb-a.conf",
              "osb/a/vmlinuz", "osb/a/initrd.img"):
        assert f in files, f"{f} missing from ESP: {files}"
    assert not any(f.startswith("osb/b") for f in files)
    assert b"systemd-boot" in fat_read(img, esp, "EFI/BOOT/BOOTX64.EFI")
    entry = fat_read(img, esp, "loader/entries/osb-a.conf").decode()
    assert "linux /osb/a/vmlinuz" in entry and "initrd /osb/a/initrd.img" in entry
    assert "root=PARTLABEL=OSB_ROOT_A rootfstype=squashfs ro osb.slot=a rauc.slot=a" in entry
    # boot priority 1 under osbuilder's sort key; upgrades add slot b above it
    assert "sort-key osbuilder\nversion 1\n" in entry
    assert "default osb-*" in fat_read(img, esp, "loader/loader.conf").decode()
    assert "console=ttyS0,115200" in entry
    # the kernel's LSM list without bpf (osbuilder/host/kernel_args.py): systemd then
    # does not load its BPF program at every boot
    lsm = re.search(r"(?:^| )lsm=(\S+)", entry)
    assert lsm and "apparmor" in lsm[1].split(",") and "bpf" not in lsm[1].split(","), entry
    kernel = fat_read(img, esp, "osb/a/vmlinuz")
    assert kernel[0x202:0x206] == b"HdrS", "vmlinuz is not an x86 bzImage"
    initrd = fat_read(img, esp, "osb/a/initrd.img")
    assert initrd[:4] == b"\x28\xb5\x2f\xfd" or initrd[:6] == b"070701", "initrd not zstd/cpio"
    assert len(initrd) > 1_000_000
    in_initrd = initramfs_files(initrd)
    # a module file may spell its name with dashes (dm-verity.ko: module dm_verity)
    carried = {Path(n).name.split(".")[0].replace("-", "_") for n in in_initrd if ".ko" in n}
    assert {"virtio_blk", "squashfs", "overlay", "vfat", "loop", "dm_verity"} <= carried
    # none force-loaded at "Loading essential drivers" (initramfs-tools' load_modules
    # modprobes each line of conf/modules): udev and the kernel load what the boot uses
    loaded = in_initrd.get("conf/modules", b"").decode().split("\n")
    assert not [m for m in loaded if m.strip() and not m.startswith("#")], loaded


def test_root_squashfs_content(qemu_amd64_build: Build, tmp_path: Path) -> None:
    img = qemu_amd64_build.image
    root_a = partitions(img)[1][1]
    listing = squash_list(img, root_a)
    for f in ("usr/bin/k3s", "usr/bin/osbuilder-agent", "usr/lib/os-release",
              "usr/share/osbuilder/manifest.json", "etc/fstab", "data", "boot/efi",
              "usr/lib/systemd/system/k3s.service", "usr/lib/systemd/system/k3s-agent.service",
              "usr/lib/python3/dist-packages/osbuilder/node/agent_cli.py",
              "usr/lib/python3/dist-packages/osbuilder/shared/schemas/config.schema.json",
              "usr/lib/python3/dist-packages/osbuilder/bootloaders/systemd_boot/chooser.py"):
        assert f in listing, f"{f} missing from the root squashfs"
    # the node side and the shared core only: no builder, publisher or QEMU harness
    site = "usr/lib/python3/dist-packages/osbuilder/"
    host = [f for f in listing if f.startswith(site + "host")
            or (f.startswith(site + "bootloaders/") and "/build" in f)]
    assert host == [], f"host-side code in the image: {host[:5]}"
    # the presets' disables reached the image: nothing for apt's or e2scrub's timers to do
    # on an immutable root (each would be a wake-up and CPU on a Pi)
    assert "usr/lib/systemd/system/apt-daily.timer" in listing
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer"):
        assert f"etc/systemd/system/timers.target.wants/{timer}" not in listing, timer
    assert not [f for f in listing if f.startswith("etc/ssh/ssh_host_")], "host keys shipped"
    # sshd is socket-activated (the preset): the socket enabled, the service not
    assert "etc/systemd/system/sockets.target.wants/ssh.socket" in listing
    assert "etc/systemd/system/multi-user.target.wants/ssh.service" not in listing
    # boot time (issue 18): the vsock sshd generator, the crypttab/integritytab/veritytab
    # generators (the initramfs opens verity and LUKS2 itself), cloud-init's generator (the
    # image ships cloud-init off; tests/e2e/test_data_sources_qemu_amd64.py turns it on) and
    # Debian's systemd-repart.service (no definitions to run; it only starts module
    # loaders), systemd-remount-fs, systemd-udev-load-credentials and modprobe@drm (nothing
    # to do on a node: osbuilder/host/stages/units.py) are masked, a /dev/null link of
    # their name in /etc (systemd.generator(7), systemctl(1) mask), and the root is read in
    # 128 KiB blocks
    assert "etc/cloud/cloud-init.disabled" in listing
    for masked in ("etc/systemd/system-generators/systemd-ssh-generator",
                   "etc/systemd/system-generators/systemd-cryptsetup-generator",
                   "etc/systemd/system-generators/systemd-integritysetup-generator",
                   "etc/systemd/system-generators/systemd-veritysetup-generator",
                   "etc/systemd/system-generators/cloud-init-generator",
                   "etc/systemd/system/systemd-repart.service",
                   "etc/systemd/system/systemd-remount-fs.service",
                   "etc/systemd/system/systemd-udev-load-credentials.service",
                   "etc/systemd/system/modprobe@drm.service"):
        assert masked in listing
        assert squash_extract(img, root_a, masked, tmp_path).readlink() == Path("/dev/null")
    superblock = subprocess.run(["unsquashfs", "-s", "-o", str(root_a.start), str(img)],
                                check=True, capture_output=True, text=True).stdout
    assert re.search(r"^Block size 131072$", superblock, re.M), superblock
    # no binfmt.d entry left, so systemd-binfmt.service does not start (systemd's
    # units/systemd-binfmt.service.in: ConditionDirectoryNotEmpty=| on each binfmt.d
    # folder); the python3 package's entry, for running .pyc files, is left out
    assert "usr/lib/systemd/system/systemd-binfmt.service" in listing
    assert not [f for f in listing if "/binfmt.d/" in f], "a binfmt.d entry in the image"
    # the login prompts do not wait for the job queue to empty (Type=idle's up to 5 s:
    # systemd.service(5); src/core/manager.c closes the idle pipe only with no jobs left)
    for getty in ("getty@", "serial-getty@"):
        dropin = f"usr/lib/systemd/system/{getty}.service.d/50-osbuilder.conf"
        assert "\nType=simple\n" in squash_read(img, root_a, dropin, tmp_path).decode()
    # networkd may not call bpf(2), so it loads no sysctl monitor (systemd's
    # src/network/networkd-sysctl.c); tests/e2e/test_agent_qemu_amd64.py checks the VM
    dropin = "usr/lib/systemd/system/systemd-networkd.service.d/50-osbuilder.conf"
    assert "\nSystemCallFilter=~bpf\n" in squash_read(img, root_a, dropin, tmp_path).decode()
    # the gettys' systemd-user-sessions.service does not wait for network.target: /etc's
    # copy of Debian's unit without it; SSH sessions end before the network at shutdown
    # through osbuilder-ssh-sessions.service, enabled (osbuilder/host/stages/units.py:
    # ORDER_OVERRIDES; tests/e2e/test_agent_qemu_amd64.py checks both in the VM)
    packaged = squash_read(img, root_a, "usr/lib/systemd/system/systemd-user-sessions.service",
                           tmp_path).decode()
    override = squash_read(img, root_a, "etc/systemd/system/systemd-user-sessions.service",
                           tmp_path).decode()
    assert re.search(r"^After=.*\bnetwork\.target\b", packaged, re.M), packaged
    assert not re.search(r"^After=.*\bnetwork\.target\b", override, re.M), override
    assert "\nExecStart=/usr/lib/systemd/systemd-user-sessions start\n" in override
    # sysinit.target does not wait for resolved or timesyncd (/etc's copies without it),
    # which, with networkd, dbus and logind, get a small CPU share while the system starts
    # (ORDER_OVERRIDES, BACKGROUND_AT_STARTUP)
    for name in ("systemd-resolved.service", "systemd-timesyncd.service"):
        packaged = squash_read(img, root_a, f"usr/lib/systemd/system/{name}", tmp_path).decode()
        override = squash_read(img, root_a, f"etc/systemd/system/{name}", tmp_path).decode()
        assert re.search(r"^Before=.*\bsysinit\.target\b", packaged, re.M), packaged
        assert not re.search(r"^Before=.*\bsysinit\.target\b", override, re.M), override
        assert f"\nExecStart=!!/usr/lib/systemd/{name.removesuffix('.service')}\n" in override
    for name in BACKGROUND_AT_STARTUP:
        dropin = squash_read(img, root_a, f"usr/lib/systemd/system/{name}.d/{DROPIN}",
                             tmp_path).decode()
        assert f"\nStartupCPUWeight={STARTUP_WEIGHT}\n" in dropin, name
    reset = squash_read(img, root_a, f"usr/lib/systemd/system/{SHARE_RESET}", tmp_path).decode()
    assert reset.count("StartupCPUWeight=\n") == len(BACKGROUND_AT_STARTUP), reset
    assert squash_extract(img, root_a, f"etc/systemd/system/multi-user.target.wants/{SHARE_RESET}",
                          tmp_path).readlink() == Path(f"/usr/lib/systemd/system/{SHARE_RESET}")
    wants = "etc/systemd/system/multi-user.target.wants/osbuilder-ssh-sessions.service"
    assert squash_extract(img, root_a, wants, tmp_path).readlink() == Path(
        "/usr/lib/systemd/system/osbuilder-ssh-sessions.service")
    # the agent runs isolated (-I): no /usr/bin or user site on its sys.path; without the
    # site module (-S), whose one folder the agent needs (python3-* packages) the entry adds
    entry = squash_read(img, root_a, "usr/bin/osbuilder-agent", tmp_path)
    assert entry.splitlines()[0] == b"#!/usr/bin/python3 -IS"
    assert b'\nsys.path.append("/usr/lib/python3/dist-packages")\n' in entry
    # ... with its zip first on sys.path (tests/e2e/test_agent_qemu_amd64.py checks that
    # its imports come from there): the node package whole, data files included, as the
    # image's own pycs; the standard library its boot imports; no C extension and no
    # package holding one (PyYAML)
    assert f'sys.path.insert(0, "/{agent_modules.ZIP}")'.encode() in entry
    members = zipfile.ZipFile(squash_extract(img, root_a, agent_modules.ZIP, tmp_path))
    names = set(members.namelist())
    shipped = {f.removeprefix(site) for f in listing
               if f.startswith(site) and "__pycache__" not in f and "." in f.rsplit("/", 1)[-1]}
    assert {"osbuilder/" + (f[:-3] + ".pyc" if f.endswith(".py") else f) for f in shipped
            } <= names, "the zip lacks part of the node package"
    # socket: for the agent's READY=1 (osbuilder/node/sd_notify.py imports it when sent)
    assert {"json/__init__.pyc", "dataclasses.pyc", "typing.pyc", "socket.pyc"} <= names
    assert not [n for n in names if n.startswith("yaml/") or n.endswith(".so")], names
    pyc = "osbuilder/node/__pycache__/agent_cli.cpython-313.pyc"
    assert members.read("osbuilder/node/agent_cli.pyc") == \
        squash_read(img, root_a, site + pyc.removeprefix("osbuilder/"), tmp_path)
    k3s = squash_read(img, root_a, "usr/bin/k3s", tmp_path)
    assert k3s == qemu_amd64_build.k3s.release.files["k3s"]
    assert squash_read(img, root_a, "etc/machine-id", tmp_path) == b""
    # the password-change day of the user sysusers made is SOURCE_DATE_EPOCH's, not the
    # build's: same bytes from builds on different days
    shadow = squash_read(img, root_a, "etc/shadow", tmp_path).decode()
    assert f"\nosb:!*:{int(EPOCH) // 86400}:" in shadow, shadow
    osrel = squash_read(img, root_a, "usr/lib/os-release", tmp_path).decode()
    assert 'IMAGE_VERSION="1.0.0"' in osrel and f'BUILD_ID="{EPOCH}"' in osrel
    assert 'VARIANT_ID="qemu-amd64"' in osrel
    # RAUC's slots and chooser are there; without --keyring the image trusts no bundle
    conf = squash_read(img, root_a, "etc/rauc/system.conf", tmp_path).decode()
    assert "compatible=osbuilder-qemu-amd64" in conf and "bootloader=custom" in conf
    assert "device=/dev/disk/by-partlabel/OSB_ROOT_B" in conf and "bootname=b" in conf
    assert "usr/lib/osbuilder/rauc-bootloader-backend" in listing and "usr/bin/rauc" in listing
    assert "etc/rauc/keyring.pem" not in listing
    assert "no --keyring: this image will refuse every update bundle" in qemu_amd64_build.log
    # k3s is installed but not enabled: the node agent enables the right role
    assert not [f for f in listing if "multi-user.target.wants/k3s" in f]
    # fleet upgrades: the CRD servers deploy, the controller starting with k3s (servers),
    # the node watcher on every node, and the time zones maintenance windows are read in
    crd = squash_read(img, root_a, "usr/share/osbuilder/manifests/osupgrade-crd.yaml",
                      tmp_path).decode()
    assert "name: osupgrades.osbuilder.io" in crd
    for f in ("etc/systemd/system/k3s.service.wants/osbuilder-controller.service",
              "etc/systemd/system/multi-user.target.wants/osbuilder-watch-node.service",
              "usr/lib/python3/dist-packages/osbuilder/node/fleet/controller.py",
              "usr/share/zoneinfo/Europe/Berlin"):
        assert f in listing, f"{f} missing from the root squashfs"


def test_manifest(qemu_amd64_build: Build) -> None:
    m = json.loads(qemu_amd64_build.manifest.read_text())
    assert m["board"] == "qemu-amd64" and m["arch"] == "amd64"
    assert m["k3s"]["version"] == VERSION
    assert m["k3s"]["sha256"] == hashlib.sha256(
        qemu_amd64_build.k3s.release.files["k3s"]).hexdigest()
    names = {p["name"]: p["version"] for p in m["packages"]}
    assert "linux-image-cloud-amd64" in names and "systemd" in names
    assert all(p["version"] for p in m["packages"])
    assert len(names) > 100


def test_progress_and_summary(qemu_amd64_build: Build) -> None:
    log = qemu_amd64_build.log
    assert f"channel stable -> {VERSION}" in log
    if os.environ.get("OSB_TEST_CACHE"):  # a shared cache (tests/conftest.py): maybe warm
        assert any(s in log for s in ("mmdebstrap trixie/amd64", "cached rootfs",
                                      "cached root ")), log[-3000:]
    else:
        assert "mmdebstrap trixie/amd64" in log, "first build must be cold (empty cache)"
    for stage in ("k3s-fetch", "rootfs", "overlay", "k3s", "node-package", "initramfs", "seal",
                  "squash", "bootloader", "assemble", "format img"):
        assert f"] {stage}\n" in log and f"    {stage} done in " in log
    digest = sha256_file(qemu_amd64_build.image)
    assert f"{qemu_amd64_build.image}  " in log and f"sha256 {digest}" in log
    leftovers = [p.name for p in qemu_amd64_build.out.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # SHA256SUMS beside the artifacts, in sha256sum's own format
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=qemu_amd64_build.out,
                          capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    sbom = qemu_amd64_build.image.with_suffix(".spdx.json").name  # stage sbom, every build
    assert sorted(sums.stdout.splitlines()) == sorted([
        f"{qemu_amd64_build.image.name}: OK", f"{qemu_amd64_build.manifest.name}: OK",
        f"{sbom}: OK"])


def test_same_inputs_same_bytes(qemu_amd64_build: Build, build_cache: Path,
                                k3s_server: Served, tmp_path: Path) -> None:
    """Second build from the same inputs and SOURCE_DATE_EPOCH: identical squashfs and
    identical disk image. --rebuild: the root is made again, not taken from the cache."""
    again = osbuilder_build(tmp_path / "out2", build_cache, k3s_server,
                            "--format", "img,qcow2", "--compress", "--rebuild")
    assert "cached rootfs" in again.log and "cached root " not in again.log
    print(f"\nbuild seconds: cold {qemu_amd64_build.seconds:.1f}, warm {again.seconds:.1f}")
    a_parts, b_parts = partitions(qemu_amd64_build.image)[1], partitions(again.image)[1]
    sq_a = read_range(qemu_amd64_build.image, a_parts[1])
    sq_b = read_range(again.image, b_parts[1])
    assert hashlib.sha256(sq_a).hexdigest() == hashlib.sha256(sq_b).hexdigest()
    # digests, not bytes: on a mismatch pytest would diff two 2.4 GB strings (and run out
    # of memory)
    assert sha256_file(qemu_amd64_build.image) == sha256_file(again.image)
    # the other artifacts of the same build hold the same disk
    qcow2 = again.image.with_suffix(".qcow2")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(qcow2)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == again.image.stat().st_size
    subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "qcow2",
                    str(again.image), str(qcow2)], check=True)
    unzstd = tmp_path / "unzstd.img"
    subprocess.run(["zstd", "-q", "-d", "-o", str(unzstd), str(again.image) + ".zst"],
                   check=True)
    assert sha256_file(unzstd) == sha256_file(again.image)


def test_config_only_rebuild_reuses_the_root(qemu_amd64_build: Build, build_cache: Path,
                                             k3s_server: Served, tmp_path: Path) -> None:
    """A new --config changes only the boot partition: the root squashfs comes from the
    stage cache (stages/root_cache.py), byte for byte the first build's."""
    config = tmp_path / "config.yaml"
    config.write_text("hostname: rebuilt\n")
    again = osbuilder_build(tmp_path / "out", build_cache, k3s_server, "--config", str(config))
    assert again.log.count("in the cached root") == len(ROOT_STAGES), again.log
    print(f"\nconfig-only rebuild: {again.seconds:.1f} s (cold build "
          f"{qemu_amd64_build.seconds:.1f} s)")
    first, second = partitions(qemu_amd64_build.image)[1], partitions(again.image)[1]
    assert sha256_file(qemu_amd64_build.image) != sha256_file(again.image)
    assert hashlib.sha256(read_range(qemu_amd64_build.image, first[1])).digest() == \
        hashlib.sha256(read_range(again.image, second[1])).digest()
    assert fat_read(again.image, second[0], "config.yaml") == b"hostname: rebuilt\n"
    # beside it, the build's verdict on that config, for the first boot (judged.py)
    record = json.loads(fat_read(again.image, second[0], BUILD_VERDICT))
    assert record == verdict_record({"hostname": "rebuilt"})


def test_interrupted_build_leaves_nothing(build_cache: Path, k3s_server: Served,
                                          qemu_amd64_build: Build, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, OSB_K3S_CHANNEL_URL=k3s_server.channel_url,
               OSB_K3S_RELEASE_URL=k3s_server.release_url)
    # a run started in the background (nohup, `cmd &`) inherits SIGINT ignored, and Python
    # then keeps ignoring it: give the build Ctrl-C as a terminal would
    proc = subprocess.Popen(
        [sys.executable, "-m", "osbuilder", "build", "--board", "qemu-amd64", "--out", str(out),
         "--cache-dir", str(build_cache)], env=env, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    seen = ""
    for line in proc.stderr:
        seen += line
        if "] squash" in line:
            time.sleep(1)
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, seen + rest
    assert "partial output removed\nosbuilder: interrupted\n" in rest
    assert sorted(p.name for p in out.iterdir()) == []


def test_too_little_space_is_refused(k3s_server: Served, tmp_path: Path) -> None:
    require_build_capability()
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "osb-test", str(small)],
                   check=True)
    try:
        r = subprocess.run([sys.executable, "-m", "osbuilder", "build", "--board",
                            "qemu-amd64", "--out", str(small)], capture_output=True, text=True)
        assert r.returncode == ExitCode.BAD_INPUT
        assert f"--out {small}: only 64 MiB free, a build needs 4096 MiB" in r.stderr
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_tarball_backend_gives_the_same_image(qemu_amd64_build: Build, build_cache: Path,
                                              k3s_server: Served, tmp_path: Path) -> None:
    """rootfs backend `tarball`, fed the rootfs mmdebstrap made: same checks, same bytes."""
    tarball = next((build_cache / "rootfs").glob("qemu-amd64-*.tar"))
    again = osbuilder_build(tmp_path / "out", build_cache, k3s_server,
                            "--rootfs-tarball", str(tarball))
    assert f"rootfs tarball {tarball}" in again.log and "mmdebstrap" not in again.log
    assert sha256_file(again.image) == sha256_file(qemu_amd64_build.image)


def test_tarball_of_another_arch_is_refused(k3s_server: Served, build_cache: Path,
                                            tmp_path: Path) -> None:
    require_build_capability()
    root = make_rootfs(tmp_path / "root", AARCH64)
    tarball = tmp_path / "arm64-rootfs.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
    out = tmp_path / "out"
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, OSB_K3S_CHANNEL_URL=k3s_server.channel_url,
               OSB_K3S_RELEASE_URL=k3s_server.release_url)
    r = subprocess.run([sys.executable, "-m", "osbuilder", "build", "--board", "qemu-amd64",
                        "--out", str(out), "--cache-dir", str(build_cache),
                        "--rootfs-tarball", str(tarball)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == ExitCode.BAD_INPUT
    assert (f"rootfs tarball {tarball}: /bin/sh is built for arm64, but board qemu-amd64 "
            "is amd64") in r.stderr
    assert list(out.iterdir()) == []
