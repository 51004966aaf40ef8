"""Release channels: a URL that answers the latest version, as text (`1.4.0`) or JSON
(`{"version": "1.4.0"}`), asked at most every `every_s` per URL."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

from osbuilder.node.fleet.crd import VERSION_RE


class Channels:
    def __init__(self, every_s: float = 300.0, clock: Callable[[], float] = time.time,
                 timeout: float = 10.0) -> None:
        self.every_s, self.clock, self.timeout = every_s, clock, timeout
        self._seen: dict[str, tuple[float, str | None, str]] = {}

    def latest(self, url: str) -> tuple[str | None, str]:
        """(version, problem): the last good answer is kept while the channel is down."""
        asked, version, problem = self._seen.get(url, (-1e18, None, ""))
        if self.clock() - asked < self.every_s:
            return version, problem
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                text = resp.read(4096).decode().strip()
            try:
                got = str(json.loads(text).get("version", "")) if text.startswith("{") else text
            except ValueError:
                got = ""
            got = got.splitlines()[0].strip() if got else ""
            if VERSION_RE.match(got):
                version, problem = got, ""
            else:
                problem = f"channel {url} answered {text[:60]!r}, not a version"
        except (OSError, ValueError) as exc:
            problem = f"channel {url}: {exc}"
        self._seen[url] = (self.clock(), version, problem)
        return version, problem
