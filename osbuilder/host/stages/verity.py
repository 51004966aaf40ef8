"""Stage verity: append the dm-verity hash tree to the root squashfs, making the slot image
(what goes to a root partition and into the update bundle).

`veritysetup format` works on the plain file (no device-mapper, no loop device), with the
tree at the squashfs' end (--hash-offset, veritysetup(8)); salt and UUID come from the
build seed, so the same squashfs gives the same tree and the same root hash.
"""

from __future__ import annotations

import hashlib

from osbuilder.host.context import BuildContext
from osbuilder.shared.errors import OsbError
from osbuilder.shared.layout import MIB, stable_uuid
from osbuilder.shared.run import output
from osbuilder.shared.verity import BLOCK, parse_format_output


def verity(ctx: BuildContext) -> None:
    if not ctx.trust.verity:
        return
    assert ctx.squashfs is not None
    slot = ctx.squashfs
    size = slot.stat().st_size
    if size % BLOCK:  # mksquashfs pads to 4 KiB; a root from elsewhere may not be
        with slot.open("ab") as f:
            f.write(bytes(BLOCK - size % BLOCK))
        size = slot.stat().st_size
    seed = f"{ctx.board.name}:{ctx.options.version}:{ctx.options.source_date_epoch}"
    salt = hashlib.sha256(f"osbuilder:{seed}:verity-salt".encode()).hexdigest()
    report = output(["veritysetup", "format", slot, slot, f"--hash-offset={size}",
                     f"--data-blocks={size // BLOCK}", "--format=1", "--hash=sha256",
                     f"--data-block-size={BLOCK}", f"--hash-block-size={BLOCK}",
                     f"--salt={salt}", f"--uuid={stable_uuid(seed, 'verity')}"], env=ctx.env)
    ctx.verity = parse_format_output(report, size)
    total = slot.stat().st_size
    limit = ctx.board.sizes.root_mib * MIB
    if total > limit:
        raise OsbError(f"root image with its hash tree is {total / MIB:.0f} MiB but a root "
                       f"slot holds {limit // MIB} MiB: raise sizes.root_mib in "
                       f"{ctx.board.source}")
    ctx.progress.say(f"    dm-verity: hash tree {(total - size) / 1e6:.1f} MB, root hash "
                     f"{ctx.verity.root_hash}")
