"""Format pxe: network boot files for a diskless (live) node, or an install over the net.

  <name>-pxe.vmlinuz, .initrd.img   kernel and initrd (the image's own)
  <name>-pxe.squashfs               the root, fetched over HTTP by the initramfs into RAM
  <name>-pxe.ipxe                   iPXE script (serve the folder: `osbuilder serve-pxe`)
  <name>-pxe.pxelinux.cfg           examples for lpxelinux (BIOS) and GRUB (UEFI) that
  <name>-pxe.grub.cfg                 fetch the same files over HTTP
  <name>-pxe.config.yaml            the build's --config, which the script passes as
                                    osb.config_url= (PXE has no boot partition)
The live system installs to disk like the ISO when its config names install.device.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from osbuilder.host.context import Artifact, BuildContext
from osbuilder.host.formats import live_common as live_fmt

DEFAULT_PORT = 8080
SERVER = "SERVER"  # placeholder the examples ask the user to replace

IPXE = """\
#!ipxe
# osbuilder {version} for {board}: diskless live boot over HTTP.
# osb_url:  where these files are served; default the DHCP next-server on port {port}
#           (`osbuilder serve-pxe DIR` sets it in the boot.ipxe it serves)
# osb_args: more kernel options, e.g. osb.config_url=http://host/node.yaml, or
#           osb.install.device=/dev/sda osb.install.silent=true to install to that disk
isset ${{osb_url}} || set osb_url http://${{next-server}}:{port}
{args_default}kernel ${{osb_url}}/{kernel} initrd={initrd} {options} ${{osb_args}}
initrd ${{osb_url}}/{initrd}
boot
"""
PXELINUX = """\
# osbuilder {version} for {board}: pxelinux.cfg/default for lpxelinux.0 (BIOS PXE with
# HTTP). Replace {server} with the host of `osbuilder serve-pxe` (port {port}).
DEFAULT osbuilder
LABEL osbuilder
  KERNEL http://{server}:{port}/{kernel}
  INITRD http://{server}:{port}/{initrd}
  APPEND {options}{extra}
"""
GRUB = """\
# osbuilder {version} for {board}: grub.cfg for GRUB's network boot (UEFI, grubnetx64.efi;
# GRUB 2.06 or later for a port in the server name). Replace {server} with the host of
# `osbuilder serve-pxe` (port {port}).
set timeout=3
menuentry "osbuilder {version} ({board}) live over HTTP" {{
  linux (http,{server}:{port})/{kernel} {options}{extra}
  initrd (http,{server}:{port})/{initrd}
}}
"""
# PXE loads the live root over plain HTTP; its config, which the node fetches from the same
# server, is allowed plain http too (the node refuses http config_urls otherwise)
ALLOW_HTTP = "osb.config_url_allow_http=1"


def names(basename: str) -> dict[str, str]:
    stem = f"{basename}-pxe"
    return {k: f"{stem}.{k}" for k in ("vmlinuz", "initrd.img", "squashfs", "ipxe",
                                       "pxelinux.cfg", "grub.cfg", "config.yaml")}


def write_pxe(ctx: BuildContext) -> None:
    assert ctx.squashfs is not None
    n = names(ctx.basename)
    out: dict[str, Path] = {k: ctx.work / v for k, v in n.items()}
    shutil.copyfile(live_fmt.kernel(ctx), out["vmlinuz"])
    shutil.copyfile(live_fmt.initrd(ctx), out["initrd.img"])
    out["squashfs"].hardlink_to(ctx.squashfs)
    has_config = ctx.options.config is not None
    if ctx.options.config is not None:
        shutil.copyfile(ctx.options.config, out["config.yaml"])
    common = {"version": ctx.options.version, "board": ctx.board.name, "port": DEFAULT_PORT,
              "kernel": n["vmlinuz"], "initrd": n["initrd.img"], "server": SERVER}
    args_default = (f"isset ${{osb_args}} || set osb_args "
                    f"osb.config_url=${{osb_url}}/{n['config.yaml']} "
                    f"{ALLOW_HTTP}\n" if has_config else "")
    out["ipxe"].write_text(IPXE.format(
        **common, args_default=args_default,
        options=live_fmt.options(ctx, f"${{osb_url}}/{n['squashfs']}", "live")))
    base = f"http://{SERVER}:{DEFAULT_PORT}"
    examples = {"options": live_fmt.options(ctx, f"{base}/{n['squashfs']}", "live"),
                "extra": (f" osb.config_url={base}/{n['config.yaml']} {ALLOW_HTTP}"
                          if has_config else "")}
    out["pxelinux.cfg"].write_text(PXELINUX.format(**common, **examples))
    out["grub.cfg"].write_text(GRUB.format(**common, **examples))
    for kind, path in out.items():
        if path.exists():
            ctx.artifacts.append(Artifact(f"pxe-{kind}", path))
