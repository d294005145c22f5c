"""Durations as people write them in workstream files: 90, "90s", "3m", "2m 30s", "3-6 minutes"."""

from __future__ import annotations

import re

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(?:\s*-\s*(\d+(?:\.\d+)?))?\s*([a-z]+)\b")


def parse_duration(value: float | int | str) -> float:
    """Seconds in 90, "90s", "3m", "2m 30s", "1.5 hours" or a range "3-6 minutes" (its middle)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    total, end = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if text[end : match.start()].strip(" ,"):
            break
        low, high, unit = match.groups()
        if unit not in _DURATION_UNITS:
            unit = unit.removesuffix("s")  # plurals: "minutes", "hours", "secs"
        if unit not in _DURATION_UNITS:
            break
        amount = (float(low) + float(high)) / 2 if high else float(low)
        total += amount * _DURATION_UNITS[unit]
        end = match.end()
    if end == 0:
        raise ValueError(f"not a duration: {value!r}")
    return total
