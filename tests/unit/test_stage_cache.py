"""Stage outputs cached by their inputs: the root squashfs (stages/root_cache.py), the
initramfs (stages/initramfs.py), and the image's byte-code made unchecked-hash."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import py_compile
import subprocess
import sys
import threading
from pathlib import Path

from osbuilder.host.boards import load_board
from osbuilder.host.context import BuildContext
from osbuilder.host.k3s_release import K3sArtifact
from osbuilder.host.progress import Progress
from osbuilder.host.secure_boot_keys import SecureBootKeys
from osbuilder.host.settings import BuildOptions
from osbuilder.host.stages.initramfs import tree_digest
from osbuilder.host.stages.node_package import unchecked_pycs
from osbuilder.host.stages.root_cache import evict, locked, root_key
from osbuilder.host.trust_plan import TrustPlan


def context(tmp: Path, **options: object) -> BuildContext:
    given: dict[str, object] = {"version": "1.0.0", "source_date_epoch": 1700000000,
                                "cache_dir": tmp / "cache", **options}
    opts = dataclasses.replace(BuildOptions(), **given)  # type: ignore[arg-type]
    ctx = BuildContext(board=load_board("qemu-amd64"), options=opts, work=tmp / "work",
                       progress=Progress())
    ctx.k3s = K3sArtifact("v1.31.4+k3s1", tmp / "k3s", "ab" * 32, None)
    return ctx


def test_root_key_follows_the_root_inputs_not_the_config(tmp_path: Path) -> None:
    cfg_a, cfg_b, ring = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "ca.pem"
    cfg_a.write_text("hostname: a\n")
    cfg_b.write_text("hostname: b\n")
    ring.write_text("CA one\n")
    base = root_key(context(tmp_path, config=cfg_a))
    assert base is not None and len(base) == 20
    # the config goes on the boot partition, not into the root
    assert root_key(context(tmp_path, config=cfg_b)) == base
    assert root_key(context(tmp_path, version="1.0.1")) != base
    assert root_key(context(tmp_path, source_date_epoch=1700000001)) != base
    with_ring = root_key(context(tmp_path, keyring=ring))
    assert with_ring != base
    ring.write_text("CA two\n")
    assert root_key(context(tmp_path, keyring=ring)) != with_ring
    other_k3s = context(tmp_path)
    other_k3s.k3s = K3sArtifact("v1.31.4+k3s1", tmp_path / "k3s", "cd" * 32, None)
    assert root_key(other_k3s) != base
    arm = context(tmp_path)
    arm.board = load_board("rpi-arm64")
    assert root_key(arm) != base


def test_root_key_follows_the_trust_files_in_the_root(tmp_path: Path) -> None:
    """Stage trust-files puts the db certificate and the PCR public key into the root, and
    takes the data repart definition out of it for LUKS: each is an input of the root."""
    base = root_key(context(tmp_path))
    cert, pub = tmp_path / "db.cert.pem", tmp_path / "pcr.pub.pem"
    cert.write_text("db one\n")
    pub.write_text("pcr one\n")
    keys = SecureBootKeys(tmp_path, tmp_path / "db.key", cert, (), tmp_path / "pcr.key", pub)

    def key(trust: TrustPlan) -> str | None:
        ctx = context(tmp_path)
        ctx.trust = trust
        return root_key(ctx)

    signed = key(TrustPlan(secure_boot=keys, verity=True))
    assert signed != base
    assert key(TrustPlan(secure_boot=keys, verity=True, encryption="luks")) != signed
    cert.write_text("db two\n")
    assert key(TrustPlan(secure_boot=keys, verity=True)) != signed


def test_dib_roots_are_not_cached(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    ctx.board = dataclasses.replace(ctx.board, dib=object())  # type: ignore[arg-type]
    assert root_key(ctx) is None


def test_evict_keeps_the_most_recently_used_entries_of_the_board(tmp_path: Path) -> None:
    names = [f"qemu-amd64-{i:020x}" for i in range(4)] + ["nuc-amd64-" + "0" * 20,
                                                          "qemu-amd64-notakey"]
    for age, name in enumerate(names):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1000 + age, 1000 + age))
    evict(tmp_path, "qemu-amd64", keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names[2], names[3], names[4], names[5]])


def test_locked_waits_while_another_build_holds_the_cache(tmp_path: Path) -> None:
    """Another build (another process) holding the folder's lock keeps locked() waiting
    until it lets go: flock(2) locks belong to the open file, and go with its process."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
         str(tmp_path / ".lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline() == "held\n"
    entered = threading.Event()

    def take() -> None:
        with locked(tmp_path):
            entered.set()

    waiter = threading.Thread(target=take)
    waiter.start()
    assert not entered.wait(1.0), "entered while the other build held the lock"
    holder.stdin.close()  # the other build exits: its lock goes with it
    assert holder.wait(30) == 0
    assert entered.wait(30), "still waiting after the other build let go"
    waiter.join(30)
    evict(tmp_path, "qemu-amd64", keep=0)  # the lock file is no cache entry
    assert (tmp_path / ".lock").is_file()


def test_evict_removes_cached_files_of_the_board_by_their_suffix(tmp_path: Path) -> None:
    """The initramfs cache: one file per entry, `<board>-<key>.img`."""
    names = [f"rpi-arm64-{i:020x}.img" for i in range(3)] + ["rpi-arm64-" + "0" * 20]
    for age, name in enumerate(names):
        (tmp_path / name).write_bytes(b"initrd")
        os.utime(tmp_path / name, (1000 + age, 1000 + age))
    evict(tmp_path, "rpi-arm64", keep=1, suffix=".img")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names[2], names[3]])


