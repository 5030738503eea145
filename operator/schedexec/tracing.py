"""OpenTelemetry traces of an execution: the REST request, the operator's reconciles, each run, the component.

Off unless configured. `setup` switches tracing on only when the standard
OpenTelemetry environment asks for an exporter (`OTEL_TRACES_EXPORTER`
other than `none`, or an `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`) and
`OTEL_SDK_DISABLED` is not `true`, and the SDK is installed (the operator
image's `[otel]` extra); the exporter, service name and resource are the
SDK's own reading of `OTEL_*`. Otherwise `span` does nothing at all: no
tracer, no span object, no context (zero cost).

The trace context travels on the objects, as W3C `traceparent` values, so
it survives restarts and crosses processes without any shared state:

- the REST API's request span (FastAPI's own OpenTelemetry spans, given
  schedexec's provider: the whole request, a `traceparent` header it sends
  continued) is the parent of the execution it creates: its context goes
  into the execution's `schedexec.io/traceparent` annotation (`ANNOTATION`;
  a client may set it on an execution it applies itself, to put the
  execution into its own trace);
- each reconcile of the execution is a span, child of that annotation;
- each run is a span (`run N`, from its Job's creation to its recorded
  end, exported when the run ends), child of the annotation too, whose
  span id is derived from the execution's uid and the run's index
  (`run_traceparent`): the run's Job carries it (the same annotation on
  the Job's pod template, and `TRACEPARENT` in the run's environment) from
  the moment it is created, before the span itself exists, and a Job made
  again for the same run (adopted after a crash: manifests.made_for) has
  the same value;
- the run span carries the Kubernetes stages of its Job and pod as span
  events (`run_stages`: Job created, pod scheduled, sandbox ready,
  container started and finished, Job complete; the API server's times,
  to the second), so the trace alone shows where a run's seconds went;
- the runner continues the trace from `TRACEPARENT` when the component's
  image has OpenTelemetry (schedexec_runner.tracing), so the component's
  own spans hang under its run.

Everything here is pure but `setup`, `use` and the spans themselves.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from schedexec import models

log = logging.getLogger(__name__)

ANNOTATION = "schedexec.io/traceparent"
"""The execution's (and its runs' pods') W3C trace context."""
ENV = "TRACEPARENT"
"""The run's environment variable holding its run span's context (the convention of OTEP 258)."""
TRACEPARENT = re.compile(r"00-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})")
"""A W3C traceparent of version 00 with valid (non-zero) ids."""

_PROPAGATOR = TraceContextTextMapPropagator()
_provider: trace.TracerProvider | None = None
_chosen_span_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("schedexec_span_id", default=None)


def valid(value: object) -> str | None:
    """`value` if it is a traceparent the operator passes on, else None (anyone may annotate an execution)."""
    return value if isinstance(value, str) and TRACEPARENT.fullmatch(value) else None


def of(body: Mapping[str, Any] | None) -> str | None:
    """The traceparent annotation of an object (as the API server answers it), if valid."""
    annotations = ((body or {}).get("metadata") or {}).get("annotations") or {}
    return valid(annotations.get(ANNOTATION))


