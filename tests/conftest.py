"""Shared fixtures: one real qemu-amd64 build per test session, reused by the
integration checks and the QEMU boot tests.

The k3s binary in these builds is a stand-in (TEST DOUBLE) served by a local HTTP
fixture (tests/helpers/k3s_fixture.py): the real one cannot be downloaded here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.k3s_fixture import Served, serve_k3s

EPOCH = "1700000000"
BUILD_TOOLS = ("mmdebstrap", "mksquashfs", "mkfs.vfat", "mcopy", "sfdisk", "mkfs.ext4",
               "unsquashfs", "qemu-img")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest legs first: `make test` hands whole files to two workers in this order
    (xdist --dist loadfile), and a 25-minute QEMU leg started last would run alone at the
    end. Stable: within each kind, the files keep their order."""
    def rank(item: pytest.Item) -> int:
        return next((i for i, m in enumerate(("long_leg", "e2e", "integration"))
                     if item.get_closest_marker(m)), 3)
    items.sort(key=rank)


def require_build_capability() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mmdebstrap --mode=root, chroot): missing capability")
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"host tools missing: {', '.join(missing)} (run `make deps`)")


@dataclass
class Build:
    out: Path
    image: Path
    manifest: Path
    seconds: float
    log: str
    k3s: Served


def osbuilder_build(out: Path, cache: Path, served: Served, *extra: str,
                    board: str = "qemu-amd64", timeout: float = 1800) -> Build:
    """Build `board`, a board name or a board file (named after its board)."""
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH,
               OSB_K3S_CHANNEL_URL=served.channel_url, OSB_K3S_RELEASE_URL=served.release_url)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "osbuilder", "build", "--board", board, "--out", str(out),
         "--cache-dir", str(cache), "--version", "1.0.0", *extra],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    dt = time.monotonic() - t0
    assert proc.returncode == 0, f"build failed:\n{proc.stderr[-4000:]}"
    name = Path(board).stem
    image = out / f"osbuilder-{name}-1.0.0.img"
    assert proc.stdout.strip().splitlines()[-1] == str(image)
    return Build(out, image, out / f"osbuilder-{name}-1.0.0.manifest.json", dt, proc.stderr,
                 served)


@pytest.fixture(scope="session")
def k3s_server() -> Iterator[Served]:
    with serve_k3s() as served:
        yield served


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache of this session only, so the first build is a real cold build; or, with
    OSB_TEST_CACHE=DIR, that cache (e.g. ~/.cache/osbuilder), for the slow foreign-arch
    legs whose cold rootfs takes about 30 minutes under emulation."""
    shared = os.environ.get("OSB_TEST_CACHE")
    if shared:
        print(f"\nbuild cache: {shared} (OSB_TEST_CACHE), builds may be warm")
        return Path(shared).expanduser()
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def qemu_amd64_build(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
                     k3s_server: Served) -> Build:
    require_build_capability()
    return osbuilder_build(tmp_path_factory.mktemp("out1"), build_cache, k3s_server)


@pytest.fixture(scope="session")
def ec2_amd64_build(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
                    k3s_server: Served) -> Build:
    """ec2-amd64 (cloud-init, formats img and ami), for its checks and its cloud-init boot."""
    require_build_capability()
    return osbuilder_build(tmp_path_factory.mktemp("out-ec2"), build_cache, k3s_server,
                           board="ec2-amd64")


@pytest.fixture(scope="session")
def fleet_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `keys init` folder: bundle CA and signing key, Secure Boot PK/KEK/db, PCR key."""
    from osbuilder.host.keys import init_keys

    keys = tmp_path_factory.mktemp("fleet") / "keys"
    init_keys(keys, "e2e fleet")
    return keys


@pytest.fixture(scope="session")
def qemu_amd64_signed_build(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
                            k3s_server: Served, fleet_keys: Path,
                            qemu_amd64_build: Build) -> Build:
    """qemu-amd64 with --keys: signed systemd-boot and UKIs, verity roots, LUKS2 data; after
    the session's first build, whose rootfs it shares."""
    require_build_capability()
    return osbuilder_build(tmp_path_factory.mktemp("out-signed"), build_cache, k3s_server,
                           "--keys", str(fleet_keys))


# the config baked into the live build: its ISO installs itself onto the VM's virtio disk
INSTALL_CONFIG = {"hostname": "installed-node",
                  "k3os": {"password": "iso-e2e", "install": {"device": "/dev/vda",
                                                              "silent": True}}}


def live_formats(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
                 k3s_server: Served, name: str, formats: str, config: dict[str, Any]) -> Build:
    """qemu-amd64 in formats that include iso, with config as --config."""
    require_build_capability()
    if shutil.which("xorriso") is None:
        pytest.skip("xorriso missing (run `make deps`): cannot build --format iso")
    out = tmp_path_factory.mktemp(f"out-{name}")
    cfg = out.parent / f"{name}-config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    return osbuilder_build(out, build_cache, k3s_server, "--format", formats,
                           "--config", str(cfg))


@pytest.fixture(scope="session")
def live_build(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
               k3s_server: Served, qemu_amd64_build: Build) -> Build:
    """qemu-amd64 as img, iso and pxe, with INSTALL_CONFIG as --config; after the session's
    first build (qemu_amd64_build), which the tests expect to be the cold one."""
    return live_formats(tmp_path_factory, build_cache, k3s_server, "install", "img,iso,pxe",
                        INSTALL_CONFIG)


# the config baked into the console installer's ISO: no install.device, so booted with
# osb.mode=install (its "install to disk" boot entry) the live system asks on the console
CONSOLE_CONFIG = {"hostname": "console-node"}


@pytest.fixture(scope="session")
def console_live_build(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
                       k3s_server: Served, qemu_amd64_build: Build) -> Build:
    """qemu-amd64 as img and iso with CONSOLE_CONFIG (no install: block) as --config."""
    return live_formats(tmp_path_factory, build_cache, k3s_server, "console", "img,iso",
                        CONSOLE_CONFIG)
