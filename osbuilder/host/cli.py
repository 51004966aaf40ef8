# PYTHON_ARGCOMPLETE_OK  (argcomplete's marker: this command completes itself)
"""`osbuilder`: the host command line. The parser is here; each command is a function
in osbuilder.host.commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from osbuilder import __version__
from osbuilder.host import settings
from osbuilder.host.boards import board_names
from osbuilder.host.formats import FORMATS
from osbuilder.shared.cli_base import completer, enable_completion, main_parser, sub_parsers
from osbuilder.shared.cli_guard import run_guarded

EPILOG = """\
examples:
  osbuilder boards                                         # every board and its formats
  sudo osbuilder build --board qemu-amd64                  # k3s from the stable channel
  sudo osbuilder build --board nuc-amd64 --config node.yaml --compress
  sudo osbuilder build --board qemu-amd64 --k3s-dir ./k3s-release   # air-gapped build
  sudo osbuilder build --board nuc-amd64 --format iso --config node.yaml  # USB installer
  osbuilder serve-pxe out --bind 0.0.0.0 --config node.yaml          # after --format pxe
  osbuilder validate-board qemu-amd64
  sudo osbuilder flash out/osbuilder-rpi-arm64-1.0.0.img.zst /dev/sdb --config node.yaml
  osbuilder publish ami --region eu-west-1 --bucket my-images out/osbuilder-ec2-a1-1.0.0.img

