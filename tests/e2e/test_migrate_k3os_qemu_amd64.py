"""A k3OS node's disk migrated in place from the osbuilder ISO (QEMU TCG, OVMF).

The disk is made the way k3OS's installer makes it on a UEFI machine and grown as its
first boot grows it (tests/helpers/k3os_disk.py cites rancher/k3os@8cdfdf2 install.sh and
mode-disk for each choice), with a k3s server's state in place: SQLite state.db, TLS
files, token, node password, host keys, k3OS's random host name, /home/rancher, and the
three k3OS config files. The ISO's own "migrate" boot entry (its kernel, initrd and
options read from the ISO's ESP; QEMU boots them directly, as picking the entry in the
menu would) migrates it with no one at the console (install.silent in the ISO's config)
and reboots; the disk then boots osbuilder alone. Checked from the console of the
migrated node and by reading the disk image afterwards: the same node password,
datastore, token, host keys and host name, rancher's files, the config converted and
k3OS's file kept beside it. Secrets are compared by digest, never printed.

k3s is a stand-in (TEST DOUBLE, tests/helpers/k3s_fixture.py): it starts as the server
from the generated config; a real cluster rejoin cannot be shown here.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import Build, live_formats
from tests.helpers.image import Part, fat_read, partitions
from tests.helpers.k3os_disk import (
    LOCAL_CONFIG,
    K3osNode,
    debugfs_read,
    debugfs_stat,
    make_disk,
    state_tree,
)
from tests.helpers.k3s_fixture import Served
from tests.helpers.live_vm import cdrom, vm
from tests.helpers.migrate_checks import boots_k3os, boots_osbuilder, k3os_view

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIMEOUT = 900
GIB = 1 << 30
# the live system's own config: no one answers the console (install.silent), no device
# named (the one k3OS disk is found)
LIVE_CONFIG = {"hostname": "migrator", "k3os": {"password": "live-e2e",
                                                "install": {"silent": True}}}


@pytest.fixture(scope="session")
def migrate_iso(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
                k3s_server: Served, qemu_amd64_build: Build) -> Path:
    build = live_formats(tmp_path_factory, build_cache, k3s_server, "migrate", "img,iso",
                         LIVE_CONFIG)
    return build.out / "osbuilder-qemu-amd64-1.0.0.iso"


def migrate_boot(iso: Path, work: Path) -> tuple[str, ...]:
    """QEMU options booting the ISO's "migrate" menu entry: the ISO as a CD, and the entry's
    kernel, initrd and options read from the ISO's ESP (-kernel takes boot index 0)."""
    esp = next(p for p in partitions(iso)[1] if p.type == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
    entry = fat_read(iso, esp, "loader/entries/osb-migrate.conf").decode()
    options = re.search(r"^options\s+(.*)$", entry, re.M)
    assert options and "osb.mode=migrate" in options.group(1), entry
    files = {}
    for key in ("linux", "initrd"):
        m = re.search(rf"^{key}\s+(\S+)$", entry, re.M)
        assert m, entry
        files[key] = work / Path(m.group(1)).name
        files[key].write_bytes(fat_read(iso, esp, m.group(1).lstrip("/")))
    return (*cdrom(iso, bootindex=1), "-kernel", str(files["linux"]),
            "-initrd", str(files["initrd"]), "-append", options.group(1))


def sha(data: bytes | None) -> str:
    assert data is not None
    return hashlib.sha256(data).hexdigest()


def test_k3os_disk_migrates_in_place_and_boots_osbuilder(migrate_iso: Path,
                                                          tmp_path: Path) -> None:
    node = K3osNode()
    tree = state_tree(tmp_path / "state", node)
    k3s = tree / "k3os/data/var/lib/rancher/k3s"
    state_db = (k3s / "server/db/state.db").read_bytes()
    ed25519 = (tree / "k3os/data/var/lib/rancher/k3os/ssh/ssh_host_ed25519_key").read_bytes()
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * GIB, tree, "gpt")
    subprocess.run(["rm", "-rf", str(tree)], check=True)  # the disk is the only copy now

    with vm(disk, tmp_path, "migrate", (*migrate_boot(migrate_iso, tmp_path),
                                        "-no-reboot")) as v:
        v.wait_for(r"osbuilder-agent: /dev/vda: k3OS's GPT layout, K3OS_STATE on /dev/vda2",
                   TIMEOUT)
        found = v.elapsed()
        m = v.wait_for(r"osbuilder-agent: migrated /dev/vda to osbuilder in (\d+) s",
                       TIMEOUT)
        assert v.proc is not None
        v.proc.wait(timeout=180)  # rebooting into osbuilder: -no-reboot ends QEMU
        console = v.console()
    print(f"\nlive boot to the k3OS disk found: {found:.0f} s; migration of a 4 GiB k3OS "
          f"disk: {m.group(1)} s (TCG)")
    assert "k3s server (sqlite datastore), its node password, 4 SSH host key files, host " \
           "name k3os-21811" in console
    assert "refus" not in console and "Traceback" not in console
    assert node.node_password.decode() not in console and node.token.decode() not in console

    label, parts = partitions(disk)
    assert label == "gpt"
    assert [p.name for p in parts] == ["OSB_BOOT", "OSB_ROOT_A", "OSB_ROOT_B", "OSB_DATA"]
    data = parts[3]
    assert data.start + data.size == 4095 * 2**20  # to the end of the disk: it grows
    check_data_partition(disk, data, node, state_db, ed25519)
    check_boot_partition(disk, parts[0], node)

    with vm(disk, tmp_path, "migrated") as v:  # no CD: the disk alone, same UEFI variables
        applied = v.wait_for(r"osbuilder-agent: applied config \(sources=(\S+), "
                             r"role=server, hostname=k3os-21811\)", TIMEOUT)
        v.wait_for(r"k3s-standin: node API on 127\.0\.0\.1:6444, node k3os-21811 Ready=True",
                   TIMEOUT)
        v.wait_for(r"k3os-21811 login:", TIMEOUT)
        v.login("rancher", "rancher-e2e")  # k3OS's user, k3OS's password
        out = v.shell("sudo sha256sum /etc/rancher/node/password "
                      "/var/lib/rancher/k3s/server/db/state.db "
                      "/var/lib/rancher/k3s/server/token "
                      "/var/lib/osbuilder/ssh/etc/ssh/ssh_host_ed25519_key; hostname; "
                      "stat -c '%U %a' ~/notes.txt ~/.ssh/authorized_keys; "
                      "df -m --output=size /data | tail -1")
        record = v.shell("sudo cat /var/lib/rancher/k3s-standin/record.json")
        keys = v.shell("sudo ssh-keygen -lf /var/lib/osbuilder/ssh/etc/ssh/"
                       "ssh_host_ed25519_key.pub")
    sources = applied.group(1).split(",")
    assert sources[-3:] == ["/boot/efi/config.yaml", "/var/lib/rancher/k3os/config.yaml",
                            "/var/lib/rancher/k3os/config.d/10-taints.yaml"], sources
    assert f"{sha(node.node_password)}  /etc/rancher/node/password" in out
    assert f"{sha(state_db)}  /var/lib/rancher/k3s/server/db/state.db" in out
    token = sha(node.token + b"\n")
    assert f"{token}  /var/lib/rancher/k3s/server/token" in out
    assert f"{sha(ed25519)}  /var/lib/osbuilder/ssh/etc/ssh/ssh_host_ed25519_key" in out
    assert "k3os-21811" in out.split()  # `hostname`
    assert "rancher 644" in out and "rancher 600" in out
    assert int(out.split()[-1]) > 1500  # the data file system grew to its partition
    standin = json.loads(record[record.index("{"):record.rindex("}") + 1])
    assert standin["argv"][0] == "server"
    assert "token" not in (standin["config"] or "")  # rejoins with the datastore's token
    assert "k3os-host" in keys  # k3OS's host key, not a new one


