"""`kubectl sx describe`: an execution's story on one screen, rendered from its document and its Events.

`kubectl describe sx` prints the status as nested YAML-ish fields; what a person debugging a sequence asks
is different: what was asked (spec summary), where it stands (phase, the error, why a pod waits), what
each run did (a history table: index, method, started, duration, outcome, lateness, attempts, reason),
when the next run starts, and what the operator said (Events). Pure: the same documents and clock give
the same text, so it is unit-tested on generated statuses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from schedexec import models
from schedexec.sx.specs import RESUBMITTED_FROM
from schedexec.sx.tables import table
from schedexec.sx.timing import age, duration, parse_time

ARGS_PREVIEW = 200
"""Characters of the args shown; describe is a summary, `kubectl get sx -o yaml` has them all."""


def _field(label: str, value: object) -> str:
    return f"{label + ':':<14}{value}\n"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(text: object, now: datetime) -> str:
    moment = parse_time(text)
    return "<none>" if moment is None else f"{text} ({age(moment, now)} ago)"


def history_rows(status: Mapping[str, Any], spec_method: str) -> list[list[str]]:
    """One row per run of status.history: index, method, started, duration, outcome, lateness, attempts,
    reason. Lateness is how long after it was due a run started, shown when the record says when it was
    due (`dueAt`); a dash otherwise."""
    rows = []
    for record in status.get("history") or []:
        started, finished = parse_time(record.get("startedAt")), parse_time(record.get("finishedAt"))
        due = parse_time(record.get("dueAt"))
        took = "-" if started is None or finished is None else duration((finished - started).total_seconds())
        late = "-" if started is None or due is None else duration((started - due).total_seconds())
        rows.append(
            [
                str(record.get("index", "")),
                str(record.get("method") or spec_method),
                str(record.get("startedAt") or "-"),
                took,
                str(record.get("outcome", "")),
                late,
                str(record.get("attempts") or 1),
                str(record.get("reason") or "-"),
            ]
        )
    return rows


def _spec_lines(spec: Mapping[str, Any]) -> str:
    component = spec.get("component") or {}
    text = _field("Image", component.get("image", ""))
    if component.get("command"):
        text += _field("Command", " ".join(component["command"]))
    method = str(spec.get("method", ""))
    if spec.get("module"):
        method += f" (module {spec['module']})"
    if spec.get("function"):
        method += f" (function {spec['function']})"
    text += _field("Method", method)
    args = json.dumps(spec.get("args") or {}, separators=(",", ":"), ensure_ascii=False)
    text += _field("Args", _clip(args, ARGS_PREVIEW))
    secret = (spec.get("credentialsSecretRef") or {}).get("name")
    text += _field("Credentials", f"secret/{secret}" if secret else "<none>")
    timeout = spec.get("timeoutSeconds", 600)
    run_timeout = spec.get("runTimeoutSeconds", min(models.DEFAULT_RUN_TIMEOUT_SECONDS, timeout))
    text += _field(
        "Limits",
        f"sequence {timeout}s, run {run_timeout}s, "
        f"retries {spec.get('retries', 1)}, max runs {spec.get('maxRuns', 100)}",
    )
    if spec.get("cancel"):
        text += _field("Cancel", "requested (spec.cancel=true)")
    return text


def _status_lines(status: Mapping[str, Any], now: datetime) -> str:
    text = _field("Phase", status.get("phase") or "Pending")
    error = status.get("error") or {}
    if error:
        text += _field("Reason", error.get("reason", ""))
        text += _field("Message", _clip(str(error.get("message", "")), 1000))
    text += _field("Runs", status.get("runs", 0))
    text += _field("Started", _when(status.get("startedAt"), now))
    text += _field("Deadline", status.get("deadline") or "<none>")
    if status.get("completedAt"):
        text += _field("Completed", _when(status["completedAt"], now))
    current = status.get("currentRun") or {}
    if current:
        started = parse_time(current.get("startedAt"))
        text += _field(
            "Current run",
            f"{current.get('index')} (job {current.get('job')}, running for {age(started, now)})",
        )
        waiting = current.get("waiting") or {}
        if waiting:
            text += _field("Waiting", f"{waiting.get('reason')}: {_clip(str(waiting.get('message', '')), 300)}")
    next_at = parse_time(status.get("nextRunAt"))
    if next_at is not None:
        upcoming = f"{status['nextRunAt']} (in {duration((next_at - now).total_seconds())})"
        if status.get("nextMethod"):
            upcoming += f", command {status['nextMethod']}"
        text += _field("Next run", upcoming)
    if status.get("itemsRemaining") is not None:
        text += _field("Remaining", f"{status['itemsRemaining']} items")
    ref = status.get("resultRef") or {}
    if ref:
        text += _field(
            "Result",
            f"configmap/{ref.get('configMap')} key {ref.get('key')}, {ref.get('bytes')} bytes, "
            f"sha256 {ref.get('sha256')} (kubectl sx result)",
        )
    elif status.get("phase") == "Succeeded":
        inline = json.dumps(status.get("result"), separators=(",", ":"), ensure_ascii=False)
        text += _field("Result", _clip(inline, ARGS_PREVIEW))
    if status.get("partialResult") is not None:
        partial = json.dumps(status["partialResult"], separators=(",", ":"), ensure_ascii=False)
        text += _field("Partial", _clip(partial, ARGS_PREVIEW))
    return text


def _event_time(event: Mapping[str, Any]) -> datetime | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        moment = parse_time(event.get(key))
        if moment is not None:
            return moment
    metadata = event.get("metadata") or {}
    return parse_time(metadata.get("creationTimestamp"))


def event_rows(events: Sequence[Mapping[str, Any]], now: datetime) -> list[list[str]]:
    """kubectl describe's Events table: oldest first, a repeated event once with its count."""
    ordered = sorted(events, key=lambda e: (_event_time(e) or now).timestamp())
    rows = []
    for event in ordered:
        count = event.get("count") or 1
        seen = age(_event_time(event), now) + (f" (x{count})" if count > 1 else "")
        rows.append(
            [str(event.get("type", "")), str(event.get("reason", "")), seen, _clip(str(event.get("message", "")), 200)]
        )
    return rows


def describe(execution: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime) -> str:
    meta, spec = execution.get("metadata") or {}, execution.get("spec") or {}
    status = execution.get("status") or {}
    text = _field("Name", meta.get("name", ""))
    text += _field("Namespace", meta.get("namespace", ""))
    text += _field("Created", _when(meta.get("creationTimestamp"), now))
    resubmitted = (meta.get("annotations") or {}).get(RESUBMITTED_FROM)
    if resubmitted:
        text += _field("Resubmitted", f"from {resubmitted}")
    text += _spec_lines(spec) + _status_lines(status, now)
    conditions = status.get("conditions") or []
    text += "Conditions:\n"
    if conditions:
        rows = [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                _clip(str(c.get("message", "")), 120),
            ]
            for c in conditions
        ]
        text += table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows, indent="  ")
    else:
        text += "  <none>\n"
    text += "History:\n"
    rows = history_rows(status, str(spec.get("method", "")))
    header = ["RUN", "METHOD", "STARTED", "DURATION", "OUTCOME", "LATENESS", "ATTEMPTS", "REASON"]
    text += table(header, rows, indent="  ") if rows else "  <none>\n"
    text += "Events:"
    rows = event_rows(events, now)
    text += "\n" + table(["TYPE", "REASON", "AGE", "MESSAGE"], rows, indent="  ") if rows else "  <none>\n"
    return text
