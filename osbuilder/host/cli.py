"""`osbuilder`: the host command line (build images, list and check boards)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

from osbuilder import __version__
from osbuilder.host import settings
from osbuilder.host.boards import Board, board_names, load_board, load_board_file
from osbuilder.host.context import Artifact
from osbuilder.host.download import sha256_file
from osbuilder.host.k3s_release import check_version
from osbuilder.host.progress import Progress
from osbuilder.host.settings import BuildOptions
from osbuilder.shared.errors import OsbError

EPILOG = """\
examples:
  osbuilder boards
  sudo osbuilder build --board qemu-amd64                  # k3s from the stable channel
  sudo osbuilder build --board nuc-amd64 --config node.yaml --compress
  sudo osbuilder build --board qemu-amd64 --k3s-dir ./k3s-release   # air-gapped build
  sudo osbuilder build --board nuc-amd64 --format iso --config node.yaml  # USB installer
  osbuilder serve-pxe out --config node.yaml               # after --format pxe
  osbuilder validate-board boards/qemu-amd64.yaml
  sudo osbuilder flash out/osbuilder-rpi-arm64-1.0.0.img.zst /dev/sdb --config node.yaml
  osbuilder publish ami --region eu-west-1 --bucket my-images out/osbuilder-ec2-a1-1.0.0.img

