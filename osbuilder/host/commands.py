"""The `osbuilder` commands other than build (osbuilder.host.build_command): each takes
the parsed arguments and returns an exit code; failures raise OsbError."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from osbuilder.host.boards import Board, board_arg, board_names, load_board
from osbuilder.host.build_command import build, show_config
from osbuilder.host.formats import buildable
from osbuilder.host.progress import Progress
from osbuilder.shared.errors import ExitCode, OsbError
from osbuilder.shared.login_access import ACCESS_WARNING, has_way_in

__all__ = ["build", "show_config"]


def rootfs_backend(b: Board) -> str:
    if b.rootfs_tarball is not None:
        return f"tarball {b.rootfs_tarball}"
    if b.dib is not None:
        return f"dib, elements {' '.join(b.dib.elements)}"
    return "mmdebstrap"


def board_facts(b: Board) -> dict[str, Any]:
    """A board as plain data (show-board --json, boards --json)."""
    d = asdict(b)
    d.update(formats=list(buildable(b)), default_formats=list(b.formats),
             packages=list(b.all_packages()), rootfs=rootfs_backend(b))
    return json.loads(json.dumps(d, default=str))  # type: ignore[no-any-return]


def boards(args: argparse.Namespace) -> int:
    rows = [load_board(n) for n in board_names()]
    if args.json:
        print(json.dumps([{k: board_facts(b)[k] for k in (
            "name", "arch", "bootloader", "formats", "default_formats", "description")}
            for b in rows], indent=2))
        return 0
    print(f"{'BOARD':12} {'ARCH':6} {'BOOT':13} {'FORMATS (*: default)':24} DESCRIPTION")
    for b in rows:
        fmts = ",".join(f + ("*" if f in b.formats else "") for f in buildable(b))
        print(f"{b.name:12} {b.arch:6} {b.bootloader:13} {fmts:24} {b.description}")
    return 0


def show_board(args: argparse.Namespace) -> int:
    b = board_arg(args.board)
    if args.json:
        print(json.dumps(board_facts(b), indent=2))
        return 0
    print(f"name: {b.name}\narch: {b.arch}\nsuite: {b.suite}\nmirror: {b.mirror}")
    print(f"rootfs: {rootfs_backend(b)}")
    print(f"kernel: {b.kernel.package}\nconsole: {', '.join(b.kernel.console)}")
    print(f"bootloader: {b.bootloader}\npartition_table: {b.partition_table}")
    fmts = [f + (" (default)" if f in b.formats else "") for f in buildable(b)]
    print(f"formats: {', '.join(fmts)}")
    print(f"sizes: boot {b.sizes.boot_mib} MiB, root {b.sizes.root_mib} MiB x2, "
          f"data {b.sizes.data_mib} MiB (grows)")
    print(f"initramfs_modules: {' '.join(b.initramfs_modules)}")
    print(f"packages ({len(b.all_packages())}): {' '.join(b.all_packages())}")
    return 0


def validate_board(args: argparse.Namespace) -> int:
    b = board_arg(args.board)
    print(f"{args.board}: ok ({b.name}, {b.arch}, {len(b.all_packages())} packages, "
          f"formats {','.join(buildable(b))})")
    return 0


def validate_config(args: argparse.Namespace) -> int:
    from osbuilder.shared.nodeconfig.loader import validate_command

    cfg = validate_command(args.file, args.strict, "osbuilder")
    if not has_way_in(cfg):
        print(f"osbuilder: warning: {args.file}: {ACCESS_WARNING}", file=sys.stderr)
    return 0


def schema(args: argparse.Namespace) -> int:
    from osbuilder.shared.schema import schema_text

    sys.stdout.write(schema_text(f"{args.name}.schema.json"))
    return 0


def keys(args: argparse.Namespace) -> int:
    from osbuilder.host import keys as k

    if args.keys_command == "check":
        lines, warnings = k.check_certificates(k.certificates(args.path))
        print("\n".join(lines))
        for w in warnings:
            print(f"osbuilder: warning: {w}: {k.RENEW_HINT}", file=sys.stderr)
        return 0
    made = k.init_keys(args.dir, args.org, args.ca_dir)
    for f in made:
        print(f)
    lines, _ = k.check_certificates([f for f in made if f.name in k.CERTS])
    print("\n".join(lines), file=sys.stderr)
    names = {f.name for f in made}
    if "signing.key.pem" in names:
        where = f"in {args.ca_dir}, where it stays" if args.ca_dir else f"in {args.dir}"
        print(f"the CA key is {where}: keep it offline. Build with --keys {args.dir}; the "
              f"signing certificate lasts {k.SIGNING_DAYS} days: {k.RENEW_HINT}",
              file=sys.stderr)
    if "PK.key.pem" in names:
        print(f"Secure Boot keys added: keep {args.dir}/PK.key.pem and KEK.key.pem offline as "
              "well (builds need db.key.pem and pcr-signing.key.pem only; docs/trust.md)",
              file=sys.stderr)
    elif "db.key.pem" not in names:
        print("no Secure Boot keys in this folder: UEFI boards need them for --keys "
              "(docs/trust.md)", file=sys.stderr)
    return 0


def flash(args: argparse.Namespace) -> int:
    from osbuilder.host.flash import flash as flash_image

    flash_image(args.image, args.device, Progress(), args.config, args.force, args.yes)
    print(f"{args.device}: flashed and verified")
    return 0


def publish(args: argparse.Namespace) -> int:
    from osbuilder.host.publish.ec2_ami import PublishOptions, publish_ami

    done = publish_ami(args.image, PublishOptions(args.region, args.bucket, args.name,
                                                  args.public), Progress())
    print(done.ami_id)
    return 0


def serve(args: argparse.Namespace) -> int:
    from osbuilder.host.pxe_server import serve_pxe

    return serve_pxe(args.dir, args.bind, args.port, args.url, args.script, args.config,
                     args.args)


def image_manifest(image: Path) -> dict[str, Any] | None:
    """The manifest the build wrote beside an image, if it is there and readable."""
    stem = image.name.removesuffix(".zst").removesuffix(".img").removesuffix(".qcow2")
    try:
        data = json.loads(image.with_name(f"{stem}.manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def image_board(image: Path) -> Board:
    """The board an image was built for, from the manifest the build wrote beside it."""
    data = image_manifest(image)
    if data is None:
        raise OsbError(f"{image}: no readable manifest beside it to say its board: "
                       "pass --board")
    name = data.get("board")
    if not isinstance(name, str):
        raise OsbError(f"{image}: its manifest names no board: pass --board")
    return load_board(name)


def signed(image: Path) -> bool:
    """Whether the image was built with Secure Boot keys (its manifest says so)."""
    trust = (image_manifest(image) or {}).get("trust")
    return isinstance(trust, dict) and trust.get("secure_boot") is True


def run_vm(args: argparse.Namespace) -> int:
    import shutil
    from contextlib import ExitStack

    from osbuilder.host.qemu import Swtpm, default_accel, qemu_argv, scratch_disk
    from osbuilder.shared.run import run_interactive

    if not args.image.is_file():
        raise OsbError(f"{args.image}: no such image (build one with `make image`)")
    board = board_arg(args.board) if args.board else image_board(args.image)
    accel = default_accel()
    scratch = args.image.with_name(args.image.stem + ".run.img")
    vars_copy = scratch.with_suffix(".vars.fd")
    tpm_state = scratch.with_suffix(".tpm")
    # a signed image boots with Secure Boot enforced (its firmware starts in setup mode and
    # systemd-boot enrolls the fleet keys) and, where the board has one, a TPM 2.0
    secure_boot = signed(args.image)
    try:
        with ExitStack() as stack:
            tpm = stack.enter_context(Swtpm(tpm_state)) if secure_boot and board.tpm else None
            # QEMU, its firmware and the board's qemu: section are checked before the copy
            argv = qemu_argv(board, scratch, vars_copy, accel=accel, secure_boot=secure_boot,
                             tpm=tpm.socket if tpm else None)
            scratch_disk(args.image, scratch, args.disk_size)
            what = " with Secure Boot" + (" and a TPM" if tpm else "") if secure_boot else ""
            print(f"booting {args.image} as {board.name} ({board.arch}){what} with "
                  f"accelerator {accel} (OSB_QEMU_ACCEL=kvm, make run ACCEL=kvm); quit with "
                  "Ctrl-A X", file=sys.stderr)
            status = run_interactive(argv)
    finally:
        for f in (scratch, vars_copy):  # a scratch disk is gigabytes: never left behind
            if f.exists():
                os.unlink(f)
        shutil.rmtree(tpm_state, ignore_errors=True)
    if status != 0:
        print(f"osbuilder: QEMU exited with status {status}", file=sys.stderr)
        return ExitCode.EXTERNAL
    return 0
