"""`osbuilder build` and `show-config`: options resolved and checked, every board and
format checked before any work, then the pipeline; the results as text or JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from osbuilder.host import settings
from osbuilder.host.boards import Board, board_arg, board_names
from osbuilder.host.context import Artifact
from osbuilder.host.formats import check_formats, check_names
from osbuilder.host.k3s_release import check_version
from osbuilder.host.progress import Progress
from osbuilder.host.settings import BuildOptions
from osbuilder.shared.errors import OsbError, UsageError


def human(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def print_summary(artifacts: list[Artifact], progress: Progress) -> None:
    progress.say("\nstage timings: " + ", ".join(f"{n} {t:.1f}s" for n, t in progress.timings))
    progress.say(f"build finished in {time.monotonic() - progress.started:.1f} s\n")
    for a in artifacts:
        st = a.path.stat()
        used = st.st_blocks * 512
        size = human(st.st_size) + (f" ({human(used)} on disk)" if used < st.st_size else "")
        progress.say(f"  {a.kind:9} {a.path}  {size}  sha256 {a.sha256}")
    if artifacts:
        progress.say(f"  checksums {artifacts[0].path.parent / 'SHA256SUMS'}")


def build_options(args: argparse.Namespace) -> tuple[BuildOptions, dict[str, str]]:
    """The build's settings from its options and the environment, paths checked and made
    absolute; a `keys init` folder (--keys) names the signing key, its certificate and CA."""
    options, sources = settings.resolve(vars(args), os.environ)
    if options.k3s_version and sources["k3s_channel"] != "default":
        raise UsageError("--k3s-version and --k3s-channel exclude each other")
    if options.k3s_version:
        try:
            check_version(options.k3s_version)
        except OsbError as exc:
            raise UsageError(str(exc)) from None
    check_names(options.formats)
    if options.rootfs_tarball is not None and options.board == "all":
        raise UsageError("--rootfs-tarball is one board's root: it cannot go with --board all")
    keys = options.keys
    key = options.sign_key or (keys / "signing.key.pem" if keys else None)
    cert = options.sign_cert or (keys / "signing.cert.pem" if keys else None)
    keyring = options.keyring or (keys / "ca.cert.pem" if keys else
                                  cert.parent / "ca.cert.pem" if cert else None)
    if (key is None) != (cert is None):
        raise UsageError("--sign-key and --sign-cert go together (see `osbuilder keys init`)")
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


def show_config(args: argparse.Namespace) -> int:
    print(settings.show(*build_options(args)))
    return 0


def check_certificates(options: BuildOptions, progress: Progress) -> None:
    """An expired signing certificate or CA is an error (every node would refuse the
    bundle); one that expires within 30 days, a warning."""
    from osbuilder.host.keys import RENEW_HINT
    from osbuilder.host.keys import check_certificates as check

    certs = [c for c in (options.sign_cert, options.keyring) if c is not None]
    if certs:
        for w in check(certs, datetime.now(UTC))[1]:
            progress.say(f"warning: {w}: {RENEW_HINT}")


def boards_to_build(options: BuildOptions) -> list[Board]:
    """Every board of the build with its formats checked: an impossible pair fails now,
    not after a rootfs."""
    boards = ([board_arg(n) for n in board_names()] if options.board == "all"
              else [board_arg(options.board)])
    if options.rootfs_tarball is not None:
        boards = [dataclasses.replace(boards[0], rootfs_tarball=options.rootfs_tarball,
                                      dib=None)]
    for b in boards:
        check_formats(b, options.formats or b.formats)
    return boards


def build(args: argparse.Namespace) -> int:
    from osbuilder.host.pipeline import run_build
    from osbuilder.shared.nodeconfig.loader import check_file

    options, _ = build_options(args)
    boards = boards_to_build(options)
    if options.config is not None:
        check_file(options.config, f"--config {options.config}")
    progress = Progress()
    check_certificates(options, progress)
    images, failed, results = [], [], []
    for board in boards:
        formats = options.formats or board.formats
        progress.say(f"building {board.name} ({board.arch}) version {options.version} "
                     f"-> {options.out_dir}")
        try:
            artifacts = run_build(board, dataclasses.replace(options, formats=formats),
                                  progress)
        except KeyboardInterrupt:
            progress.say("partial output removed")  # run_build's cleanup ran on the way out
            raise
        except OsbError as exc:
            if len(boards) == 1:
                raise
            # --board all: one board's failure does not stop the others (caches are shared)
            progress.say(f"error: {board.name}: {exc}")
            failed.append(board.name)
            continue
        print_summary(artifacts, progress)
        # the disk image (img, else the first format asked for), for scripts and `make run`
        image = next(a.path for a in artifacts if a.kind not in ("bundle", "manifest"))
        images.append(image)
        results.append({"board": board.name, "version": options.version, "image": str(image),
                        "artifacts": [{"kind": a.kind, "path": str(a.path),
                                       "size": a.path.stat().st_size, "sha256": a.sha256}
                                      for a in artifacts]})
    if args.json:
        json.dump({"builds": results, "failed": failed}, sys.stdout, indent=2)
        print()
    else:
        for image in images:
            print(image)
    if failed:
        raise OsbError(f"--board all: {len(failed)} of {len(boards)} boards failed: "
                       f"{', '.join(failed)} (their errors are above)")
    return 0