def check_data_partition(disk: Path, data: Part, node: K3osNode, state_db: bytes,
                         ed25519: bytes) -> None:
    """The migrated data file system, read from the image without mounting it."""
    def read(path: str) -> bytes | None:
        return debugfs_read(disk, data.start, path)

    assert read("/etc/rancher/node/password") == node.node_password
    assert read("/var/lib/rancher/k3s/server/db/state.db") == state_db
    assert read("/var/lib/rancher/k3s/server/token") == node.token + b"\n"
    assert read("/var/lib/osbuilder/hostname") == b"k3os-21811\n"
    assert read("/var/lib/osbuilder/ssh/etc/ssh/ssh_host_ed25519_key") == ed25519
    assert read("/var/lib/rancher/k3os/config.yaml") == LOCAL_CONFIG.encode()
    assert read("/home/rancher/notes.txt") == b"kept across the migration\n"
    assert "User:  1001   Group:  1001" in debugfs_stat(disk, data.start,
                                                      "/home/rancher/notes.txt")
    assert "Mode:  0600" in debugfs_stat(disk, data.start, "/etc/rancher/node/password")


def check_boot_partition(disk: Path, boot: Part, node: K3osNode) -> None:
    cfg = fat_read(disk, boot, "config.yaml").decode()
    assert cfg.startswith("# migrated from k3OS's /k3os/system/config.yaml")
    converted = yaml.safe_load(cfg)
    assert converted["k3os"]["password"] == "rancher-e2e"
    assert converted["k3os"]["k3s_args"] == ["server", "--disable=traefik"]
    assert "install" not in converted["k3os"]  # an installed node does not install again
    assert fat_read(disk, boot, "k3os/config.yaml").decode() == node.system_config
    assert b"osb.slot=a" in fat_read(disk, boot, "loader/entries/osb-a.conf")


