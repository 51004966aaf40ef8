"""Board model: boards/*.yaml validated against board.schema.json into frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from osbuilder.shared.arches import ARMV6, ARMV6_BOARDS, ARMV6_WHY, Arch, arch_facts
from osbuilder.shared.cli_base import did_you_mean
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import DiskLayout, ab_layout_of
from osbuilder.shared.nodeconfig.limits import MAX_SOURCE_BYTES
from osbuilder.shared.schema import load_schema, validate, with_defaults
from osbuilder.shared.yaml_input import load_data

BOARDS_DIR = Path(__file__).resolve().parent  # the board files live beside this module
PACKAGE_SETS_FILE = BOARDS_DIR / "package-sets.yaml"


@dataclass(frozen=True)
class Kernel:
    package: str
    cmdline: tuple[str, ...]
    console: tuple[str, ...]
    suite: str | None = None  # e.g. trixie-backports; None: the board's suite
    bpf_lsm: bool = False  # keep the kernel's BPF LSM (osbuilder/host/kernel_args.py)


@dataclass(frozen=True)
class Sizes:
    boot_mib: int
    root_mib: int
    data_mib: int


@dataclass(frozen=True)
class QemuSpec:
    binary: str  # from the arch table (qemu_system)
    machine: str
    cpu: str
    memory_mib: int
    smp: int
    firmware: str
    firmware_vars: str | None
    firmware_package: str | None
    firmware_type: str = "pflash"
    firmware_secure_boot: str | None = None  # for signed images (Secure Boot enforced)


@dataclass(frozen=True)
class RaspiSpec:
    """Pi GPU firmware files for the boot partition and the config.txt they read."""

    firmware: tuple[str, ...]
    config: tuple[tuple[str, str], ...]
    dtoverlays: tuple[str, ...]


@dataclass(frozen=True)
class DibSpec:
    """rootfs backend dib: diskimage-builder elements, their folders, extra DIB_* settings."""

    elements: tuple[str, ...]
    element_paths: tuple[Path, ...]
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    arch: str
    suite: str
    mirror: str
    components: tuple[str, ...]
    package_sets: tuple[str, ...]
    packages: tuple[str, ...]
    kernel: Kernel
    initramfs_modules: tuple[str, ...]
    bootloader: str
    partition_table: str
    sizes: Sizes
    formats: tuple[str, ...]
    qemu: QemuSpec | None
    source: Path
    rootfs_tarball: Path | None = None  # backend tarball
    dib: DibSpec | None = None  # backend dib; neither: mmdebstrap
    dtbs: tuple[str, ...] = ()
    uboot_binary: str | None = None  # bootloader u-boot: path inside the rootfs
    uboot_models: tuple[tuple[str, str], ...] = ()  # Pi config.txt filter -> U-Boot path
    raspi: RaspiSpec | None = None
    tpm: bool = False  # a TPM 2.0 the data partition's key can be sealed to
    encryption: str | None = None  # luks or none; None: luks with a TPM and Secure Boot keys
    secure_boot_enroll: str = "force"  # systemd-boot's secure-boot-enroll for setup mode

    def all_packages(self) -> tuple[str, ...]:
        """Every Debian package of the rootfs, sorted, without duplicates."""
        sets = load_package_sets()
        names: set[str] = {self.kernel.package, *self.packages}
        for s in self.package_sets:
            names.update(sets[s])
        return tuple(sorted(names))

    @property
    def arch_facts(self) -> Arch:
        return arch_facts(self.arch)

    def disk_layout(self, seed: str) -> DiskLayout:
        s = self.sizes
        return ab_layout_of(s.boot_mib, s.root_mib, s.data_mib, self.arch_facts.gpt_root_type,
                            seed, self.partition_table)


def load_package_sets(path: Path = PACKAGE_SETS_FILE) -> dict[str, tuple[str, ...]]:
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(p, str) for p in v) for v in raw.values()
    ):
        raise OsbError(f"{path}: expected a mapping of set name -> list of package names")
    return {k: tuple(v) for k, v in raw.items()}


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml") if p.name != PACKAGE_SETS_FILE.name)


def load_board_file(path: Path) -> Board:
    """Parse and validate one board file; every problem is reported with its key path."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise OsbError(f"cannot read board file {path}: {exc.strerror}") from exc
    raw = load_data(data, f"board file {path}")
    if isinstance(raw, dict) and raw.get("arch") in ARMV6:
        raise OsbError(f"{path}: at arch: {raw['arch']!r} {ARMV6_WHY}")
    validate(raw, "board.schema.json", str(path))
    d: dict[str, Any] = with_defaults(raw, load_schema("board.schema.json"))
    if d["name"] != path.stem:
        raise OsbError(f"{path}: at name: {d['name']!r} must match the file name {path.stem!r}")
    sets = load_package_sets()
    unknown = [s for s in d["package_sets"] if s not in sets]
    if unknown:
        raise OsbError(
            f"{path}: at package_sets: unknown package set {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(sets))}, defined in {PACKAGE_SETS_FILE})"
        )
    q = d.get("qemu")
    r = d["rootfs"]
    return Board(
        name=d["name"],
        description=d["description"],
        arch=d["arch"],
        suite=d["suite"],
        mirror=d["mirror"],
        components=tuple(d["components"]),
        package_sets=tuple(d["package_sets"]),
        packages=tuple(d["packages"]),
        kernel=Kernel(
            package=d["kernel"]["package"],
            cmdline=tuple(d["kernel"]["cmdline"]),
            console=tuple(d["kernel"]["console"]),
            suite=d["kernel"].get("suite"),
            bpf_lsm=d["kernel"]["bpf_lsm"],
        ),
        initramfs_modules=tuple(d["initramfs_modules"]),
        bootloader=d["bootloader"],
        partition_table=d["partition_table"],
        sizes=Sizes(**d["sizes"]),
        formats=tuple(d["formats"]),
        qemu=QemuSpec(
            binary=arch_facts(d["arch"]).qemu_system, machine=q["machine"], cpu=q["cpu"],
            memory_mib=q["memory_mib"], smp=q["smp"], firmware=q["firmware"],
            firmware_vars=q.get("firmware_vars"), firmware_package=q.get("firmware_package"),
            firmware_type=q["firmware_type"],
            firmware_secure_boot=q.get("firmware_secure_boot"),
        ) if q else None,
        source=path,
        rootfs_tarball=path.parent / r["path"] if r["backend"] == "tarball" else None,
        dib=DibSpec(
            elements=tuple(r["elements"]),
            element_paths=tuple(path.parent / p for p in r["element_paths"]),
            env=tuple(sorted(r["env"].items())),
        ) if r["backend"] == "dib" else None,
        dtbs=tuple(d["dtbs"]),
        uboot_binary=d.get("uboot", {}).get("binary"),
        uboot_models=tuple(d.get("uboot", {}).get("models", {}).items()),
        raspi=RaspiSpec(
            firmware=tuple(d["raspi"]["firmware"]),
            config=tuple(d["raspi"]["config"].items()),
            dtoverlays=tuple(d["raspi"]["dtoverlays"]),
        ) if "raspi" in d else None,
        tpm=d["tpm"],
        encryption=d.get("encryption"),
        secure_boot_enroll=d["secure_boot"]["enroll"],
    )


def load_board(name: str) -> Board:
    path = BOARDS_DIR / f"{name}.yaml"
    if name in ARMV6_BOARDS:
        raise OsbError(f"board {name!r}: the Raspberry Pi 1, Zero and Zero W are ARMv6 and k3s "
                       "needs ARMv7 or newer; for a Pi 2/3 use rpi-armhf, for a Pi 3/4/400/CM4/"
                       "Zero 2 W use rpi-arm64")
    if "/" in name or not path.is_file():
        names = board_names()
        raise OsbError(f"unknown board {name!r}{did_you_mean(name, names)} (known boards: "
                       f"{', '.join(names)}; a board file of your own ends in .yaml)")
    return load_board_file(path)


def board_arg(value: str) -> Board:
    """A board as users name it: a board name, or the path of a board file (your own)."""
    if value.endswith((".yaml", ".yml")):
        return load_board_file(Path(value).resolve())
    return load_board(value)
