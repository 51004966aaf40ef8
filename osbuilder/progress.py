"""What the user sees while a build runs: stage lines with timings, download progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.timings: list[tuple[str, float]] = []
        self.started = time.monotonic()

    def say(self, msg: str) -> None:
        print(msg, file=self.stream, flush=True)

    @contextmanager
    def stage(self, name: str, index: int, total: int) -> Iterator[None]:
        self.say(f"==> [{index}/{total}] {name}")
        t0 = time.monotonic()
        try:
            yield
        finally:
            dt = time.monotonic() - t0
            self.timings.append((name, dt))
        self.say(f"    {name} done in {dt:.1f} s")

    def download(self, label: str, total: int | None) -> DownloadMeter:
        return DownloadMeter(self, label, total)


class DownloadMeter:
    """A live byte counter: redraws in place on a terminal, a line per 10% otherwise."""

    def __init__(self, progress: Progress, label: str, total: int | None) -> None:
        self.p = progress
        self.label = label
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self.last_draw = 0.0
        self.last_decile = -1
        self.tty = progress.stream.isatty()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and now - self.last_draw > 0.2:
            self.last_draw = now
            print("\r" + self._line(now), end="", file=self.p.stream, flush=True)
        elif not self.tty and self.total:
            decile = self.done * 10 // self.total
            if decile != self.last_decile:
                self.last_decile = decile
                self.p.say(self._line(now))

    def finish(self) -> None:
        end = "\n" if self.tty else ""
        print(("\r" + self._line(time.monotonic())) if self.tty else "", end=end,
              file=self.p.stream, flush=True)

    def _line(self, now: float) -> str:
        rate = self.done / max(now - self.t0, 1e-3) / 1e6
        size = f"{self.done / 1e6:.1f}"
        if self.total:
            size += f"/{self.total / 1e6:.1f} MB ({100 * self.done // self.total}%)"
        else:
            size += " MB"
        return f"    downloading {self.label}: {size} {rate:.1f} MB/s"