Artifacts land in --out (default ./out): <name>.img, <name>.manifest.json, SHA256SUMS.
Downloads and rootfs tarballs are cached in ~/.cache/osbuilder (--cache-dir).
Shell completion: eval "$(register-python-argcomplete osbuilder)" (or `make install`)."""


def port(text: str) -> int:
    """A TCP port (0: any free one)."""
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0..65535)")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    p = main_parser("osbuilder", "Build immutable A/B OS images with k3s for edge boards, "
                    "from Debian.", __version__, EPILOG)
    sub = sub_parsers(p, "command")

    b = sub.add_parser("build", help="build an image for a board",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    settings.add_arguments(b)
    b.add_argument("--json", action="store_true",
                   help="print the results (artifacts with size and sha256) as JSON")
    boards_of(b)
    sc = sub.add_parser("show-config", help="print the settings a build with these options "
                        "would use, and where each came from")
    settings.add_arguments(sc)
    boards_of(sc)

    ks = sub.add_parser("keys", help="update-signing keys: make them, check their expiry")
    ks_sub = sub_parsers(ks, "keys_command")
    ki = ks_sub.add_parser("init", help="make a fleet CA and a bundle-signing key in DIR "
                           "(the CA for 20 years, the signing certificate for 2)")
    ki.add_argument("dir", type=Path, help="a new or empty folder")
    ki.add_argument("--org", default="osbuilder fleet", help="organisation in the certificates")
    ki.add_argument("--ca-dir", type=Path,
                    help="issue the signing key from this folder's CA (rotation); its "
                         "ca.key.pem is used where it is and never copied")
    kc = ks_sub.add_parser("check", help="say when the certificates of a keys folder (or one "
                           "certificate) expire; warn 30 days ahead")
    kc.add_argument("path", type=Path, help="a `keys init` folder or a certificate file")

    r = sub.add_parser("run", help="boot an image in QEMU, serial console on this terminal "
                       "(quit: Ctrl-A X)")
    r.add_argument("image", type=Path, help="disk image (.img) from `osbuilder build`")
    completer(r.add_argument("--board", help="board the image was built for (default: the "
                             "one in the image's manifest beside it)"), board_names)
    r.add_argument("--disk-size", default="8G",
                   help="boot a scratch copy of the image grown to this size (the data "
                        "partition fills it on first boot); the copy is removed when QEMU "
                        "exits, the image itself is never modified (default: 8G)")

    fl = sub.add_parser("flash", help="write an image to an SD card or USB stick, verify it, "
                        "add config.yaml")
    fl.add_argument("image", type=Path, help="disk image (.img or .img.zst) of `osbuilder "
                    "build`")
    fl.add_argument("device", type=Path, help="whole removable disk, e.g. /dev/sdb or "
                    "/dev/mmcblk0 (see lsblk)")
    fl.add_argument("--config", type=Path,
                    help="node config.yaml to put on the boot partition (validated first)")
    fl.add_argument("--yes", "-y", action="store_true",
                    help="do not ask before erasing the disk")
    fl.add_argument("--force", action="store_true",
                    help="also write a partition, a non-removable disk, or a file (made if "
                         "it does not exist); never a mounted disk")

    pb = sub.add_parser("publish", help="publish a built image to a cloud")
    pb_sub = sub_parsers(pb, "publish_command")
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

    sp = sub.add_parser("serve-pxe", help="serve one build's pxe files over HTTP (lab setups; "
                        "DHCP and TFTP: docs/delivery.md)")
    sp.add_argument("dir", type=Path, help="folder with <name>-pxe.* (the build's --out)")
    sp.add_argument("--bind", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: this machine only; "
                         "0.0.0.0 or an interface's address serves the network)")
    sp.add_argument("--port", type=port, default=8080, help="TCP port (default 8080)")
    sp.add_argument("--url", help="base URL nodes reach this server by (default "
                    "http://<address>:PORT); behind NAT or port forwarding, say it here")
    sp.add_argument("--script", help="the build's .ipxe script to boot (default: the newest "
                    "*-pxe.ipxe in DIR); only that build's files are served")
    sp.add_argument("--config", type=Path, help="node config.yaml to serve as /config.yaml "
                    "and pass to nodes as osb.config_url")
    sp.add_argument("--args", default="", help="more kernel options for the nodes, e.g. "
                    "'osb.install.device=/dev/sda osb.install.silent=true'")

    bs = sub.add_parser("boards", help="list boards with arch, boot loader and every format "
                        "each can build (* marks the defaults)")
    bs.add_argument("--json", action="store_true", help="machine-readable")
    s = sub.add_parser("show-board", help="print a board's resolved settings")
    completer(s.add_argument("board", metavar="BOARD", help="board name or board file"),
              board_names)
    s.add_argument("--json", action="store_true", help="machine-readable")
    v = sub.add_parser("validate-board", help="check a board (name or file) against the schema")
    completer(v.add_argument("board", metavar="BOARD", help="board name or board file"),
              board_names)
    c = sub.add_parser("validate-config", help="check a node config.yaml (as the node would)")
    c.add_argument("file", type=Path)
    c.add_argument("--strict", action="store_true",
                   help="refuse keys that osbuilder and k3OS do not know (CI), instead of "
                        "warning and ignoring them as the node does")
    sch = sub.add_parser("schema", help="print a JSON Schema (for editors: docs/config.md)")
    sch.add_argument("name", choices=("config", "board"))
    return p


def boards_of(parser: argparse.ArgumentParser) -> None:
    """Board-name completion for a parser's --board (declared in settings)."""
    for action in parser._actions:
        if "--board" in action.option_strings:
            completer(action, lambda: [*board_names(), "all"])
        if "--format" in action.option_strings:
            completer(action, lambda: list(FORMATS))


def main(argv: list[str] | None = None) -> int:
    from osbuilder.host import commands

    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    handlers = {
        "build": commands.build, "show-config": commands.show_config, "run": commands.run_vm,
        "flash": commands.flash, "publish": commands.publish, "serve-pxe": commands.serve,
        "keys": commands.keys, "boards": commands.boards, "show-board": commands.show_board,
        "validate-board": commands.validate_board,
        "validate-config": commands.validate_config, "schema": commands.schema,
    }
    return run_guarded("osbuilder", lambda: handlers[args.command](args), args.verbose)
