"""`make bench`: build and boot figures for osbuilder, printed and saved as JSON.

Measures, for qemu-amd64: cold build (empty cache), warm build (cached rootfs and k3s),
image size raw / zstd, squashfs size, boot seconds to the agent's `applied config` line
and to the login prompt under QEMU TCG, and the agent's own wall time and peak RSS for
`boot` on an unchanged config (run again after logging in on the console).

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

from osbuilder.boards import load_board  # noqa: E402
from osbuilder.qemu import VM, interactive_serial, qemu_argv, scratch_disk  # noqa: E402
from tests.helpers.k3s_fixture import serve_k3s  # noqa: E402

BOARD = "qemu-amd64"
EPOCH = "1700000000"


PASSWORD = "bench-pw"


def build(out: Path, cache: Path, env: dict[str, str], extra: list[str]) -> float:
    config = out.parent / "bench-config.yaml"
    config.write_text(f"hostname: bench\nk3os: {{password: {PASSWORD}}}\n")
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "osbuilder", "build", "--board", BOARD, "--out",
                    str(out), "--cache-dir", str(cache), "--version", "1.0.0", "--compress",
                    "--config", str(config), *extra],
                   env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def boot_figures(image: Path, work: Path) -> dict[str, float]:
    disk = scratch_disk(image, work / "boot.img", "4G")
    serial, extra = interactive_serial(work / "console.sock", work / "console.log")
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


def main() -> int:
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
            cache = work / "cache"
            cold = build(work / "cold", cache, env, extra)
            warm = build(work / "warm", cache, env, extra)
        image = work / "warm" / "osbuilder-qemu-amd64-1.0.0.img"
        zst = image.with_name(image.name + ".zst")
        boot = boot_figures(image, work)
        fig = {
            "board": BOARD, "format": "img", "k3s": k3s_note,
            "build_cold_s": round(cold, 1), "build_warm_s": round(warm, 1),
            "image_raw_mb": round(image.stat().st_size / 1e6, 1),
            "image_allocated_mb": round(image.stat().st_blocks * 512 / 1e6, 1),
            "image_zstd_mb": round(zst.stat().st_size / 1e6, 1),
            "squashfs_mb": round(squashfs_bytes(image) / 1e6, 1),
            **boot,
        }
        targets = {"build_warm_s": 60, "image_zstd_mb": 150, "boot_to_login_tcg_s": 45,
                   "agent_boot_unchanged_tcg_s": 1, "agent_peak_rss_mib": 30}
        print(f"\nosbuilder bench — {BOARD}, {k3s_note}")
        for k, v in fig.items():
            if isinstance(v, (int, float)):
                t = targets.get(k)
                verdict = "" if t is None else (f"  target <= {t}: "
                                                + ("met" if v <= t else "MISSED"))
                print(f"  {k:30} {v:>8}{verdict}")
        results = ROOT / "bench" / "results"
        results.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = results / f"{stamp}-{BOARD}.json"
        out.write_text(json.dumps({"machine": machine(), "figures": fig}, indent=2) + "\n")
        print(f"  saved {out.relative_to(ROOT)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
