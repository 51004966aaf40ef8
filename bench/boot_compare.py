"""osbuilder against stock Debian, booted alternately in one run with the same QEMU command
line: first boot (a fresh copy of each image) and second boot (the same disk again), to
the login prompt and, for osbuilder, to the agent's `applied config`. Ratios only: TCG on
a shared machine varies with its load, so neither image's seconds mean much alone.

Each figure is the best of `rounds` (a round boots stock, then osbuilder, a fresh disk
each, twice). The first round also logs in and keeps what systemd saw (plot SVG,
critical chain, blame) for every image and both boots.

A second reference, stock Debian with the services osbuilder's image starts before its
login prompt (tests/helpers/stock_debian.py: SERVICES), is booted in the same rounds when
given: osbuilder against it is what osbuilder adds itself; that reference against plain
stock is what those services cost. Issue 18's targets stay against plain stock.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.boots import Boot, Login, boot, top_units
from osbuilder.host.boards import Board
from osbuilder.host.qemu import scratch_disk
from tests.helpers.stock_debian import HOSTNAME, ROOT_PASSWORD, build_stock_image, uefi
from tests.helpers.upgrade_node import virt_console

APPLIED = r"osbuilder-agent: applied config"
STOCK = Login(HOSTNAME, "root", ROOT_PASSWORD, root=True)
# osbuilder/stock ratio targets of issue 18 (login), and applied config within 5 s of stock
TARGETS = {"ratio_login_first": 1.15, "ratio_login_second": 1.10,
           "applied_minus_stock_login_first_s": 5.0}


def prepare(image: Path, work: Path, name: str,
            tweak: Callable[[Path], None] | None) -> tuple[Path, Path]:
    disk = scratch_disk(image, work / f"{name}.img", "4G")
    if tweak is not None:
        tweak(disk)
    vars_fd = work / f"{name}-vars.fd"
    vars_fd.unlink(missing_ok=True)  # a fresh machine: qemu_argv copies the template
    return disk, vars_fd


def compare(board: Board, osb_image: Path, stock_image: Path, work: Path, osb: Login,
            stock: Login, rounds: int = 2, smp: int | None = None,
            tweak: Callable[[Path], None] | None = None,
            services_image: Path | None = None) -> dict[str, Any]:
    """Figures and ratios; tweak(disk) adapts a fresh osbuilder disk (e.g. its console);
    services_image: the stock image with the node's services, booted too."""
    if smp is not None and board.qemu is not None:
        board = dataclasses.replace(board, qemu=dataclasses.replace(board.qemu, smp=smp))
    images = [("stock", stock_image, stock, None), ("osb", osb_image, osb, APPLIED)]
    if services_image is not None:
        images.insert(1, ("services", services_image, stock, None))
    runs: dict[str, list[Boot]] = {f"{name}{n}": [] for name, *_ in images for n in (1, 2)}
    for r in range(rounds):
        analyse_boot = r == 0
        for name, image, login, applied in images:
            disk, vars_fd = prepare(image, work, name, tweak if name == "osb" else None)
            for n in (1, 2):
                print(f"boot round {r + 1}/{rounds}: {name} boot {n}", file=sys.stderr)
                runs[f"{name}{n}"].append(boot(board, disk, vars_fd, work, login,
                                               applied=applied, analyse_boot=analyse_boot,
                                               poweroff=n == 1 or analyse_boot))
    return figures(runs)


def figures(runs: dict[str, list[Boot]]) -> dict[str, Any]:
    best = {k: min(b.login_s for b in v) for k, v in runs.items()}
    applied = {k: min(b.applied_s for b in runs[k] if b.applied_s is not None)
               for k in ("osb1", "osb2")}
    out: dict[str, Any] = {
        "stock_login_first_s": best["stock1"], "stock_login_second_s": best["stock2"],
        "osb_login_first_s": best["osb1"], "osb_login_second_s": best["osb2"],
        "osb_applied_first_s": applied["osb1"], "osb_applied_second_s": applied["osb2"],
        "samples": {k: [[b.login_s, b.applied_s] for b in v] for k, v in runs.items()},
    }
    out["ratio_login_first"] = round(best["osb1"] / best["stock1"], 2)
    out["ratio_login_second"] = round(best["osb2"] / best["stock2"], 2)
    out["applied_minus_stock_login_first_s"] = round(applied["osb1"] - best["stock1"], 1)
    out["applied_minus_stock_login_second_s"] = round(applied["osb2"] - best["stock2"], 1)
    out["ratio_applied_first"] = round(applied["osb1"] / best["stock1"], 2)
    if "services1" in best:
        for n, name in ((1, "first"), (2, "second")):
            out[f"services_login_{name}_s"] = best[f"services{n}"]
            out[f"ratio_login_{name}_vs_services"] = round(best[f"osb{n}"]
                                                           / best[f"services{n}"], 2)
            out[f"ratio_services_{name}"] = round(best[f"services{n}"] / best[f"stock{n}"], 2)
    out["analysis"] = {k: v[0] for k, v in runs.items() if v and v[0].plot_svg}
    return out


