"""rootfs backend dib: qemu-amd64 built with real diskimage-builder (`debian-minimal` plus a
user element), then osbuilder's own stages; the image boots in QEMU TCG to the agent's
`applied config` line. A broken user element stops the build with an error naming it.

Slow (diskimage-builder runs for minutes), so `make test-all`; `make dib` installs it.
k3s is a stand-in (TEST DOUBLE) from a local HTTP fixture, as in tests/conftest.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from osbuilder.host.boards import BOARDS_DIR
from osbuilder.host.qemu import scratch_disk
from osbuilder.host.stages.rootfs_dib import find_dib
from osbuilder.shared.errors import ExitCode, OsbError
from tests.conftest import EPOCH, require_build_capability
from tests.e2e.test_agent_qemu_amd64 import boot, write_config
from tests.helpers.image import fat_files, partitions, squash_list, squash_read
from tests.helpers.k3s_fixture import Served

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

MARKER = "usr/share/osb-test/marker"
MARKER_TEXT = "written by a user's diskimage-builder element"


def require_dib() -> None:
    require_build_capability()
    try:
        find_dib()
    except OsbError:
        pytest.skip("diskimage-builder is not installed (run `make dib`): missing capability")
    if subprocess.run(["losetup", "-f"], capture_output=True).returncode != 0:
        pytest.skip("no free loop device, which diskimage-builder needs: missing capability")


def hook(root: Path, element: str, phase: str, name: str, body: str) -> None:
    path = root / element / phase / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/bash\nset -eu\n{body}")
    path.chmod(0o755)


def dib_board_file(folder: Path, elements: list[str]) -> Path:
    """qemu-amd64 as a board file of the user's, with the dib backend and their elements."""
    folder.mkdir(parents=True, exist_ok=True)
    hook(folder / "elements", "osb-test-marker", "install.d", "50-osb-test-marker",
         f"mkdir -p /{Path(MARKER).parent}\necho \"{MARKER_TEXT}\" > /{MARKER}\n")
    hook(folder / "elements", "osb-test-broken", "install.d", "50-osb-test-broken",
         "echo 'osb-test-broken: about to fail'\nexit 7\n")
    data = yaml.safe_load((BOARDS_DIR / "qemu-amd64.yaml").read_text())
    data["rootfs"] = {"backend": "dib", "elements": elements, "element_paths": ["elements"]}
    path = folder / "qemu-amd64.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def build(board: Path, out: Path, cache: Path, served: Served) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH, OSB_K3S_CHANNEL_URL=served.channel_url,
               OSB_K3S_RELEASE_URL=served.release_url)
    return subprocess.run(
        [sys.executable, "-m", "osbuilder", "build", "--board", str(board), "--out", str(out),
         "--cache-dir", str(cache), "--version", "1.0.0"],
        env=env, capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="module")
def dib_image(tmp_path_factory: pytest.TempPathFactory, build_cache: Path,
              k3s_server: Served) -> Path:
    require_dib()
    folder = tmp_path_factory.mktemp("dib-board")
    board = dib_board_file(folder, ["debian-minimal", "osb-test-marker"])
    r = build(board, folder / "out", build_cache, k3s_server)
    assert r.returncode == 0, f"dib build failed:\n{r.stderr[-4000:]}"
    assert re.search(r"diskimage-builder 3\.43\.0: debian-minimal osb-test-marker \+ "
                     r"osbuilder-rootfs", r.stdout + r.stderr)
    return Path(r.stdout.strip().splitlines()[-1])


def test_user_element_ran_and_one_kernel_is_kept(dib_image: Path) -> None:
    parts = partitions(dib_image)[1]
    assert squash_read(dib_image, parts[1], MARKER, dib_image.parent).decode().strip() \
        == MARKER_TEXT
    files = squash_list(dib_image, parts[1])
    # debian-minimal installs linux-image-amd64; osbuilder-rootfs keeps the board's alone
    kernels = sorted(f for f in files if re.fullmatch(r"boot/vmlinuz-.*", f))
    assert len(kernels) == 1 and kernels[0].endswith("-cloud-amd64"), kernels
    assert not any(f.startswith("usr/lib/modules/") and f.endswith("-amd64")
                   and "cloud" not in f for f in files)
    assert {"osb/a/vmlinuz", "osb/a/initrd.img"} <= set(fat_files(dib_image, parts[0]))


def test_dib_image_boots_to_applied_config(dib_image: Path, tmp_path: Path) -> None:
    disk = scratch_disk(dib_image, tmp_path / "disk.img", "4G")
    write_config(disk, {"hostname": "dib-node", "k3os": {"password": "dib-pw"}}, tmp_path)
    with boot(disk, tmp_path) as vm:
        vm.wait_for(r"osbuilder-agent: applied config \(sources=/boot/efi/config.yaml, "
                    r"role=server, hostname=dib-node\)", 600)
        vm.wait_for(r"dib-node login:", 300)
        print(f"\ndib rootfs: boot to applied config + login {vm.elapsed():.1f} s (TCG)")


def test_broken_element_is_named_with_its_log(tmp_path: Path, build_cache: Path,
                                             k3s_server: Served) -> None:
    require_dib()
    board = dib_board_file(tmp_path, ["debian-minimal", "osb-test-broken"])
    r = build(board, tmp_path / "out", build_cache, k3s_server)
    assert r.returncode == ExitCode.BAD_INPUT, r.stderr[-3000:]
    m = re.search(r"rootfs backend dib: disk-image-create exited \d+: element "
                  r"'osb-test-broken' failed in its hook install.d/50-osb-test-broken; "
                  r"full log: (\S+)", r.stderr)
    assert m, r.stderr[-3000:]
    assert "    osb-test-broken: about to fail" in r.stderr
    assert "osb-test-broken: about to fail" in Path(m.group(1)).read_text()
    assert not list((tmp_path / "out").iterdir()), "a failed build left output behind"
    assert not list((build_cache / "rootfs").glob("*.part*")), "half-written tarball left"
