"""Build settings, declared once. Each field of BuildOptions is one setting: its type, its
default and, in its metadata, its command-line flag, help, Makefile variable and
environment variable. `osbuilder build`'s options, `osbuilder show-config`, the Makefile's
variables (settings.mk) and the settings table in docs/building.md are all derived from
this class.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from osbuilder import __version__
from osbuilder.shared.errors import OsbError
from osbuilder.shared.versions import parse_version

T = TypeVar("T")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "osbuilder"


@dataclass(frozen=True)
class Setting:
    flag: str | None  # of `osbuilder build`; None: not set on the command line
    help: str
    make: str | None = None  # Makefile variable (make image VAR=...)
    env: str | None = None  # environment variable that sets it (below the flag)
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # text -> value; None: the field's type
    default_text: str | None = None  # the default as the help and docs say it


def setting(default: T, flag: str | None, help: str, **kw: Any) -> T:
    meta = Setting(flag=flag, help=help, **kw)
    result: T = field(default=default, metadata={"setting": meta})
    return result


def _formats(text: str) -> tuple[str, ...]:
    return tuple(f for f in text.split(",") if f)


MAX_EPOCH = 253402300799  # 9999-12-31 23:59:59 UTC: file systems and tar stop there


def _epoch(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_EPOCH:
        raise ValueError("expected seconds since 1970-01-01 UTC, e.g. 1700000000")
    return int(text)


def _version(text: str) -> str:
    parse_version(text)  # one scheme, the one the node compares by
    return text


def _path(text: str) -> Path:
    return Path(text).expanduser()


ENCRYPTIONS = ("luks", "none")


def _encryption(text: str) -> str:
    if text not in ENCRYPTIONS:
        raise ValueError(f"expected one of {', '.join(ENCRYPTIONS)}")
    return text


@dataclass(frozen=True)
class BuildOptions:
    """What one build uses; stages read it from the BuildContext."""

    board: str = setting(
        "qemu-amd64", "--board", make="BOARD", metavar="BOARD",
        help="board name (see `osbuilder boards`), a board file (*.yaml), or `all` (every "
             "board, one after the other, sharing caches)")
    out_dir: Path = setting(Path("out"), "--out", make="OUT", metavar="DIR", parse=_path,
                            help="output directory")
    version: str = setting(__version__, "--version", make="VERSION", parse=_version,
                           help="image version recorded in os-release, the manifest and the "
                                "update bundle: MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] "
                                "(semver.org), optionally with a leading v")
    formats: tuple[str, ...] = setting(
        (), "--format", make="FORMAT", parse=_formats, default_text="the board's",
        help="comma-separated formats: img (raw disk), qcow2, ami (raw disk + .ami.json for "
             "`publish ami`), iso (hybrid UEFI live/installer, CD or USB stick), pxe "
             "(network boot files)")
    compress: bool = setting(False, "--compress", help="also write <image>.img.zst (format img)")
    config: Path | None = setting(None, "--config", make="CONFIG", parse=_path,
                                  help="node config.yaml to put on the boot partition")
    k3s_version: str | None = setting(None, "--k3s-version", make="K3S_VERSION",
                                      help="exact k3s release, e.g. v1.31.4+k3s1")
    k3s_channel: str = setting("stable", "--k3s-channel", make="K3S_CHANNEL",
                               help="k3s channel: stable, latest, testing or v1.31 (not with "
                                    "--k3s-version)")
    k3s_dir: Path | None = setting(
        None, "--k3s-dir", make="K3S_DIR", parse=_path,
        help="local k3s release folder (air-gapped): k3s, k3s-arm64, k3s-armhf, "
             "sha256sum-{amd64,arm64,arm}.txt, optional air-gap image tarballs")
    k3s_airgap: bool = setting(False, "--k3s-airgap-images",
                               help="also download the k3s air-gap images into the image")
    k3s_channel_url: str = setting(
        "https://update.k3s.io/v1-release/channels", None, env="OSB_K3S_CHANNEL_URL",
        help="k3s channel server (a mirror, or a test fixture)")
    k3s_release_url: str = setting(
        "https://github.com/k3s-io/k3s/releases/download", None, env="OSB_K3S_RELEASE_URL",
        help="k3s release downloads (a mirror, or a test fixture)")
    cache_dir: Path = setting(DEFAULT_CACHE, "--cache-dir", parse=_path,
                              default_text="~/.cache/osbuilder",
                              help="download and rootfs cache")
    refresh: bool = setting(False, "--refresh", help="rebuild the cached rootfs (and all after it)")
    rebuild: bool = setting(
        False, "--rebuild",
        help="build the root squashfs and the initramfs again even when the cache holds them "
             "for the same inputs (the rootfs tarball stays cached)")
    rootfs_tarball: Path | None = setting(
        None, "--rootfs-tarball", parse=_path,
        help="use this rootfs tarball instead of mmdebstrap (arch, /sbin/init and kernel are "
             "checked)")
    keys: Path | None = setting(
        None, "--keys", make="KEYS", parse=_path, metavar="DIR",
        help="a `keys init` folder: sign the update bundle with its signing key and bake its "
             "CA into the image; on UEFI boards also sign systemd-boot and each slot's "
             "kernel image (UKI, with the root's dm-verity hash) with its Secure Boot db key "
             "(docs/trust.md)")
    encryption: str | None = setting(
        None, "--encryption", make="ENCRYPTION", parse=_encryption, metavar="KIND",
        default_text="the board's: luks with a TPM and Secure Boot keys",
        help="data partition: luks (LUKS2, formatted on first boot, its key sealed to the "
             "TPM under the fleet's signed PCR policy) or none")
    sign_key: Path | None = setting(None, "--sign-key", parse=_path,
                                    help="key that signs the update bundle (.raucb)")
    sign_cert: Path | None = setting(None, "--sign-cert", parse=_path,
                                     help="certificate of --sign-key")
    keyring: Path | None = setting(
        None, "--keyring", parse=_path, default_text="ca.cert.pem beside --sign-cert",
        help="fleet CA certificate baked into the image: bundles must chain to it")
    source_date_epoch: int = setting(
        0, None, env="SOURCE_DATE_EPOCH", parse=_epoch,
        default_text="the time of the checkout's last git commit, else now",
        help="time stamp of every file in the image: same inputs, same bytes")


def meta(f: dataclasses.Field[Any]) -> Setting:
    s: Setting = f.metadata["setting"]
    return s


SETTINGS = tuple((f, meta(f)) for f in fields(BuildOptions))


def _parser_for(f: dataclasses.Field[Any]) -> Callable[[str], Any]:
    return meta(f).parse or str


def _option_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """parse for argparse: its ValueError's message becomes the usage error's."""
    def typed(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    typed.__name__ = parse.__name__.lstrip("_")
    return typed


def add_arguments(parser: Any) -> None:
    """One option per setting with a flag; unset options stay None (defaults come later,
    so `show-config` can say where each value came from)."""
    for f, s in SETTINGS:
        if s.flag is None:
            continue
        default = s.default_text or (f.default if f.default not in (None, ()) else None)
        help_text = s.help + (f" (default: {default})" if default not in (None, False) else "")
        if f.type == "bool":
            parser.add_argument(s.flag, dest=f.name, action="store_true", default=None,
                                help=help_text)
        else:
            parser.add_argument(s.flag, dest=f.name, type=_option_type(_parser_for(f)),
                                default=None,
                                metavar=s.metavar, help=help_text)


def _computed_default(name: str) -> tuple[Any, str] | None:
    if name == "source_date_epoch":
        from osbuilder.host import git_revision

        commit = git_revision.commit_time()
        return (commit, "git commit time") if commit else (int(time.time()), "now")
    return None


def resolve(given: Mapping[str, Any], environ: Mapping[str, str]
            ) -> tuple[BuildOptions, dict[str, str]]:
    """BuildOptions from what the command line gave (None: not given) and the environment;
    returns it with where each value came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f, s in SETTINGS:
        if given.get(f.name) not in (None, False):
            values[f.name], sources[f.name] = given[f.name], s.flag or "argument"
        elif s.env and environ.get(s.env):
            try:
                values[f.name] = _parser_for(f)(environ[s.env])
            except ValueError as exc:
                raise OsbError(f"{s.env}={environ[s.env]!r}: {exc}") from None
            sources[f.name] = f"environment {s.env}"
        elif (computed := _computed_default(f.name)) is not None:
            values[f.name], sources[f.name] = computed
        else:
            sources[f.name] = "default"
    return BuildOptions(**values), sources


