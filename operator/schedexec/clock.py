"""The API server's clock, as every replica of the operator reads it: the one wall clock deadlines are judged by.

Every wall-clock time the operator writes (status.startedAt, deadline,
nextRunAt, a run's start and finish, an Event's timestamps) is later judged
by whichever replica leads then, and compared with times the API server and
the kubelet wrote (a pod's creationTimestamp). If each replica used its own
wall clock, two replicas 30 s apart would end a sequence 30 s early or late
after a leader change. So each replica estimates the API server's clock
instead, from the `Date` header of its answers (RFC 9110: the time the
answer was made, whole seconds): a request sent at t0 and answered at t1
(this machine's monotonic clock) says the server's time at some moment in
[t0, t1] was in [Date, Date + 1 s), so the offset of the server's clock from
the monotonic one lies in [Date - t1, Date + 1 - t0]. `ServerClock` keeps
the intersection of those intervals (widened by the rate two quartz clocks
may differ by, MAX_DRIFT, for the time since the last answer; a new
interval that misses it means the server's clock was stepped, and it starts
again from that one) and reads the middle of it.

The bound: after one answer, within (1 s + the round trip) / 2 of the API
server's clock; tighter as answers with other sub-second phases arrive
(thousands a minute: every request and watch is one). Two replicas of the
same API server therefore agree within 1 s + a round trip, whatever their
own wall clocks say (tests/unit/test_clock.py). The local wall clock is read
only before the first answer. Behind a load balancer of several API server
instances, the disagreement of their clocks (NTP keeps it to milliseconds)
adds to the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DATE_RESOLUTION_SECONDS = 1.0
"""The `Date` header counts whole seconds (the server truncates)."""
MAX_DRIFT = 5e-4
"""How fast two clocks may part, in seconds per second: NTP slews a clock by at most 500 ppm."""


def date_header(value: str | None) -> float | None:
    """The time an HTTP `Date` header says, in seconds since the epoch; None if it is missing or unreadable."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def offset_bounds(date: float, sent: float, answered: float) -> tuple[float, float]:
    """The interval the server's clock minus the monotonic clock lies in, from one answer with `Date` `date`
    to a request sent at `sent` and answered at `answered` (monotonic)."""
    return date - answered, date + DATE_RESOLUTION_SECONDS - sent


def narrowed(kept: tuple[float, float] | None, elapsed: float, sample: tuple[float, float]) -> tuple[float, float]:
    """The offset interval after one more answer: the kept one widened by the drift possible in the `elapsed`
    seconds since the last answer, intersected with the new `sample`; the sample alone if they do not meet
    (the server's clock was stepped) or nothing was kept."""
    if kept is None:
        return sample
    slack = MAX_DRIFT * max(elapsed, 0.0)
    low, high = max(kept[0] - slack, sample[0]), min(kept[1] + slack, sample[1])
    return (low, high) if low <= high else sample


class ServerClock:
    """The API server's wall clock, estimated from the `Date` of its answers (`observe`); `now()` reads it."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.monotonic, self.wall = monotonic, wall
        self._offset: tuple[float, float] | None = None
        self._observed_at = 0.0

    def observe(self, date: str | None, sent: float, answered: float) -> None:
        """One answer: its `Date` header, the monotonic times its request was sent and its headers arrived."""
        stamp = date_header(date)
        if stamp is None or answered < sent:
            return
        self._offset = narrowed(self._offset, answered - self._observed_at, offset_bounds(stamp, sent, answered))
        self._observed_at = answered

    def uncertainty(self) -> float | None:
        """How far `now()` may be from the server's clock, in seconds (None: no answer yet, the local clock)."""
        return None if self._offset is None else (self._offset[1] - self._offset[0]) / 2

    def timestamp(self) -> float:
        """The server's time now, in seconds since the epoch (this machine's wall clock before any answer)."""
        if self._offset is None:
            return self.wall()
        return self.monotonic() + (self._offset[0] + self._offset[1]) / 2

    def now(self) -> datetime:
        """The server's time now, as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp(), UTC)
