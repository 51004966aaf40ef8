"""What the user sees while a build runs: stage lines with timings, byte meters for
downloads, flashing and uploads."""

from __future__ import annotations

import sys
import threading
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

    def download(self, label: str, total: int | None) -> ByteMeter:
        return self.meter("downloading", label, total)

    def meter(self, verb: str, label: str, total: int | None) -> ByteMeter:
        return ByteMeter(self, label, total, verb)


class ByteMeter:
    """A live byte counter with rate and ETA: redraws in place on a terminal, a line per
    10% otherwise. Safe to update from several threads (S3 uploads send parts in parallel).
    """

    def __init__(self, progress: Progress, label: str, total: int | None, verb: str) -> None:
        self.p = progress
        self.label = label
        self.total = total
        self.verb = verb
        self.done = 0
        self.t0 = time.monotonic()
        self.last_draw = 0.0
        self.last_decile = -1
        self.tty = progress.stream.isatty()
        self._lock = threading.Lock()

    def update(self, n: int) -> None:
        with self._lock:
            self._update(n)

    def _update(self, n: int) -> None:
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
        rate = self.done / max(now - self.t0, 1e-3)
        size = f"{self.done / 1e6:.1f}"
        eta = ""
        if self.total:
            size += f"/{self.total / 1e6:.1f} MB ({100 * self.done // self.total}%)"
            if 0 < self.done < self.total:
                eta = f", ETA {eta_text((self.total - self.done) / rate)}"
        else:
            size += " MB"
        return f"    {self.verb} {self.label}: {size} {rate / 1e6:.1f} MB/s{eta}"


def eta_text(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s} s"
