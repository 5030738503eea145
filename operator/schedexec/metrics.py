"""Prometheus metrics of the operator: what an on-call engineer graphs and alerts on.

Named by the Prometheus conventions (REFERENCE §12): the `schedexec_`
namespace, base units (`_seconds`), `_total` on counters, and a
`schedexec_build_info` gauge whose labels say what runs. docs/observability.md
lists every metric with its labels, and the chart's PrometheusRule and
dashboard (charts/schedexec/templates/monitoring/) are built on them.

Every label value is bounded, so a tenant cannot grow the series count:

- `namespace`: an execution's namespace, bounded by the cluster's namespaces
  (a DNS label the API server checked; anything else, which cannot happen,
  is `invalid`);
- `method`: `selectModel`, `getMetaModel`, `verifyCredentials` (the three
  elastic.io methods), else `command` (a component's own commands are any
  name its author chose: per-command series would be unbounded);
- `reason`: a finished execution's reason, one of `models.Reason`'s or
  the Kubernetes reasons passed through (`REASONS`), else `Other`
  (a component's error reason is its own text);
- `phase`: one of `models.Phase`; `verb`/`code`: HTTP methods and status
  codes of the requests to the API server (bounded by HTTP).

`labels` is the one place raw values become label values (pure, tested
with generated inputs in tests/unit/test_metrics.py).

These are counts about every tenant's executions, served without
authentication (prometheus_client's endpoint on SCHEDEXEC_METRICS_PORT):
the chart's NetworkPolicy lets only networkPolicy.metricsFrom reach that
port, and the liveness endpoint (handlers.py) tells none of them.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram

from schedexec import models
from schedexec.objects import finished

if TYPE_CHECKING:
    from schedexec import decisions

METHODS = frozenset({models.SELECT_MODEL, models.GET_META_MODEL, models.VERIFY_CREDENTIALS})
"""The method label's values besides COMMAND: the elastic.io methods the REST API starts."""
COMMAND = "command"
"""The method label of every other method: a component's own commands (polling commands included)."""
REASONS = frozenset(
    {reason.value for reason in models.Reason}
    | {"ComponentError", "BackoffLimitExceeded", "DeadlineExceeded", "PodFailurePolicy", "Evicted"}
)
"""Reason label values: schedexec's own reasons and the Job controller's and kubelet's it passes through."""
OTHER = "Other"
"""The reason label of any reason not in REASONS (a component's own error reason, say)."""
INVALID = "invalid"
"""The namespace label of a string that is no namespace (never seen: the API server checks names)."""
NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

