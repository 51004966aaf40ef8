"""`make bench`: build and boot figures for osbuilder, side by side with diskimage-builder,
printed and saved as JSON with the machine's facts under bench/results/.

Measures, for qemu-amd64: cold build (empty cache), warm build (cached rootfs and k3s),
peak RSS, image size raw / zstd, squashfs size, boot seconds to the agent's `applied
config` line and to the login prompt under QEMU TCG, and the agent's own wall time and
peak RSS for `boot` on an unchanged config (run again after logging in on the console).

Builds are timed without compression; both tools' images are then compressed the same
way (zstd -3, as `osbuilder build --compress`), and both are booted twice, alternating,
keeping the best (TCG boots on a shared machine vary with its load).

Then the same for diskimage-builder's own bootable image of the same package set
(bench/dib.py: `disk-image-create debian-minimal vm`, cold and warm in a cache of its own)
and the osbuilder/DIB ratio of each figure; and build seconds and image size of every
other board. The qemu-amd64 and DIB caches are temporary folders; the other boards share
~/.cache/osbuilder/bench-boards between runs (their cold builds take up to an hour under
qemu-user). The user's own build cache is not touched.

k3s: with K3S_DIR set the bench builds with that release folder; otherwise it serves a
small stand-in binary (TEST DOUBLE, tests/helpers/k3s_fixture.py) from a local HTTP
fixture, since the real one cannot be downloaded here. Sizes are then "excluding k3s".
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.boot_compare import against_stock, print_comparison  # noqa: E402
from bench.boots import Login  # noqa: E402
from bench.dib import (  # noqa: E402
    Measured,
    device_mapper_works,
    dib_boot_to_login,
    dib_build,
    measured,
    zstd,
)
from osbuilder.host.boards import board_names, load_board  # noqa: E402
from osbuilder.host.qemu import VM, interactive_serial, qemu_argv, scratch_disk  # noqa: E402
from osbuilder.host.stages.rootfs_dib import find_dib  # noqa: E402
from tests.helpers.k3s_fixture import serve_k3s  # noqa: E402

BOARD = "qemu-amd64"
EPOCH = "1700000000"
# the other boards' builds: kept between runs (see board_figures), apart from the user's
BOARD_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / \
    "osbuilder" / "bench-boards"


PASSWORD = "bench-pw"
RESULTS = ROOT / "bench" / "results"


def build(out: Path, cache: Path, env: dict[str, str], extra: list[str],
          board: str = BOARD, hostname: str = "bench") -> Measured:
    config = out.parent / f"bench-config-{hostname}.yaml"
    config.write_text(f"hostname: {hostname}\nk3os: {{password: {PASSWORD}}}\n")
    out.mkdir(parents=True, exist_ok=True)
    return measured([sys.executable, "-m", "osbuilder", "build", "--board", board, "--out",
                     str(out), "--cache-dir", str(cache), "--version", "1.0.0",
                     "--config", str(config), *extra],
                    env, out.parent / f"{out.name}.log", cwd=ROOT, stdout_to_log=False)


def stage_timings(log: Path) -> str:
    """The build's own per-stage line (every build prints one), for where time goes."""
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("stage timings:")]
    return lines[-1].removeprefix("stage timings: ") if lines else "?"