def save_analysis(fig: dict[str, Any], dest: Path, stem: str) -> dict[str, list[str]]:
    """Write each analysed boot's SVG and texts beside the results JSON; returns each
    boot's top five units (by systemd-analyze blame) and replaces the Boot objects in
    fig["analysis"] with the names of the saved files."""
    tops: dict[str, list[str]] = {}
    saved: dict[str, list[str]] = {}
    for key, b in fig.pop("analysis").items():
        svg = dest / f"{stem}-{key}.svg"
        svg.write_bytes(b.plot_svg)
        txt = dest / f"{stem}-{key}.txt"
        txt.write_text("".join(f"$ systemd-analyze {name}\n{text.rstrip()}\n\n"
                               for name, text in b.texts.items()))
        saved[key] = [svg.name, txt.name]
        tops[key] = top_units(b.texts.get("blame", ""))
    fig["analysis_files"] = saved
    fig["top_units"] = tops
    return tops


def boot_setup(board: Board, work: Path
               ) -> tuple[int | None, Callable[[Path], None] | None, str | None]:
    """(vCPUs, osbuilder disk tweak, stock console) for board under QEMU: a U-Boot board
    boots on the virt machine with 1 vCPU, like a Pi, its console on the PL011."""
    if uefi(board):
        return None, None, None
    return 1, lambda disk: virt_console(disk, work), "ttyAMA0,115200"


def against_stock(board: Board, osb_image: Path, work: Path, cache: Path, osb: Login,
                  results: Path, stem: str, rounds: int = 2, smp: int | None = None,
                  tweak: Callable[[Path], None] | None = None,
                  console: str | None = None) -> dict[str, Any]:
    """Build the stock image of board (its rootfs cached in cache; console: see
    build_stock_image), compare, save the analysis files under results; figures with
    each target's verdict."""
    stock_image = build_stock_image(board, cache, work / "stock-debian.img", console)
    services_image = build_stock_image(board, cache, work / "stock-services.img", console,
                                       services=True)
    fig = compare(board, osb_image, stock_image, work, osb, STOCK, rounds=rounds, smp=smp,
                  tweak=tweak, services_image=services_image)
    save_analysis(fig, results, stem)
    fig["targets"] = {k: {"max": t, "met": fig[k] <= t} for k, t in TARGETS.items()}
    return fig


def print_comparison(board: str, fig: dict[str, Any]) -> None:
    print(f"\nosbuilder vs stock Debian — {board}, same QEMU command line, best of "
          f"{len(fig['samples']['osb1'])}")
    for name in ("first", "second"):
        print(f"  {name} boot: stock login {fig[f'stock_login_{name}_s']} s, osbuilder "
              f"applied config {fig[f'osb_applied_{name}_s']} s, login "
              f"{fig[f'osb_login_{name}_s']} s ({fig[f'ratio_login_{name}']}x)")
    if "services_login_first_s" in fig:
        for name in ("first", "second"):
            print(f"  {name} boot: stock with the node's services (SERVICES) login "
                  f"{fig[f'services_login_{name}_s']} s ({fig[f'ratio_services_{name}']}x "
                  f"stock); osbuilder / it {fig[f'ratio_login_{name}_vs_services']}x")
    for key, t in fig["targets"].items():
        print(f"  {key:36} {fig[key]:>6}  target <= {t['max']}: "
              + ("met" if t["met"] else "MISSED"))
    for key, units in fig["top_units"].items():
        print(f"  slowest units, {key}: {', '.join(units)}")