def run_span_id(uid: str, index: int) -> int:
    """The span id of run `index` of the execution with `uid`: the same for every Job made for that run."""
    digest = hashlib.sha256(f"{uid}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def run_traceparent(execution: str | None, uid: str, index: int) -> str | None:
    """The traceparent of run `index` (its span, a child of the execution's `execution` traceparent)."""
    matched = TRACEPARENT.fullmatch(execution or "")
    if matched is None:
        return None
    trace_id, _, flags = matched.groups()
    return f"00-{trace_id}-{run_span_id(uid, index):016x}-{flags}"


def configured(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* environment asks for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def provider(*processors: Any, service: str = "schedexec") -> trace.TracerProvider:
    """An SDK TracerProvider with `processors`, its resource read from OTEL_* (OTEL_SERVICE_NAME, else
    `service`), whose span ids `record_run` may choose."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class ChosenIds(RandomIdGenerator):
        def generate_span_id(self) -> int:
            return _chosen_span_id.get() or super().generate_span_id()

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    made = TracerProvider(resource=Resource.create({"service.name": name}), id_generator=ChosenIds())
    for processor in processors:
        made.add_span_processor(processor)
    return made


def setup(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Trace to the exporter the OTEL_* environment names, as `service` (unless OTEL_SERVICE_NAME says);
    False, and nothing set up, when it names none or the SDK is not installed."""
    if not configured(environ):
        return False
    try:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_* asks for traces, but the OpenTelemetry SDK is not installed (schedexec[otel])")
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    use(provider(BatchSpanProcessor(exporter), service=service))
    return True


def use(chosen: trace.TracerProvider | None) -> None:
    """Trace with `chosen` from now on (None: not at all)."""
    global _provider
    _provider = chosen


def shutdown() -> None:
    """Export the spans still buffered, and trace no more."""
    global _provider
    chosen, _provider = _provider, None
    stop = getattr(chosen, "shutdown", None)
    if stop is not None:
        stop()


def in_use() -> trace.TracerProvider | None:
    """The provider schedexec traces with, None when tracing is off."""
    return _provider


def enabled() -> bool:
    return _provider is not None


def context_of(traceparent: str | None) -> Any:
    return None if traceparent is None else _PROPAGATOR.extract({"traceparent": traceparent})


@contextlib.contextmanager
def span(
    name: str,
    parent: str | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    carrier: Mapping[str, str] | None = None,
) -> Iterator[trace.Span | None]:
    """A span named `name`, the current one inside, child of `parent` (a traceparent), of the context in
    `carrier` (a request's headers), or of the current span; None when tracing is off."""
    if _provider is None:
        yield None
        return
    context = context_of(parent) if parent is not None else _PROPAGATOR.extract(carrier) if carrier else None
    tracer = _provider.get_tracer("schedexec")
    with tracer.start_as_current_span(name, context=context, kind=kind, attributes=dict(attributes or {})) as made:
        yield made


def current() -> str | None:
    """The current span's traceparent, if tracing is on and there is one (inside `span`, or a request's)."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return valid(carrier.get("traceparent"))


POD_STAGES: tuple[tuple[str, str], ...] = (
    ("PodScheduled", "pod scheduled"),
    ("PodReadyToStartContainers", "sandbox ready"),
)
"""A pod condition whose (True) transition marks a stage of a run, and the stage's name."""
Stage = tuple[str, datetime]


def _time(value: Any) -> datetime | None:
    """A Kubernetes timestamp (RFC 3339, `Z`), or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def run_stages(job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> list[Stage]:
    """The Kubernetes stages of a run, from its Job and its (last) pod, in time order: Job created, pod
    scheduled, sandbox ready, container started, container finished, Job complete (or failed). A stage the
    objects do not show is left out."""
    stages: list[tuple[str, datetime | None]] = []
    if job is not None:
        stages.append(("job created", _time((job.get("metadata") or {}).get("creationTimestamp"))))
        for condition in (job.get("status") or {}).get("conditions") or []:
            if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
                stages.append((f"job {condition['type'].lower()}", _time(condition.get("lastTransitionTime"))))
    if pods:
        pod = max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
        status = pod.get("status") or {}
        by_type = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
        stages.extend((name, _time((by_type.get(kind) or {}).get("lastTransitionTime"))) for kind, name in POD_STAGES)
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            ended = state.get("terminated") or {}
            stages.append(("container started", _time((state.get("running") or ended).get("startedAt"))))
            stages.append(("container finished", _time(ended.get("finishedAt"))))
    return sorted(((name, at) for name, at in stages if at is not None), key=lambda stage: stage[1])


def record_run(
    execution: str | None,
    uid: str,
    index: int,
    started: datetime,
    ended: datetime,
    attributes: Mapping[str, Any],
    stages: Sequence[Stage] = (),
) -> None:
    """Export the span of run `index`, from `started` to `ended`, with the id its Job's TRACEPARENT names, and
    `stages` (run_stages) as its events."""
    if _provider is None or valid(execution) is None:
        return
    token = _chosen_span_id.set(run_span_id(uid, index))
    try:
        made = _provider.get_tracer("schedexec").start_span(
            f"run {index}",
            context=context_of(execution),
            attributes=dict(attributes),
            start_time=int(started.timestamp() * 1e9),
        )
    finally:
        _chosen_span_id.reset(token)
    for name, at in stages:
        made.add_event(name, timestamp=int(at.timestamp() * 1e9))
    made.end(end_time=int(max(ended, started).timestamp() * 1e9))


def record_runs(
    execution: models.ScheduledExecution,
    traceparent: str | None,
    after: models.ScheduledExecutionStatus,
    now: datetime,
    stages: Callable[[], Sequence[Stage]] = list,
) -> None:
    """Export the span of the run a written status ended (if it ended one): from its Job's creation to now, with
    the run's Kubernetes stages (`stages()`, asked only when a span is exported)."""
    ran = execution.status.current_run
    if _provider is None or ran is None or (after.current_run is not None and after.current_run.index == ran.index):
        return
    method = ran.method or execution.spec.method
    attributes = {"schedexec.execution": execution.key, "schedexec.run": ran.index, "schedexec.job": ran.job}
    record_run(
        traceparent,
        execution.metadata.uid,
        ran.index,
        ran.started_at,
        now,
        {**attributes, "schedexec.method": method},
        stages(),
    )
