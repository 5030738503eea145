"""Prometheus metrics of the operator: what an on-call engineer graphs.

Outcomes by phase, run durations, the queue of executions waiting for a run
slot, and how late polling runs start compared with their nextRunAt.

These are counts about every tenant's executions, served without authentication
(prometheus_client's endpoint on SCHEDEXEC_METRICS_PORT): the chart's
NetworkPolicy lets only networkPolicy.metricsFrom reach that port, and the
liveness endpoint (handlers.py) tells none of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from schedexec import decisions, models

EXECUTIONS_FINISHED = Counter(
    "schedexec_executions_finished_total", "Executions that reached a final phase.", ["phase"]
)
RUNS_STARTED = Counter("schedexec_runs_started_total", "Runs started (Jobs created).")
RUN_DURATION = Histogram(
    "schedexec_run_duration_seconds",
    "Time from a run's start to its recorded outcome.",
    buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
LATENESS = Histogram(
    "schedexec_scheduling_lateness_seconds",
    "Start of a scheduled (polling) run minus its due time (nextRunAt).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
QUEUE_DEPTH = Gauge("schedexec_queue_depth", "Executions due to run but waiting for a free run slot.")
RUNNING = Gauge("schedexec_running_runs", "Runs holding a run slot.")
WAITING = Gauge("schedexec_timers", "Executions with a pending wake-up (next run, deadline or TTL).")
RECONCILE_ERRORS = Counter("schedexec_reconcile_errors_total", "Reconciles that failed and were retried.")


def record_transition(
    before: models.ScheduledExecutionStatus,
    after: models.ScheduledExecutionStatus,
    now: datetime,
    start: decisions.StartRun | None,
) -> None:
    """Count what a written status changed: a run started (and how late), an execution finished, a run ended."""
    if start is not None:
        RUNS_STARTED.inc()
        if start.index > 1 and before.next_run_at is not None:  # a polling run: how late?
            LATENESS.observe(max((now - before.next_run_at).total_seconds(), 0.0))
    if after.phase is not None and after.phase.finished and before.phase != after.phase:
        EXECUTIONS_FINISHED.labels(phase=after.phase.value).inc()
    if before.current_run is not None and after.current_run is None:
        RUN_DURATION.observe((now - before.current_run.started_at).total_seconds())
