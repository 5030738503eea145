"""Times as `kubectl sx` reads and shows them: RFC 3339 from the API server, durations as kubectl prints
ages (`45s`, `3m12s`, `2h5m`, `4d3h`), and kubectl's duration flags (`--timeout=90s`, `5m`, `1h30m`)."""

from __future__ import annotations

import re
from datetime import datetime

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp of the API server (`2026-12-07T08:15:41Z`), None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """A duration as kubectl prints ages: two units at most, rounded down; negative ones as 0s."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def age(then: datetime | None, now: datetime) -> str:
    """How long ago `then` was, or `<unknown>` as kubectl says."""
    return "<unknown>" if then is None else duration((now - then).total_seconds())


def parse_duration(text: str) -> float:
    """A kubectl duration (`90s`, `5m`, `1h30m`, `250ms`) or plain seconds (`90`), in seconds; ValueError
    with the accepted forms otherwise."""
    cleaned = text.strip()
    try:
        value = float(cleaned)
    except ValueError:
        pass
    else:
        if value < 0:
            raise ValueError(f"invalid duration {text!r}: must not be negative")
        return value
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(number + unit for number, unit in parts) != cleaned:
        raise ValueError(f"invalid duration {text!r}: use seconds or a duration such as 90s, 5m, 1h30m")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)