def test_initramfs_inputs_are_its_configuration_not_the_rest_of_the_root(
        tmp_path: Path) -> None:
    hooks = tmp_path / "etc/initramfs-tools/hooks"
    hooks.mkdir(parents=True)
    (hooks / "osbuilder").write_text("#!/bin/sh\n")
    (tmp_path / "etc/fstab").write_text("LABEL=OSB_DATA /data ext4 rw 0 0\n")
    agent = tmp_path / "usr/lib/python3/dist-packages/osbuilder/node"
    agent.mkdir(parents=True)
    (agent / "configure.py").write_text("v = 1\n")
    before = tree_digest(tmp_path)
    (agent / "configure.py").write_text("v = 2\n")  # the agent changed: same initrd
    assert tree_digest(tmp_path) == before
    (hooks / "osbuilder").chmod(0o755)
    assert tree_digest(tmp_path) != before
    (hooks / "osbuilder").chmod(0o644)
    assert tree_digest(tmp_path) == before
    (hooks / "osbuilder").write_text("#!/bin/sh\ncopy_exec /usr/sbin/cryptsetup\n")
    assert tree_digest(tmp_path) != before


def test_checked_hash_pycs_become_unchecked_and_skip_the_source(tmp_path: Path) -> None:
    site = tmp_path / "usr/lib/python3/dist-packages"
    site.mkdir(parents=True)
    src = site / "osb_pyc_probe.py"
    src.write_text("VALUE = 'compiled'\n")
    pyc = Path(importlib.util.cache_from_source(str(src)))
    py_compile.compile(str(src), cfile=str(pyc),
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    plain = site / "osb_plain.py"
    plain.write_text("X = 1\n")
    py_compile.compile(str(plain), invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
    code_before = pyc.read_bytes()[8:]
    assert unchecked_pycs(tmp_path / "usr/lib") == 1
    assert pyc.read_bytes()[4:8] == (1).to_bytes(4, "little")
    assert pyc.read_bytes()[8:] == code_before  # hash and code untouched
    assert unchecked_pycs(tmp_path / "usr/lib") == 0  # idempotent
    # the source changes: an unchecked pyc is still what Python runs (a checked one
    # would have been recompiled), so imports never read the source
    src.write_text("VALUE = 'source'\n")
    sys.path.insert(0, str(site))
    try:
        module = importlib.import_module("osb_pyc_probe")
        assert module.VALUE == "compiled"
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("osb_pyc_probe", None)
