"""rootfs backend dib: the board's `rootfs: {backend: dib}` parsed and validated, what
disk-image-create is given, the cache key, and how a failure is explained.

The log excerpt below is real diskimage-builder 3.43.0 output from a build whose element
`broken-element` has an install.d hook that prints a line and exits 3; the real build
with such an element is in tests/integration/test_build_dib_qemu_amd64.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from osbuilder.host.boards import load_board, load_board_file
from osbuilder.host.stages import rootfs_dib
from osbuilder.host.stages.rootfs_dib import (
    OSB_ELEMENT,
    OSB_ELEMENTS,
    cache_key,
    element_of,
    explain_failure,
    failed_hook,
    find_dib,
    plan,
)
from osbuilder.shared.errors import OsbError
from tests.unit.test_boards import write_board

DIB_LOG = """\
2026-11-23 11:49:36.460 | dib-run-parts Running /tmp/in_target.d/install.d/15-cleanup-debootstrap
2026-11-23 11:49:36.465 | dib-run-parts 15-cleanup-debootstrap completed
2026-11-23 11:49:36.465 | dib-run-parts Running /tmp/in_target.d/install.d/20-install-init-scripts
2026-11-23 11:49:36.469 | dib-run-parts 20-install-init-scripts completed
2026-11-23 11:49:36.469 | dib-run-parts Running /tmp/in_target.d/install.d/50-break-things
2026-11-23 11:49:36.471 | about to fail
2026-11-23 11:49:36.484 | Unmount /tmp/dib_build.eHGuJroH/mnt/var/cache/apt/archives
2026-11-23 11:49:36.703 | INFO diskimage_builder.block_device.blockdevice [-] State already \
cleaned - no way to do anything here
"""


def dib_board(tmp_path: Path, **rootfs: object) -> Path:
    return write_board(tmp_path, rootfs={"backend": "dib", **rootfs})


def element(root: Path, name: str, phase: str, hook: str, body: str = "exit 0\n") -> Path:
    path = root / name / phase / hook
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


def test_board_file_with_dib_backend(tmp_path: Path) -> None:
    (tmp_path / "elements").mkdir()
    b = load_board_file(dib_board(tmp_path, elements=["debian-minimal", "my-site"],
                                  element_paths=["elements"],
                                  env={"DIB_DEV_USER_USERNAME": "ops"}))
    assert b.dib is not None and b.rootfs_tarball is None
    assert b.dib.elements == ("debian-minimal", "my-site")
    assert b.dib.element_paths == (tmp_path / "elements",)  # relative to the board file
    assert b.dib.env == (("DIB_DEV_USER_USERNAME", "ops"),)
    assert load_board("qemu-amd64").dib is None


@pytest.mark.parametrize(("rootfs", "message"), [
    ({}, r"at rootfs: 'elements' is a required property"),
    ({"elements": []}, r"at rootfs\.elements: \[\] should be non-empty"),
    ({"elements": ["debian-minimal"], "env": {"HOME": "/x"}}, r"at rootfs\.env: 'HOME' does "
                                                                r"not match"),
    ({"elements": ["debian-minimal"], "env": {"DIB_OSBUILDER_KERNEL_PACKAGE": "x"}},
     r"at rootfs\.env: 'DIB_OSBUILDER_KERNEL_PACKAGE' does not match"),
    ({"elements": ["debian minimal"]}, r"at rootfs\.elements\[0\]: 'debian minimal' does "
                                       r"not match"),
])
def test_bad_dib_settings_name_the_key(tmp_path: Path, rootfs: dict[str, object],
                                       message: str) -> None:
    with pytest.raises(OsbError, match=message):
        load_board_file(dib_board(tmp_path, **rootfs))


def test_plan_derives_dib_settings_from_the_board(tmp_path: Path) -> None:
    b = load_board_file(dib_board(tmp_path, elements=["debian-minimal"]))
    assert b.dib is not None
    run = plan(b, b.dib)
    assert run.argv == ("-a", "amd64", "-t", "tar", "-p", ",".join(b.all_packages()),
                        "debian-minimal", OSB_ELEMENT)
    env = dict(run.env)
    assert env["DIB_RELEASE"] == "trixie"
    assert env["DIB_DISTRIBUTION_MIRROR"] == "http://deb.debian.org/debian"
    assert env["DIB_APT_SOURCES_CONF"] == "default:deb http://deb.debian.org/debian trixie main"
    assert env["DIB_OSBUILDER_KERNEL_PACKAGE"] == "linux-image-cloud-amd64"
    assert run.element_dirs == (OSB_ELEMENTS,)
    assert (OSB_ELEMENTS / OSB_ELEMENT / "element-deps").read_text().split() == [
        "osbuilder-one-kernel"]


def test_user_env_overrides_defaults(tmp_path: Path) -> None:
    sources = "default:deb http://mirror.example/debian trixie main"
    b = load_board_file(dib_board(tmp_path, elements=["debian-minimal"],
                                  env={"DIB_APT_SOURCES_CONF": sources}))
    assert b.dib is not None
    assert dict(plan(b, b.dib).env)["DIB_APT_SOURCES_CONF"] == sources


def test_plan_refuses_missing_folder_and_our_own_element(tmp_path: Path) -> None:
    b = load_board_file(dib_board(tmp_path, elements=["debian-minimal"],
                                  element_paths=["nowhere"]))
    assert b.dib is not None
    with pytest.raises(OsbError, match=r"at rootfs\.element_paths: no such folder .*nowhere"):
        plan(b, b.dib)
    b = load_board_file(dib_board(tmp_path, elements=["debian-minimal", OSB_ELEMENT]))
    assert b.dib is not None
    with pytest.raises(OsbError, match=r"at rootfs\.elements: osbuilder-rootfs is added by "
                                       "osbuilder"):
        plan(b, b.dib)


def test_cache_key_follows_element_bytes_and_dib_version(tmp_path: Path) -> None:
    hook = element(tmp_path / "elements", "my-site", "install.d", "50-site")
    b = load_board_file(dib_board(tmp_path, elements=["debian-minimal", "my-site"],
                                  element_paths=["elements"]))
    assert b.dib is not None
    run = plan(b, b.dib)
    key = cache_key(run, "3.43.0")
    assert cache_key(run, "3.43.0") == key
    assert cache_key(run, "3.44.0") != key
    hook.write_text("#!/bin/bash\necho changed\n")
    assert cache_key(run, "3.43.0") != key


def test_failed_hook_is_the_last_one_started() -> None:
    assert failed_hook(DIB_LOG) == ("install.d", "50-break-things", [
        "about to fail",
        "Unmount /tmp/dib_build.eHGuJroH/mnt/var/cache/apt/archives",
        "INFO diskimage_builder.block_device.blockdevice [-] State already cleaned - no way "
        "to do anything here",
    ])
    assert failed_hook("mmdebstrap: E: cannot reach mirror\n") is None


def test_failure_names_the_element_and_the_log(tmp_path: Path) -> None:
    element(tmp_path / "mine", "broken-element", "install.d", "50-break-things")
    element(tmp_path / "mine", "fine-element", "install.d", "40-fine")
    log = tmp_path / "dib.log"
    log.write_text(DIB_LOG)
    assert element_of("install.d", "50-break-things", [OSB_ELEMENTS, tmp_path / "mine"]) \
        == "broken-element"
    msg = explain_failure(log, [OSB_ELEMENTS, tmp_path / "mine"])
    assert msg.startswith("element 'broken-element' failed in its hook "
                          f"install.d/50-break-things; full log: {log}\n")
    assert "    about to fail" in msg
    log.write_text("sudo: command not found\n")
    assert explain_failure(log, [tmp_path / "mine"]) == (
        f"disk-image-create failed before running any element hook; full log: {log}\n"
        "sudo: command not found")


def test_missing_dib_says_how_to_install_it(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(rootfs_dib, "DIB_VENV", tmp_path / "dib-venv")
    with pytest.raises(OsbError, match=r"disk-image-create is neither on PATH nor in "
                                       r".*dib-venv: run `make dib`"):
        find_dib()
    tool = tmp_path / "dib-venv/bin/disk-image-create"
    tool.parent.mkdir(parents=True)
    tool.write_text("#!/bin/sh\n")
    assert find_dib() == tool
    monkeypatch.setenv("PATH", str(tool.parent))
    assert find_dib() == tool