# where QEMU is killed (SIGKILL: the guest loses what it had not written out), in order
CUTS = (r"osbuilder-agent: copying k3OS's data", r"osbuilder-agent: slot A: \d+ MiB written",
        r"osbuilder-agent: writing the new partition table")


def test_power_cuts_during_migration_leave_k3os_or_osbuilder(migrate_iso: Path,
                                                             tmp_path: Path) -> None:
    """QEMU killed at three points of a migration, each on a fresh live boot: the disk then
    boots k3OS with its data unchanged (its table, every block K3OS_STATE uses, its ESP,
    e2fsck) or is a complete osbuilder disk; a last run finishes the migration."""
    node = K3osNode()
    disk = tmp_path / "disk.img"
    make_disk(disk, 4 * GIB, state_tree(tmp_path / "state", node), "gpt")
    d, blocks, view = k3os_view(disk)
    entry = migrate_boot(migrate_iso, tmp_path)
    outcomes = []
    for i, cut in enumerate(CUTS):
        with vm(disk, tmp_path, f"cut{i}", (*entry, "-no-reboot")) as v:
            v.wait_for(cut, TIMEOUT)
            v.kill()
        k3os = boots_k3os(disk, d, view, blocks)
        if not k3os:
            assert boots_osbuilder(disk, None, node), f"cut at {cut!r}: neither system"
        outcomes.append(f"{cut.split(': ')[1][:20]}... -> {'k3OS' if k3os else 'osbuilder'}")
        if not k3os:
            break
    print("\npower cuts: " + "; ".join(outcomes))
    assert outcomes[0].endswith("k3OS") and outcomes[1].endswith("k3OS")
    if outcomes[-1].endswith("k3OS"):  # the table was not reached: migrate again, whole
        with vm(disk, tmp_path, "finish", (*entry, "-no-reboot")) as v:
            v.wait_for(r"osbuilder-agent: migrated /dev/vda to osbuilder in \d+ s", TIMEOUT)
            assert v.proc is not None
            v.proc.wait(timeout=180)
    assert boots_osbuilder(disk, None, node)
