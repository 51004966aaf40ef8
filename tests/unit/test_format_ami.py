"""Format ami: which boards qualify, and the .ami.json that `publish ami` reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from osbuilder.host.boards import load_board
from osbuilder.host.context import BuildContext
from osbuilder.host.formats.ami import check_board, load_facts, write_ami
from osbuilder.host.progress import Progress
from osbuilder.host.settings import BuildOptions
from osbuilder.shared.errors import OsbError


def test_ec2_boards_qualify_others_say_why() -> None:
    check_board(load_board("ec2-a1"))
    check_board(load_board("ec2-amd64"))
    with pytest.raises(OsbError, match=r"board qemu-amd64 cannot be an AMI: cloud-init not "
                                       r"always on .* Use --board ec2-a1 or ec2-amd64"):
        check_board(load_board("qemu-amd64"))


@pytest.mark.parametrize(("board", "arch"), [("ec2-a1", "arm64"), ("ec2-amd64", "x86_64")])
def test_write_ami_describes_the_raw_image(tmp_path: Path, board: str, arch: str) -> None:
    b = load_board(board)
    opts = BuildOptions(out_dir=tmp_path, version="2.0.1", source_date_epoch=1700000000,
                        formats=("ami",))
    ctx = BuildContext(board=b, options=opts, work=tmp_path, progress=Progress())
    ctx.disk_image = tmp_path / f"osbuilder-{board}-2.0.1.img"
    ctx.disk_image.write_bytes(b"\0" * 4096)
    write_ami(ctx)
    assert [a.kind for a in ctx.artifacts] == ["img", "ami"]  # raw image kept without img
    meta = tmp_path / f"osbuilder-{board}-2.0.1.ami.json"
    assert json.loads(meta.read_text()) == {
        "architecture": arch, "board": board, "boot_mode": "uefi",
        "image": f"osbuilder-{board}-2.0.1.img", "size_bytes": 4096, "version": "2.0.1"}
    facts, raw = load_facts(ctx.disk_image)
    assert raw == ctx.disk_image and facts.architecture == arch
    meta.write_text('{"board": "x"}')
    with pytest.raises(OsbError, match=r"not an osbuilder AMI description"):
        load_facts(meta)
