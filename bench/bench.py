"""`make bench`: build and boot figures for osbuilder, printed and saved as JSON.

Measures, for qemu-amd64: cold build (empty cache), warm build (cached rootfs and k3s),
image size raw / zstd, squashfs size, boot seconds to the login prompt under QEMU TCG.

k3s: with K3S_DIR set the bench builds with that release folder; otherwise it serves a
small stand-in binary (TEST DOUBLE, tests/helpers/k3s_fixture.py) from a local HTTP
fixture, since the real one cannot be downloaded here. Sizes are then "excluding k3s".
"""

from __future__ import annotations

import json
import os
import platform
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
from osbuilder.qemu import VM, qemu_argv  # noqa: E402
from tests.helpers.k3s_fixture import serve_k3s  # noqa: E402

BOARD = "qemu-amd64"
EPOCH = "1700000000"


def build(out: Path, cache: Path, env: dict[str, str], extra: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "osbuilder", "build", "--board", BOARD, "--out",
                    str(out), "--cache-dir", str(cache), "--version", "1.0.0", "--compress",
                    *extra], env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def boot_seconds(image: Path, work: Path) -> float:
    disk = work / "boot.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    subprocess.run(["qemu-img", "resize", "-q", "-f", "raw", str(disk), "4G"], check=True)
    argv = qemu_argv(load_board(BOARD), disk, work / "vars.fd",
                     serial=f"file:{work / 'console.log'}")
    with VM(argv, work / "console.log") as vm:
        vm.wait_for(r"\S+ login:", 600)
        return vm.elapsed()


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
        boot = boot_seconds(image, work)
        fig = {
            "board": BOARD, "format": "img", "k3s": k3s_note,
            "build_cold_s": round(cold, 1), "build_warm_s": round(warm, 1),
            "image_raw_mb": round(image.stat().st_size / 1e6, 1),
            "image_allocated_mb": round(image.stat().st_blocks * 512 / 1e6, 1),
            "image_zstd_mb": round(zst.stat().st_size / 1e6, 1),
            "squashfs_mb": round(squashfs_bytes(image) / 1e6, 1),
            "boot_to_login_tcg_s": round(boot, 1),
        }
        targets = {"build_warm_s": 60, "image_zstd_mb": 150, "boot_to_login_tcg_s": 45}
        print(f"\nosbuilder bench — {BOARD}, {k3s_note}")
        for k, v in fig.items():
            if isinstance(v, (int, float)):
                t = targets.get(k)
                verdict = "" if t is None else (f"  target <= {t}: "
                                                + ("met" if v <= t else "MISSED"))
                print(f"  {k:22} {v:>8}{verdict}")
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
