"""Maintenance windows: is a rollout allowed to start nodes at this instant?"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from osbuilder.node.fleet.crd import DAYS, Window


def is_open(w: Window | None, now: float) -> bool:
    """`days` name the days a window opens on; an endTime before the startTime closes it
    the next morning (Sat 22:00-04:00 runs into Sunday); equal times mean the whole day.
    Wall-clock times in the window's zone, so a window keeps its local hours across DST."""
    if w is None:
        return True
    local = datetime.fromtimestamp(now, ZoneInfo(w.zone))
    minute = local.hour * 60 + local.minute
    start, end = w.start[0] * 60 + w.start[1], w.end[0] * 60 + w.end[1]
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local - timedelta(days=1)).weekday()]
    if start == end:
        return today in w.days
    if start < end:
        return today in w.days and start <= minute < end
    return (today in w.days and minute >= start) or (yesterday in w.days and minute < end)