def boot_figures(image: Path, work: Path) -> dict[str, float]:
    (work / "vars.fd").unlink(missing_ok=True)  # every boot a first boot, like DIB's
    disk = scratch_disk(image, work / "boot.img", "4G")
    serial, extra = interactive_serial(work / "console.sock")
    argv = qemu_argv(load_board(BOARD), disk, work / "vars.fd", serial=serial, extra=extra)
    with VM(argv, work / "console.log", work / "console.sock") as vm:
        vm.wait_for(r"osbuilder-agent: applied config", 600)
        applied = vm.elapsed()
        vm.wait_for(r"bench login:", 600)
        login = vm.elapsed()
        vm.login("osb", PASSWORD)
        out = vm.shell(f"echo {PASSWORD} | sudo -S osbuilder-agent boot >/dev/null; "
                       "osbuilder-agent status", timeout=300)
    m = re.search(r"last boot: ([\d.]+) s, peak RSS (\d+) KiB", out)
    if m is None:
        raise SystemExit(f"no agent figures in `osbuilder-agent status`:\n{out}")
    return {"boot_to_applied_config_tcg_s": round(applied, 1),
            "boot_to_login_tcg_s": round(login, 1),
            "agent_boot_unchanged_tcg_s": float(m.group(1)),
            "agent_peak_rss_mib": round(int(m.group(2)) / 1024, 1)}


def squashfs_bytes(image: Path) -> int:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], check=True,
                                      capture_output=True, text=True).stdout)
    part = table["partitiontable"]["partitions"][1]
    with image.open("rb") as f:
        f.seek(part["start"] * 512 + 40)  # squashfs superblock: bytes_used at offset 40
        return int.from_bytes(f.read(8), "little")


