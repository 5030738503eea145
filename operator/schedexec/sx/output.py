"""`-o json|yaml|name|wide` for the executions `kubectl sx` creates or shows, as kubectl prints objects.

Without `-o` a created execution is one line (`scheduledexecution.schedexec.io/NAME created`), as `kubectl
create` says it; `wide` is the `kubectl get sx -o wide` row plus what a run from a terminal wants next: the
image and when the next run starts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import yaml

from schedexec.sx.tables import table
from schedexec.sx.timing import age, duration, parse_time
from schedexec.sx.verdicts import RESOURCE

FORMATS = ("json", "yaml", "name", "wide")


def yaml_text(value: Any) -> str:
    """`value` as YAML, non-ASCII text readable as it is, unless PyYAML would then not read it back the same
    (it writes some characters, such as U+0085, raw, and reads them as line breaks): escaped then."""
    text = yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    if yaml.safe_load(text) == value:
        return text
    return yaml.safe_dump(value, sort_keys=False)


def condition_reason(status: Mapping[str, Any], kind: str = "Succeeded") -> str:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("reason") or "")
    return ""


def wide_row(execution: Mapping[str, Any], now: datetime) -> list[str]:
    meta, spec = execution.get("metadata") or {}, execution.get("spec") or {}
    status = execution.get("status") or {}
    next_at = parse_time(status.get("nextRunAt"))
    upcoming = "<none>" if next_at is None else f"in {duration((next_at - now).total_seconds())}"
    return [
        str(meta.get("name", "")),
        str(spec.get("method", "")),
        str(status.get("phase") or "Pending"),
        str(status.get("runs", 0)),
        condition_reason(status) or "<none>",
        age(parse_time(meta.get("creationTimestamp")), now),
        str((spec.get("component") or {}).get("image", "")),
        upcoming,
    ]


WIDE_HEADER = ["NAME", "METHOD", "PHASE", "RUNS", "REASON", "AGE", "IMAGE", "NEXT RUN"]


def render(execution: Mapping[str, Any], output: str | None, now: datetime, verb: str = "created") -> str:
    """One execution as `-o` asks; None: kubectl's `<resource>/<name> <verb>` line."""
    name = f"{RESOURCE}/{(execution.get('metadata') or {}).get('name', '')}"
    if output == "json":
        return json.dumps(execution, indent=4, ensure_ascii=False) + "\n"
    if output == "yaml":
        return yaml_text(dict(execution))
    if output == "name":
        return name + "\n"
    if output == "wide":
        return table(WIDE_HEADER, [wide_row(execution, now)])
    return f"{name} {verb}\n"
