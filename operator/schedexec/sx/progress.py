"""The live line `kubectl sx wait` shows while an execution runs.

On a terminal one line is redrawn in place (run N, phase, how long the run has been running or how long
until the next run, items remaining, why the pod waits to start), as `tkn` and `argo` show progress; piped
into a file or a CI log it becomes plain lines, one per change of state, without the ticking seconds (a
line per second would bury the log). The rendering is pure (a status document and the clock in, a string
out); `Console` writes it beside the runs' logs without mixing the two.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from schedexec.sx.timing import duration, parse_time


def progress_line(execution: Mapping[str, Any], now: datetime | None, *, live: bool = True) -> str:
    """One line on where the execution stands. `live` adds the ticking parts (the run's age, the time to the
    next run); without it the line changes only when the state does."""
    name = (execution.get("metadata") or {}).get("name", "")
    status = execution.get("status") or {}
    phase = status.get("phase") or "Pending"
    parts = [f"sx/{name}:"]
    current = status.get("currentRun") or {}
    if phase in ("Running", "Pending") and current:
        parts.append(f"run {current.get('index', '?')}")
        method = current.get("method")
        if method:
            parts.append(f"({method})")
        parts.append(phase)
        started = parse_time(current.get("startedAt"))
        if live and now is not None and started is not None:
            parts.append(f"for {duration((now - started).total_seconds())}")
        waiting = current.get("waiting") or {}
        if waiting.get("reason"):
            parts.append(f"[pod waiting: {waiting['reason']}]")
    elif phase == "Waiting":
        parts.append(f"{status.get('runs', 0)} runs done, Waiting")
        next_at = parse_time(status.get("nextRunAt"))
        if next_at is not None:
            if live and now is not None:
                parts.append(f"- next run in {duration((next_at - now).total_seconds())}")
            else:
                parts.append(f"- next run at {next_at.strftime('%H:%M:%SZ')}")
    else:
        parts.append(phase)
        if status.get("runs"):
            parts.append(f"after {status['runs']} runs" if status["runs"] != 1 else "after 1 run")
        reason = _succeeded_reason(status)
        if reason and reason not in (phase, "Done", "Pending"):
            parts.append(f"({reason})")
    remaining = status.get("itemsRemaining")
    if remaining is not None and phase == "Waiting":
        parts.append(f"- {remaining} items remaining")
    return " ".join(parts)


def _succeeded_reason(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Succeeded":
            return str(condition.get("reason") or "") or None
    return None


class Console:
    """Progress on stderr, logs on stdout, never torn: on a terminal the progress line is cleared before a
    log line is written and drawn again after it; elsewhere each new state is one plain line."""

    CLEAR = "\r\x1b[K"

    def __init__(self, out: TextIO, err: TextIO, *, live: bool) -> None:
        self.out, self.err, self.live = out, err, live
        self._lock = threading.Lock()
        self._shown = ""

    def status(self, execution: Mapping[str, Any], now: datetime) -> None:
        line = progress_line(execution, now, live=self.live)
        with self._lock:
            if self.live:
                width = shutil.get_terminal_size((120, 20)).columns - 1
                self.err.write(self.CLEAR + line[:width])
                self.err.flush()
            elif line != self._shown:
                self.err.write(line + "\n")
                self.err.flush()
            self._shown = line

    def log(self, text: str) -> None:
        """A piece of a run's log, whole lines or not."""
        with self._lock:
            if self.live and self._shown:
                self.err.write(self.CLEAR)
                self.err.flush()
            self.out.write(text)
            self.out.flush()
            if self.live and self._shown and text.endswith("\n"):
                self.err.write(self._shown)
                self.err.flush()

    def note(self, message: str) -> None:
        """A line for the person watching (stderr), beside the progress."""
        with self._lock:
            if self.live and self._shown:
                self.err.write(self.CLEAR)
            self.err.write(message + "\n")
            if self.live and self._shown:
                self.err.write(self._shown)
            self.err.flush()

    def close(self) -> None:
        """Leave the terminal on a fresh line."""
        with self._lock:
            if self.live and self._shown:
                self.err.write(self.CLEAR)
                self.err.flush()
            self._shown = ""