Artifacts land in --out (default ./out): <name>.img, <name>.manifest.json.
Downloads and rootfs tarballs are cached in ~/.cache/osbuilder (--cache-dir).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="osbuilder",
        description="Build immutable A/B OS images with k3s for edge boards, from Debian.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"osbuilder {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log every command run")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build an image for a board",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings.add_arguments(b)
    sc = sub.add_parser("show-config", help="print the settings a build with these options "
                        "would use, and where each came from")
    settings.add_arguments(sc)

    ks = sub.add_parser("keys", help="update-signing keys")
    ks_sub = ks.add_subparsers(dest="keys_command", required=True)
    ki = ks_sub.add_parser("init", help="make a fleet CA and a bundle-signing key in DIR")
    ki.add_argument("dir", type=Path)
    ki.add_argument("--org", default="osbuilder fleet", help="organisation in the certificates")
    ki.add_argument("--ca-dir", type=Path,
                    help="reuse this folder's CA (rotate the signing key, keep the CA)")

    r = sub.add_parser("run", help="boot an image in QEMU, serial console on this terminal "
                       "(quit: Ctrl-A X)")
    r.add_argument("image", type=Path, help="disk image (.img) from `osbuilder build`")
    r.add_argument("--board", default="qemu-amd64", help="board the image was built for")
    r.add_argument("--disk-size", default="8G",
                   help="grow a scratch copy of the image to this size (the data partition "
                        "fills it on first boot); the image itself is never modified")

    fl = sub.add_parser("flash", help="write an image to an SD card or USB stick, verify it, "
                        "add config.yaml")
    fl.add_argument("image", type=Path, help="disk image (.img or .img.zst)")
    fl.add_argument("device", type=Path, help="whole removable disk, e.g. /dev/sdb or "
                    "/dev/mmcblk0 (see lsblk)")
    fl.add_argument("--config", type=Path,
                    help="node config.yaml to put on the boot partition (validated first)")
    fl.add_argument("--force", action="store_true",
                    help="also write a partition, a non-removable disk or a regular file "
                         "(never a mounted disk)")

    pb = sub.add_parser("publish", help="publish a built image to a cloud")
    pb_sub = pb.add_subparsers(dest="publish_command", required=True)
    pa = pb_sub.add_parser(
        "ami", help="upload to S3, import as an EBS snapshot, register an AMI; prints its id",
        description="Credentials come from the standard AWS chain (environment, AWS_PROFILE, "
                    "~/.aws, SSO, instance role). EC2 imports through the `vmimport` role.")
    pa.add_argument("image", type=Path, help="the .img (or .ami.json) of a --format ami build")
    pa.add_argument("--region", required=True, help="AWS region, e.g. eu-west-1")
    pa.add_argument("--bucket", required=True, help="S3 bucket in that region for the upload "
                    "(the object is deleted after the import)")
    pa.add_argument("--name", help="AMI name (default osbuilder-<board>-<version>)")
    pa.add_argument("--public", action="store_true", help="let every AWS account launch it")

    sp = sub.add_parser("serve-pxe", help="serve a build's pxe files over HTTP (lab setups; "
                        "DHCP/TFTP see README)")
    sp.add_argument("dir", type=Path, help="folder with <name>-pxe.* (the build's --out)")
    sp.add_argument("--bind", default="0.0.0.0", help="address to listen on")
    sp.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    sp.add_argument("--url", help="base URL nodes reach this server by (default "
                    "http://<this host>:PORT); behind NAT or port forwarding, say it here")
    sp.add_argument("--script", help="the build's .ipxe script to boot (default: the newest "
                    "*-pxe.ipxe in DIR)")
    sp.add_argument("--config", type=Path, help="node config.yaml to serve as /config.yaml "
                    "and pass to nodes as osb.config_url")
    sp.add_argument("--args", default="", help="more kernel options for the nodes, e.g. "
                    "'osb.install.device=/dev/sda osb.install.silent=true'")

    sub.add_parser("boards", help="list boards with arch and formats")
    s = sub.add_parser("show-board", help="print a board's resolved settings")
    s.add_argument("name")
    v = sub.add_parser("validate-board", help="check a board file against the schema")
    v.add_argument("file", type=Path)
    c = sub.add_parser("validate-config", help="check a node config.yaml (as the node would)")
    c.add_argument("file", type=Path)
    c.add_argument("--strict", action="store_true",
                   help="refuse keys that osbuilder and k3OS do not know (CI), instead of "
                        "warning and ignoring them as the node does")
    return p


def human(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def print_summary(artifacts: list[Artifact], progress: Progress) -> None:
    progress.say("\nstage timings: " + ", ".join(f"{n} {t:.1f}s" for n, t in progress.timings))
    progress.say(f"build finished in {time.monotonic() - progress.started:.1f} s\n")
    for a in artifacts:
        st = a.path.stat()
        used = st.st_blocks * 512
        size = human(st.st_size) + (f" ({human(used)} on disk)" if used < st.st_size else "")
        progress.say(f"  {a.kind:9} {a.path}  {size}  sha256 {sha256_file(a.path)}")


def board_arg(value: str) -> Board:
    """--board: a board name, or the path of a board file (your own, outside boards/)."""
    if value.endswith((".yaml", ".yml")):
        return load_board_file(Path(value).resolve())
    return load_board(value)


def rootfs_backend(b: Board) -> str:
    if b.rootfs_tarball is not None:
        return f"tarball {b.rootfs_tarball}"
    if b.dib is not None:
        return f"dib, elements {' '.join(b.dib.elements)}"
    return "mmdebstrap"


def build_options(args: argparse.Namespace) -> tuple[BuildOptions, dict[str, str]]:
    """The build's settings from its options and the environment, paths checked and made
    absolute; a `keys init` folder (--keys) names the signing key, its certificate and CA."""
    options, sources = settings.resolve(vars(args), os.environ)
    if options.k3s_version and sources["k3s_channel"] != "default":
        raise OsbError("--k3s-version and --k3s-channel exclude each other")
    if options.k3s_version:
        check_version(options.k3s_version)
    if options.rootfs_tarball is not None and options.board == "all":
        raise OsbError("--rootfs-tarball is one board's root: it cannot go with --board all")
    keys = options.keys
    key = options.sign_key or (keys / "signing.key.pem" if keys else None)
    cert = options.sign_cert or (keys / "signing.cert.pem" if keys else None)
    keyring = options.keyring or (keys / "ca.cert.pem" if keys else
                                  cert.parent / "ca.cert.pem" if cert else None)
    if (key is None) != (cert is None):
        raise OsbError("--sign-key and --sign-cert go together (see `osbuilder keys init`)")
    for flag, path in (("--sign-key", key), ("--sign-cert", cert), ("--keyring", keyring),
                       ("--config", options.config),
                       ("--rootfs-tarball", options.rootfs_tarball)):
        if path is not None and not path.is_file():
            raise OsbError(f"{flag} {path}: no such file")

    for name, path in (("sign_key", key), ("sign_cert", cert), ("keyring", keyring)):
        if path is not None and sources[name] == "default":
            sources[name] = "--keys" if keys else "beside --sign-cert"

    def absolute(path: Path | None) -> Path | None:
        return path.resolve() if path else None

    return dataclasses.replace(
        options, out_dir=options.out_dir.resolve(), sign_key=absolute(key),
        sign_cert=absolute(cert), keyring=absolute(keyring), config=absolute(options.config),
        rootfs_tarball=absolute(options.rootfs_tarball)), sources


def cmd_show_config(args: argparse.Namespace) -> int:
    print(settings.show(*build_options(args)))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from osbuilder.host.pipeline import run_build
    from osbuilder.shared.nodeconfig.loader import check_file

    options, _ = build_options(args)
    boards = ([board_arg(n) for n in board_names()] if options.board == "all"
              else [board_arg(options.board)])
    if options.rootfs_tarball is not None:
        boards = [dataclasses.replace(boards[0], rootfs_tarball=options.rootfs_tarball,
                                      dib=None)]
    if options.config is not None:
        check_file(options.config, f"--config {options.config}")
    progress = Progress()
    images, failed = [], []
    for board in boards:
        formats = options.formats or board.formats
        progress.say(f"building {board.name} ({board.arch}) version {options.version} "
                     f"-> {options.out_dir}")
        try:
            artifacts = run_build(board, dataclasses.replace(options, formats=formats),
                                  progress)
        except OsbError as exc:
            if len(boards) == 1:
                raise
            # --board all: one board's failure does not stop the others (caches are shared)
            progress.say(f"error: {board.name}: {exc}")
            failed.append(board.name)
            continue
        print_summary(artifacts, progress)
        # the disk image (img, else the first format asked for), for scripts and `make run`
        images.append(next(a.path for a in artifacts if a.kind not in ("bundle", "manifest")))
    for image in images:
        print(image)
    if failed:
        raise OsbError(f"--board all: {len(failed)} of {len(boards)} boards failed: "
                       f"{', '.join(failed)} (their errors are above)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from osbuilder.host.qemu import qemu_argv, scratch_disk

    board = board_arg(args.board)
    if not args.image.is_file():
        raise OsbError(f"{args.image}: no such image (build one with `make image`)")
    scratch = scratch_disk(args.image, args.image.with_name(args.image.stem + ".run.img"),
                           args.disk_size)
    argv = qemu_argv(board, scratch, scratch.with_suffix(".vars.fd"))
    print(f"booting {scratch} (copy of {args.image}); quit with Ctrl-A X", file=sys.stderr)
    os.execvp(argv[0], argv)


def cmd_boards() -> int:
    print(f"{'BOARD':16} {'ARCH':6} {'FORMATS':10} DESCRIPTION")
    for name in board_names():
        b = load_board(name)
        print(f"{b.name:16} {b.arch:6} {','.join(b.formats):10} {b.description}")
    return 0


def cmd_show_board(name: str) -> int:
    b = board_arg(name)
    print(f"name: {b.name}\narch: {b.arch}\nsuite: {b.suite}\nmirror: {b.mirror}")
    print(f"rootfs: {rootfs_backend(b)}")
    print(f"kernel: {b.kernel.package}\nconsole: {', '.join(b.kernel.console)}")
    print(f"bootloader: {b.bootloader}\npartition_table: {b.partition_table}")
    print(f"sizes: boot {b.sizes.boot_mib} MiB, root {b.sizes.root_mib} MiB x2, "
          f"data {b.sizes.data_mib} MiB (grows)")
    print(f"initramfs_modules: {' '.join(b.initramfs_modules)}")
    print(f"packages ({len(b.all_packages())}): {' '.join(b.all_packages())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(name)s: %(message)s")
    try:
        if args.command == "build":
            return cmd_build(args)
        if args.command == "show-config":
            return cmd_show_config(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "flash":
            from osbuilder.host.flash import flash

            flash(args.image, args.device, Progress(), args.config, args.force)
            print(f"{args.device}: flashed and verified")
            return 0
        if args.command == "publish":
            from osbuilder.host.publish.ec2_ami import PublishOptions, publish_ami

            done = publish_ami(args.image, PublishOptions(args.region, args.bucket, args.name,
                                                          args.public), Progress())
            print(done.ami_id)
            return 0
        if args.command == "serve-pxe":
            from osbuilder.host.pxe_server import serve_pxe

            return serve_pxe(args.dir, args.bind, args.port, args.url, args.script,
                             args.config, args.args)
        if args.command == "keys":
            from osbuilder.host.keys import init_keys

            for f in init_keys(args.dir, args.org, args.ca_dir):
                print(f)
            print("keep ca.key.pem offline; build with --sign-key/--sign-cert from this folder",
                  file=sys.stderr)
            return 0
        if args.command == "boards":
            return cmd_boards()
        if args.command == "show-board":
            return cmd_show_board(args.name)
        if args.command == "validate-config":
            from osbuilder.shared.nodeconfig.loader import validate_command

            validate_command(args.file, args.strict, "osbuilder")
            return 0
        if args.command == "validate-board":
            b = load_board_file(args.file)
            print(f"{args.file}: ok ({b.name}, {b.arch}, {len(b.all_packages())} packages)")
            return 0
    except OsbError as exc:
        print(f"osbuilder: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("osbuilder: interrupted; partial output removed", file=sys.stderr)
        return 130
    return 1
