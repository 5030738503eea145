"""Log lines about a failure that never quote what failed.

An exception's message may hold the object it choked on: pydantic quotes input values, json quotes the
text around an error, a UnicodeEncodeError holds the string, and execution args or a component's output
may hold credentials. The operator logs a failure by its type and where it was raised; what it was about
is named by the caller (an execution's key, never its content).
"""

from __future__ import annotations

import traceback

FRAMES = 3
"""How many of the innermost frames a log line shows."""


def described(exc: BaseException) -> str:
    """`exc`'s type and the innermost frames of its traceback (file, line, function, source line), without
    its message."""
    frames = traceback.extract_tb(exc.__traceback__)[-FRAMES:]
    where = "; ".join(f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames)
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__