BUILD_INFO = Gauge(
    "schedexec_build_info",
    "Always 1: the labels say which schedexec and Python this process runs.",
    ["version", "python_version", "python_implementation"],
)
EXECUTIONS_FINISHED = Counter(
    "schedexec_executions_finished_total",
    "Executions that reached a final phase, by namespace, method, phase and reason.",
    ["namespace", "method", "phase", "reason"],
)
RUNS_STARTED = Counter(
    "schedexec_runs_started_total",
    "Runs started (their Jobs created), by namespace and method.",
    ["namespace", "method"],
)
RUNS_FINISHED = Counter(
    "schedexec_runs_finished_total",
    "Runs that ended (their outcome recorded or the execution ended under them), by namespace and method.",
    ["namespace", "method"],
)
RUN_DURATION = Histogram(
    "schedexec_run_duration_seconds",
    "Time from a run's start (its Job created) to its recorded end, by method.",
    ["method"],
    buckets=DURATION_BUCKETS,
)
START_LATENCY = Histogram(
    "schedexec_run_start_latency_seconds",
    "Time from an execution's creation to its first run's Job (queueing for a run slot included), by method.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
LATENESS = Histogram(
    "schedexec_scheduling_lateness_seconds",
    "Start of a scheduled (polling) run minus its due time (nextRunAt).",
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge("schedexec_queue_depth", "Executions due to run but waiting for a free run slot.")
SLOTS_IN_USE = Gauge("schedexec_run_slots_in_use", "Run slots held (runs in progress, and deleted ones draining).")
SLOTS = Gauge("schedexec_run_slots", "Run slots in all (SCHEDEXEC_MAX_RUNNING).")
TIMERS = Gauge("schedexec_timers", "Executions with a pending wake-up (next run, deadline or TTL).")
PAST_DEADLINE = Gauge(
    "schedexec_executions_past_deadline",
    "Executions not finished although their deadline (status.deadline) has passed: the operator ends them at "
    "their deadline, so one that stays here is stuck.",
)
RECONCILE_ERRORS = Counter("schedexec_reconcile_errors_total", "Reconciles that failed and were retried.")
KUBE_REQUEST_DURATION = Histogram(
    "schedexec_kube_request_duration_seconds",
    "Time to the API server's answer (its headers) of the operator's and the REST API's requests, by verb.",
    ["verb"],
    buckets=REQUEST_BUCKETS,
)
KUBE_REQUEST_ERRORS = Counter(
    "schedexec_kube_request_errors_total",
    "Requests to the API server answered with an error status (code) or not answered (code `none`), by verb.",
    ["verb", "code"],
)
VERBS = frozenset({"get", "post", "put", "patch", "delete"})


@dataclass(frozen=True)
class Labels:
    namespace: str
    method: str


def namespace_label(namespace: str) -> str:
    return namespace if len(namespace) <= 63 and NAMESPACE.fullmatch(namespace) else INVALID


def method_label(method: str | None) -> str:
    return method if method in METHODS else COMMAND


def reason_label(reason: str | None) -> str:
    return reason if reason in REASONS else OTHER


def verb_label(method: str) -> str:
    verb = method.lower()
    return verb if verb in VERBS else "other"


def code_label(status: int | None) -> str:
    return "none" if status is None or not 100 <= status <= 599 else str(status)


def labels(execution: models.ScheduledExecution, run_method: str | None = None) -> Labels:
    """The bounded labels of an execution (of one of its runs, if that run ran another method)."""
    return Labels(namespace_label(execution.metadata.namespace), method_label(run_method or execution.spec.method))


def final_reason(status: models.ScheduledExecutionStatus) -> str:
    """The reason label of a finished execution: its error's, `Succeeded` without one."""
    if status.error is not None:
        return reason_label(status.error.reason)
    return reason_label(status.phase.value if status.phase is not None else None)


def record_transition(
    execution: models.ScheduledExecution,
    after: models.ScheduledExecutionStatus,
    now: datetime,
    start: decisions.StartRun | None,
) -> None:
    """Count what a written status changed: a run started (and how late), an execution finished, a run ended."""
    before = execution.status
    if start is not None:
        started = labels(execution, start.method)
        RUNS_STARTED.labels(started.namespace, started.method).inc()
        if start.index > 1 and before.next_run_at is not None:  # a polling run: how late?
            LATENESS.observe(max((now - before.next_run_at).total_seconds(), 0.0))
        elif start.index == 1 and execution.metadata.creation_timestamp is not None:
            START_LATENCY.labels(started.method).observe(
                max((now - execution.metadata.creation_timestamp).total_seconds(), 0.0)
            )
    ran = before.current_run
    if ran is not None and (after.current_run is None or after.current_run.index != ran.index):
        ended = labels(execution, ran.method)
        RUNS_FINISHED.labels(ended.namespace, ended.method).inc()
        RUN_DURATION.labels(ended.method).observe(max((now - ran.started_at).total_seconds(), 0.0))
    if after.phase is not None and after.phase.finished and before.phase != after.phase:
        finished = labels(execution)
        EXECUTIONS_FINISHED.labels(finished.namespace, finished.method, after.phase.value, final_reason(after)).inc()


class Deadlines:
    """The deadlines of the unfinished executions, by key, as the watch shows them: PAST_DEADLINE counts those
    passed at scrape time (prometheus_client's thread: it reads a copy)."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self._by_key: dict[str, datetime] = {}

    def seen(self, key: str, body: Mapping[str, Any]) -> None:
        status = body.get("status") or {}
        try:
            deadline = datetime.fromisoformat(str(status["deadline"]))
        except (KeyError, ValueError, TypeError):
            deadline = None
        if deadline is None or deadline.tzinfo is None or finished(body):
            self._by_key.pop(key, None)
        else:
            self._by_key[key] = deadline

    def gone(self, key: str) -> None:
        self._by_key.pop(key, None)

    def passed(self) -> int:
        now = self.now()
        return sum(1 for deadline in list(self._by_key.values()) if deadline <= now)


def observe_slots(waiting: int, held: int, limit: int, timers: int) -> None:
    QUEUE_DEPTH.set(waiting)
    SLOTS_IN_USE.set(held)
    SLOTS.set(limit)
    TIMERS.set(timers)


def observe_request(method: str, seconds: float, status: int | None) -> None:
    """One request to the API server: how long to its answer; an error status (>= 400) or none is counted."""
    verb = verb_label(method)
    KUBE_REQUEST_DURATION.labels(verb).observe(seconds)
    if status is None or status >= 400:
        KUBE_REQUEST_ERRORS.labels(verb, code_label(status)).inc()


def version() -> str:
    try:
        return metadata.version("schedexec")
    except metadata.PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


BUILD_INFO.labels(version(), platform.python_version(), platform.python_implementation()).set(1)
