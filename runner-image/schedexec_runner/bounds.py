"""Bounds on JSON values that cross a trust boundary: what a user puts in spec.args, what a component writes
in its outcome.

The Kubernetes API server accepts JSON nested up to 10,000 levels and strings that are not valid Unicode
(a lone surrogate escape such as "\\ud800"); Python's json module stops at about 1,000 levels with a
RecursionError, pydantic's serialiser at a few hundred, and a lone surrogate cannot be encoded as UTF-8.
Any of these, met deep inside the operator, used to crash a watch stream or a reconcile. Every value that
enters from outside is checked here first, iteratively (no recursion, whatever the depth), and refused
with a reason that names the limit.

Zero dependencies: shared by the operator, the REST API and the runner.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from typing import Any

MAX_JSON_DEPTH = 64
"""The deepest nesting of objects and arrays accepted in args, results, partial results and scheduled args
(`{"a": 1}` is 1 deep). Well above what a model, a metamodel or a command's arguments need, far below
where Python's json module (about 1,000) or pydantic's serialiser (about 250) give up."""

API_SERVER_MAX_DEPTH = 10_000
"""The deepest JSON the Kubernetes API server accepts (sigs.k8s.io/json): objects the operator reads
from the API server never nest deeper."""


class BoundsError(ValueError):
    """A JSON value is too deep or holds a string that is not valid Unicode."""


def depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (0 for a scalar); iterative, for any depth."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def problem(value: Any, what: str, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why `value` (named `what` in the message) may not cross the boundary, or None if it may: nested
    deeper than `max_depth`, or a string (or key) that is not valid Unicode (a lone surrogate). Iterative,
    holding one iterator per level it is in, never an entry per value: checking an array of a million
    numbers costs no memory (a stack of its members cost 32 MiB for one REST request body of 1 MiB)."""
    pending: list[Iterator[Any]] = [iter((value,))]
    while pending:
        item = next(pending[-1], _END)
        if item is _END:
            pending.pop()
        elif isinstance(item, str):
            if not _encodable(item):
                return f"{what} holds a string that is not valid Unicode (a lone surrogate such as \\ud800)"
        elif isinstance(item, dict | list):
            if len(pending) > max_depth:  # `item` is len(pending) levels deep
                return f"{what} nests deeper than {max_depth} levels of objects and arrays"
            if isinstance(item, dict):
                if not all(_encodable(key) for key in item if isinstance(key, str)):
                    return f"{what} holds a key that is not valid Unicode (a lone surrogate such as \\ud800)"
                pending.append(iter(item.values()))
            else:
                pending.append(iter(item))
    return None


_END = object()
"""What `next` gives for an iterator that is done (None is a JSON value)."""


def check(value: Any, what: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise BoundsError with `problem`'s reason if `value` may not cross the boundary."""
    reason = problem(value, what, max_depth)
    if reason is not None:
        raise BoundsError(reason)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def loads(text: str | bytes) -> Any:
    """json.loads for text that may nest as deep as the API server allows (API_SERVER_MAX_DEPTH): the
    interpreter's recursion limit is raised for this one call when the first try hits it, so a deep
    object is read (and can then be refused by `problem`) instead of raising RecursionError. Raises
    ValueError (json.JSONDecodeError) for text that is not JSON, BoundsError past API_SERVER_MAX_DEPTH."""
    try:
        return json.loads(text)
    except RecursionError:
        pass
    with _RAISED:  # the limit is the process's: one thread raises and restores it at a time
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, API_SERVER_MAX_DEPTH * 2 + 1000))
        try:
            return json.loads(text)
        except RecursionError:
            raise BoundsError(f"the JSON nests deeper than {API_SERVER_MAX_DEPTH} levels") from None
        finally:
            sys.setrecursionlimit(limit)


_RAISED = threading.Lock()