def show(options: BuildOptions, sources: Mapping[str, str]) -> str:
    rows = [(f.name, _text(getattr(options, f.name)), sources.get(f.name, "default"))
            for f, _ in SETTINGS]
    width = max(len(n) for n, _, _ in rows)
    vwidth = min(max(len(v) for _, v, _ in rows), 48)
    return "\n".join(f"{n:{width}}  {v:{vwidth}}  {src}" for n, v, src in rows)


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "-"
    return "-" if value is None else str(value)


def makefile() -> str:
    """settings.mk: the Makefile variables of the settings and the `build` arguments they
    make. Generated (`make settings`); a unit test keeps it equal to this output."""
    lines = ["# Generated from osbuilder/host/settings.py by `make settings`: do not edit.",
             "# Each variable is a setting of `osbuilder build` (docs/building.md: Build "
             "settings)."]
    args = []
    for f, s in SETTINGS:
        if s.make is None or s.flag is None:
            continue
        # the defaults the Makefile itself needs (`make run` finds the image by them)
        default = f.default if f.name in ("board", "out_dir") else ""
        lines.append(f"{s.make} ?= {default}".rstrip())
        args.append(f"$(if $({s.make}),{s.flag} $({s.make}))")
    lines.append("BUILD_ARGS := " + " \\\n\t".join(args))
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The table of build settings in docs/building.md (a unit test compares them)."""
    out = ["| setting | flag | make | environment | default | what |",
           "|---|---|---|---|---|---|"]
    for f, s in SETTINGS:
        default = s.default_text or _text(f.default if f.default is not False else "off")
        out.append(f"| `{f.name}` | {'`' + s.flag + '`' if s.flag else ''} | "
                   f"{'`' + s.make + '=`' if s.make else ''} | "
                   f"{'`' + s.env + '`' if s.env else ''} | {default} | {s.help} |")
    return "\n".join(out) + "\n"


TABLE_DOC = Path("docs/building.md")
TABLE_START = "<!-- settings table: generated from osbuilder/host/settings.py -->\n"
TABLE_END = "<!-- end of settings table -->"


def with_table(doc: str) -> str:
    """doc with the text between the settings table markers replaced by markdown_table()."""
    head, start, rest = doc.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise OsbError(f"{TABLE_DOC}: settings table markers not found")
    return head + start + markdown_table() + end + tail


if __name__ == "__main__":  # make settings (from the checkout's top folder)
    Path("settings.mk").write_text(makefile())
    TABLE_DOC.write_text(with_table(TABLE_DOC.read_text()))