def machine() -> dict[str, Any]:
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {"cores": os.cpu_count(), "ram_gib": round(int(mem) / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


def osbuilder_figures(work: Path, env: dict[str, str], extra: list[str],
                      k3s_note: str) -> dict[str, Any]:
    cache = work / "cache"
    cold = build(work / "cold", cache, env, extra)
    # the same inputs again: the root and initramfs come from the stage cache
    warm = build(work / "warm", cache, env, extra)
    # only the node config differs: the same root, a new boot partition
    config_only = build(work / "config-only", cache, env, extra, hostname="bench2")
    # the root made again from the cached rootfs tarball (the warm build before stage
    # caching)
    rebuild = build(work / "rebuild", cache, env, [*extra, "--rebuild"])
    image = work / "warm" / f"osbuilder-{BOARD}-1.0.0.img"
    return {
        "board": BOARD, "format": "img", "k3s": k3s_note,
        "build_cold_s": cold.seconds, "build_warm_s": warm.seconds,
        "build_config_only_s": config_only.seconds, "build_warm_rebuild_s": rebuild.seconds,
        "peak_rss_cold_mib": cold.peak_rss_mib, "peak_rss_warm_mib": warm.peak_rss_mib,
        "stage_timings_cold": stage_timings(work / "cold.log"),
        "stage_timings_warm": stage_timings(work / "warm.log"),
        "image_raw_mb": mb(image),
        "image_allocated_mb": round(image.stat().st_blocks * 512 / 1e6, 1),
        **compressed(image),
        "squashfs_mb": round(squashfs_bytes(image) / 1e6, 1),
    }


def compressed(image: Path) -> dict[str, float]:
    """Both tools' images compressed the same way, outside the timed builds."""
    t0 = time.monotonic()
    size = mb(zstd(image))
    return {"image_zstd_mb": size, "zstd_s": round(time.monotonic() - t0, 1)}


def boot_rounds(osb_image: Path, dib_image: Path, work: Path,
                rounds: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    """Boot both images `rounds` times, alternating, and keep each figure's best: TCG
    boots on a shared machine vary by tens of seconds with the load of other work."""
    board = load_board(BOARD)
    osb: list[dict[str, float]] = []
    dib: list[float] = []
    for i in range(rounds):
        print(f"boot round {i + 1}/{rounds}: osbuilder, then diskimage-builder",
              file=sys.stderr)
        osb.append(boot_figures(osb_image, work))
        dib.append(dib_boot_to_login(board, dib_image, work))
    best: dict[str, Any] = {k: min(f[k] for f in osb) for k in osb[0]}
    best["boot_to_login_tcg_s_samples"] = [f["boot_to_login_tcg_s"] for f in osb]
    return best, {"boot_to_login_tcg_s": min(dib), "boot_to_login_tcg_s_samples": dib}


def dib_figures(work: Path) -> dict[str, Any]:
    board = load_board(BOARD)
    shims = not device_mapper_works()
    if shims:
        print("diskimage-builder: this host has no device-mapper; DIB's `vm` element runs "
              "with the BENCH-ONLY kpartx/dmsetup shims of bench/dib-shims (one offset loop "
              "device per partition) and a pass-through sudo first in PATH", file=sys.stderr)
    cache = work / "dib-cache"
    runs = {}
    for name in ("cold", "warm"):
        out = work / f"dib-{name}" / "image"
        out.parent.mkdir()
        print(f"diskimage-builder {name} build (log {out.with_suffix('.log')})",
              file=sys.stderr)
        runs[name] = dib_build(board, out, cache, shims)
    raw = work / "dib-warm" / "image.raw"
    return {
        "command": f"disk-image-create -a {board.arch} -t raw debian-minimal vm "
                   f"osbuilder-one-kernel -p <{BOARD} packages>",
        "version": dib_version(),
        "kpartx_dmsetup": "bench shims (offset loop devices)" if shims else "host",
        "build_cold_s": runs["cold"].seconds, "build_warm_s": runs["warm"].seconds,
        "peak_rss_cold_mib": runs["cold"].peak_rss_mib,
        "peak_rss_warm_mib": runs["warm"].peak_rss_mib,
        "image_raw_mb": mb(raw),
        "image_allocated_mb": round(raw.stat().st_blocks * 512 / 1e6, 1),
        **compressed(raw),
    }


def dib_version() -> str:
    return subprocess.run([str(find_dib()), "--version"], capture_output=True,
                          text=True).stdout.strip()


# figure, osbuilder/DIB ratio target (None: reported only)
COMPARED: list[tuple[str, float | None]] = [
    ("build_cold_s", 1.0), ("build_warm_s", 1 / 3), ("peak_rss_cold_mib", None),
    ("peak_rss_warm_mib", None), ("image_raw_mb", None), ("image_allocated_mb", None),
    ("image_zstd_mb", 1.0), ("zstd_s", None), ("boot_to_login_tcg_s", 1.0),
]


def comparison(osb: dict[str, Any], dib: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = {}
    for key, target in COMPARED:
        ratio = round(osb[key] / dib[key], 2) if dib[key] else None
        met = None if target is None or ratio is None else ratio <= target
        rows[key] = {"osbuilder": osb[key], "dib": dib[key], "ratio": ratio,
                     "target_ratio_max": None if target is None else round(target, 3),
                     "met": met}
    return rows


def board_figures(env: dict[str, str], extra: list[str],
                  done: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Build seconds and image size of every board (qemu-amd64's from the runs above).

    These builds share a cache that outlives the run (BOARD_CACHE): a foreign-arch rootfs
    built under qemu-user takes 20-50 min, so the first run is cold and later ones warm,
    and each row says which. BENCH_BOARDS=a,b limits the list. A board that fails to
    build is reported with its error, and the other boards still run."""
    out: dict[str, dict[str, Any]] = {
        BOARD: {"build_s": done["build_cold_s"], "rootfs": "cold",
                "image_raw_mb": done["image_raw_mb"], "image_zstd_mb": done["image_zstd_mb"]}}
    wanted = os.environ.get("BENCH_BOARDS")
    names = wanted.split(",") if wanted else board_names()
    BOARD_CACHE.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == BOARD:
            continue
        with tempfile.TemporaryDirectory(prefix=f"osb-bench-{name}-") as tmp:
            work = Path(tmp)
            print(f"board {name} (cache {BOARD_CACHE})", file=sys.stderr)
            try:
                m = build(work / "out", BOARD_CACHE, env, extra, board=name)
            except SystemExit as exc:
                out[name] = {"failed": str(exc).splitlines()[-1][:200]}
                continue
            log = (work / "out.log").read_text()
            image = work / "out" / f"osbuilder-{name}-1.0.0.img"
            out[name] = {"build_s": m.seconds,
                         "rootfs": "warm" if "cached rootfs" in log else "cold",
                         "image_raw_mb": mb(image),
                         "image_zstd_mb": compressed(image)["image_zstd_mb"]}
    return out


def print_report(osb: dict[str, Any], dib: dict[str, Any], cmp: dict[str, dict[str, Any]],
                 boards: dict[str, dict[str, Any]]) -> None:
    targets = {"build_warm_s": 60, "build_config_only_s": 5, "image_zstd_mb": 150,
               "boot_to_login_tcg_s": 45, "agent_boot_unchanged_tcg_s": 1, "agent_peak_rss_mib": 30}
    print(f"\nosbuilder bench — {BOARD}, {osb['k3s']}")
    for k, v in osb.items():
        if isinstance(v, (int, float)):
            t = targets.get(k)
            verdict = "" if t is None else (f"  target <= {t}: "
                                            + ("met" if v <= t else "MISSED"))
            print(f"  {k:30} {v:>8}{verdict}")
    print(f"  stage timings cold: {osb['stage_timings_cold']}")
    print(f"  stage timings warm: {osb['stage_timings_warm']}")
    print(f"\nosbuilder vs diskimage-builder {dib['version']} — same package set "
          f"({BOARD}), same machine; DIB: {dib['command']}; kpartx/dmsetup: "
          f"{dib['kpartx_dmsetup']}")
    print(f"  {'figure':22} {'osbuilder':>10} {'DIB':>10} {'osb/DIB':>8}  target")
    for key, row in cmp.items():
        target = "" if row["target_ratio_max"] is None else (
            f"<= {row['target_ratio_max']:.2f}: " + ("met" if row["met"] else "MISSED"))
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        print(f"  {key:22} {row['osbuilder']:>10} {row['dib']:>10} {ratio:>8}  {target}")
    print("\nevery board (osbuilder; rootfs cold = built, warm = from the cache)")
    for name, f in boards.items():
        if "failed" in f:
            print(f"  {name:14} FAILED: {f['failed']}")
            continue
        print(f"  {name:14} build {f['build_s']:>7} s (rootfs {f['rootfs']})  image "
              f"{f['image_raw_mb']} MB raw, {f['image_zstd_mb']} MB zstd")


def main() -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="osb-bench-"))
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    extra: list[str] = []
    k3s_note = "real k3s from K3S_DIR"
    try:
        with serve_k3s() as served:
            if os.environ.get("K3S_DIR"):
                extra = ["--k3s-dir", os.environ["K3S_DIR"]]
            else:
                k3s_note = "k3s stand-in (test double): sizes exclude k3s"
                env.update(OSB_K3S_CHANNEL_URL=served.channel_url,
                           OSB_K3S_RELEASE_URL=served.release_url)
            osb = osbuilder_figures(work, env, extra, k3s_note)
            dib = dib_figures(work)
            osb_boot, dib_boot = boot_rounds(work / "warm" / f"osbuilder-{BOARD}-1.0.0.img",
                                             work / "dib-warm" / "image.raw", work)
            osb.update(osb_boot)
            dib.update(dib_boot)
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            stock = against_stock(load_board(BOARD), work / "warm" /
                                  f"osbuilder-{BOARD}-1.0.0.img", work, work / "stock-cache",
                                  Login("bench", "osb", PASSWORD), RESULTS,
                                  f"{stamp}-{BOARD}")
            boards = board_figures(env, extra, osb)
        cmp = comparison(osb, dib)
        print_report(osb, dib, cmp, boards)
        print_comparison(BOARD, stock)
        out = RESULTS / f"{stamp}-{BOARD}.json"
        out.write_text(json.dumps({"machine": machine(), "figures": osb, "dib": dib,
                                   "osbuilder_vs_dib": cmp, "osbuilder_vs_stock": stock,
                                   "boards": boards}, indent=2) + "\n")
        print(f"  saved {out.relative_to(ROOT)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
