"""Format ami: the raw disk image that EC2 imports as a snapshot, and <name>.ami.json with
what `osbuilder publish ami` registers it as (EC2 architecture, boot mode, version, board).

Only UEFI boards with cloud-init qualify: EC2 boots arm64 (Graviton) and x86-64 Nitro
instances through UEFI, and the node reads its EC2 user-data through cloud-init.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from osbuilder.bootloaders import bootloader
from osbuilder.host.boards import Board
from osbuilder.host.context import Artifact, BuildContext
from osbuilder.shared.arches import ARCHES
from osbuilder.shared.errors import OsbError

SUFFIX = ".ami.json"


@dataclass(frozen=True)
class AmiFacts:
    board: str
    version: str
    architecture: str  # EC2's spelling: arm64, x86_64
    boot_mode: str
    image: str  # file name of the raw image, beside the .ami.json
    size_bytes: int


def why_not(board: Board) -> list[str]:
    """Why this board cannot be an AMI (empty: it can)."""
    why = []
    if board.arch_facts.ec2 is None:
        ec2 = [a.debian for a in ARCHES.values() if a.ec2]
        why.append(f"arch {board.arch} (EC2 runs {' and '.join(ec2)})")
    if not bootloader(board.bootloader).uefi:
        why.append(f"bootloader {board.bootloader} (EC2 boots AMIs through UEFI)")
    if "cloud-init" not in board.package_sets or "data-sources" in board.package_sets:
        why.append("cloud-init not always on (package set cloud-init, without data-sources): "
                   "the node would never see its EC2 user-data")
    return why


def check_board(board: Board) -> None:
    """Before the build starts: can this board be an AMI at all?"""
    why = why_not(board)
    if why:
        raise OsbError(f"--format ami: board {board.name} cannot be an AMI: {'; '.join(why)}. "
                       "Use --board ec2-a1 or ec2-amd64")


def write_ami(ctx: BuildContext) -> None:
    disk = ctx.disk_image
    assert disk is not None
    check_board(ctx.board)
    ec2_arch = ctx.board.arch_facts.ec2
    assert ec2_arch is not None  # check_board
    if not any(a.path == disk for a in ctx.artifacts):
        ctx.artifacts.append(Artifact("img", disk))
    facts = AmiFacts(board=ctx.board.name, version=ctx.options.version,
                     architecture=ec2_arch, boot_mode="uefi", image=disk.name,
                     size_bytes=disk.stat().st_size)
    out = disk.with_name(disk.stem + SUFFIX)
    out.write_text(json.dumps(asdict(facts), indent=2, sort_keys=True) + "\n")
    ctx.artifacts.append(Artifact("ami", out))


def load_facts(path: Path) -> tuple[AmiFacts, Path]:
    """(facts, raw image) from IMAGE as given to `publish ami`: the .img or its .ami.json."""
    if not path.name.endswith(SUFFIX):
        path = path.with_name(path.name.removesuffix(".img") + SUFFIX)
    if not path.is_file():
        raise OsbError(f"IMAGE: {path} not found: build with --format ami (boards ec2-a1, "
                       "ec2-amd64) and publish the .img or .ami.json it writes")
    try:
        raw = json.loads(path.read_text())
        facts = AmiFacts(**{k: raw[k] for k in AmiFacts.__dataclass_fields__})
    except (ValueError, KeyError, TypeError) as exc:
        raise OsbError(f"{path}: not an osbuilder AMI description ({exc!r}); rebuild with "
                       "--format ami") from exc
    image = path.with_name(facts.image)
    if not image.is_file():
        raise OsbError(f"{path}: its raw image {image} is missing")
    if image.stat().st_size != facts.size_bytes:
        raise OsbError(f"{image}: {image.stat().st_size} bytes, {path} says "
                       f"{facts.size_bytes}: the image changed since it was built")
    return facts, image
