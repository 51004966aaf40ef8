"""`make bench-boot`: osbuilder's boot against stock Debian's only (the boot half of
`make bench`, without diskimage-builder): first and second boot, to the login prompt and
to `applied config`, ratios, and the `systemd-analyze` plot SVGs and texts beside the
JSON under bench/results/.

BENCH_BOOT_BOARDS=qemu-amd64,rpi-arm64 picks the boards (default qemu-amd64). A U-Boot
board boots through its boot.scr on QEMU's virt machine with 1 vCPU (the Pi-like case),
its console on the PL011; the stock image of the same arch boots the same way through
extlinux. BENCH_ROUNDS (default 2): figures are the best of that many rounds. Builds
share ~/.cache/osbuilder/bench-boards with `make bench`; k3s is the stand-in (TEST
DOUBLE) unless K3S_DIR is set, as in bench/bench.py.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench import BOARD_CACHE, EPOCH, PASSWORD, RESULTS, build, machine  # noqa: E402
from bench.boot_compare import against_stock, boot_setup, print_comparison  # noqa: E402
from bench.boots import Login  # noqa: E402
from osbuilder.host.boards import load_board  # noqa: E402
from tests.helpers.k3s_fixture import serve_k3s  # noqa: E402


def main() -> int:
    names = os.environ.get("BENCH_BOOT_BOARDS", "qemu-amd64").split(",")
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    extra = ["--k3s-dir", os.environ["K3S_DIR"]] if os.environ.get("K3S_DIR") else []
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out: dict[str, object] = {"machine": machine()}
    with serve_k3s() as served:
        if not extra:
            env.update(OSB_K3S_CHANNEL_URL=served.channel_url,
                       OSB_K3S_RELEASE_URL=served.release_url)
        for name in names:
            with tempfile.TemporaryDirectory(prefix=f"osb-bench-boot-{name}-") as tmp:
                work = Path(tmp)
                print(f"building {name} (cache {BOARD_CACHE})", file=sys.stderr)
                build(work / "osb", BOARD_CACHE, env, extra, board=name)
                board = load_board(name)
                smp, tweak, console = boot_setup(board, work)
                fig = against_stock(board, work / "osb" / f"osbuilder-{name}-1.0.0.img", work,
                                    BOARD_CACHE / "stock", Login("bench", "osb", PASSWORD),
                                    RESULTS, f"{stamp}-boot-{name}", rounds=rounds, smp=smp,
                                    tweak=tweak, console=console)
                print_comparison(name, fig)
                out[name] = fig
    dest = RESULTS / f"{stamp}-boot.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"  saved {dest.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
