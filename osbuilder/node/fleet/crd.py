"""The OSUpgrade spec as typed, frozen values: parsed once, defaults here and only here.

The API server already checks the CRD's structural schema; this parse catches what a
schema cannot (a real time zone, a {placeholder} we do not know, a selector operator's
values) and names the field, for the `Invalid` condition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from osbuilder.shared.errors import OsbError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PLACEHOLDERS = ("board", "version")
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+~_-]{0,62}$")


class SpecError(OsbError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Selector:
    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.labels):
            return False
        for r in self.expressions:
            has = r.key in labels
            if ((r.operator == "In" and labels.get(r.key) not in r.values)
                    or (r.operator == "NotIn" and has and labels[r.key] in r.values)
                    or (r.operator == "Exists" and not has)
                    or (r.operator == "DoesNotExist" and has)):
                return False
        return True


@dataclass(frozen=True)
class Drain:
    timeout_s: float = 600.0
    ignore_daemonsets: bool = True
    delete_emptydir_data: bool = False
    force: bool = False  # also evict pods no controller will recreate


@dataclass(frozen=True)
class Window:
    days: tuple[str, ...] = DAYS
    start: tuple[int, int] = (0, 0)
    end: tuple[int, int] = (0, 0)  # equal to start: the whole day
    zone: str = "UTC"


@dataclass(frozen=True)
class Spec:
    bundle_url: str
    version: str | None = None
    channel: str | None = None
    selector: Selector = field(default_factory=Selector)
    concurrency: int = 1
    drain: Drain = field(default_factory=Drain)
    window: Window | None = None
    max_failures: int = 1
    paused: bool = False

    def url_for(self, version: str, board: str | None) -> str | None:
        """The node's bundle URL; None while the template needs a board the node has not
        reported yet."""
        if "{board}" in self.bundle_url and not board:
            return None
        return self.bundle_url.replace("{version}", version).replace("{board}", board or "")


def duration(text: Any, where: str) -> float:
    """10m, 90s, 1h30m, or a number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool) and text > 0:
        return float(text)
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(text))
    if not text or m is None or not any(m.groups()):
        raise SpecError(f"{where}: expected a duration such as 10m, 90s or 1h30m, got {text!r}")
    h, mins, s = m.groups()
    return int(h or 0) * 3600 + int(mins or 0) * 60 + float(s or 0)


def clock_time(text: Any, where: str) -> tuple[int, int]:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(text))
    if m is None:
        raise SpecError(f"{where}: expected a time HH:MM (24 h), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _bool(value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(f"{where}: expected true or false, got {value!r}")
    return value


def _count(value: Any, where: str, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{where}: expected a whole number of at least 1, got {value!r}")
    return value


def selector(raw: Mapping[str, Any] | None) -> Selector:
    raw = raw or {}
    labels = tuple(sorted((str(k), str(v)) for k, v in (raw.get("matchLabels") or {}).items()))
    exprs = []
    for i, e in enumerate(raw.get("matchExpressions") or []):
        where = f"spec.nodeSelector.matchExpressions[{i}]"
        op, values = e.get("operator"), tuple(str(v) for v in e.get("values") or ())
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise SpecError(f"{where}.operator: expected In, NotIn, Exists or DoesNotExist, "
                            f"got {op!r}")
        if (op in ("In", "NotIn")) != bool(values):
            raise SpecError(f"{where}.values: {op} needs " + (
                "a non-empty list" if op in ("In", "NotIn") else "no values"))
        exprs.append(Requirement(str(e.get("key")), op, values))
    return Selector(labels, tuple(exprs))


def window(raw: Mapping[str, Any] | None) -> Window | None:
    if not raw:
        return None
    days = tuple(str(d).lower()[:3] for d in raw.get("days") or DAYS)
    bad = [d for d in days if d not in DAYS]
    if bad:
        raise SpecError(f"spec.window.days: {bad[0]!r} is not a day (expected {', '.join(DAYS)})")
    zone = str(raw.get("timeZone") or "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SpecError(f"spec.window.timeZone: unknown time zone {zone!r} (expected an IANA "
                        "name such as Europe/Berlin)") from exc
    return Window(days, clock_time(raw.get("startTime", "00:00"), "spec.window.startTime"),
                  clock_time(raw.get("endTime", "00:00"), "spec.window.endTime"), zone)


def parse_spec(raw: Mapping[str, Any]) -> Spec:
    version, channel = raw.get("version"), raw.get("channel")
    if bool(version) == bool(channel):
        raise SpecError("spec: give exactly one of version (e.g. 1.4.0) and channel (a URL "
                        "answering the latest version)")
    if version is not None and not VERSION_RE.match(str(version)):
        raise SpecError(f"spec.version: {version!r} is not a version such as 1.4.0")
    if channel is not None and not str(channel).startswith(("http://", "https://")):
        raise SpecError(f"spec.channel: expected an http(s) URL, got {channel!r}")
    url = str(raw.get("bundleURL") or "")
    if not url:
        raise SpecError("spec.bundleURL: required (e.g. https://host/{board}/"
                        "osbuilder-{board}-{version}.raucb)")
    unknown = [p for p in re.findall(r"\{([^}]*)\}", url) if p not in PLACEHOLDERS]
    if unknown:
        raise SpecError(f"spec.bundleURL: unknown placeholder {{{unknown[0]}}} (known: "
                        "{board}, {version})")
    d = raw.get("drain") or {}
    return Spec(
        bundle_url=url,
        version=str(version) if version else None,
        channel=str(channel) if channel else None,
        selector=selector(raw.get("nodeSelector")),
        concurrency=_count(raw.get("concurrency"), "spec.concurrency", 1),
        drain=Drain(
            timeout_s=duration(d.get("timeout", "10m"), "spec.drain.timeout"),
            ignore_daemonsets=_bool(d.get("ignoreDaemonSets"), "spec.drain.ignoreDaemonSets",
                                    True),
            delete_emptydir_data=_bool(d.get("deleteEmptyDirData"),
                                       "spec.drain.deleteEmptyDirData", False),
            force=_bool(d.get("force"), "spec.drain.force", False)),
        window=window(raw.get("window")),
        max_failures=_count(raw.get("maxFailures"), "spec.maxFailures", 1),
        paused=_bool(raw.get("paused"), "spec.paused", False),
    )
