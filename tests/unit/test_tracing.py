"""Traces: off unless OTEL_* asks; one trace from the REST request to the component, parent links and all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schedexec import manifests, models, tracing
from schedexec.api.app import create_app
from schedexec.api.cache import ExecutionCache
from schedexec_runner import contract, envelope
from schedexec_runner.main import run
from tests.runner.test_runner import COMPONENTS, env
from tests.unit import builders
from tests.unit.api_fake import FakeKube
from tests.unit.test_adoption import created
from tests.unit.test_api_app import NS, SETTINGS, TOKEN, execution
from tests.unit.test_controller import FakeCluster, controller, settle

EXPORTED = InMemorySpanExporter()
PROVIDER = tracing.provider(SimpleSpanProcessor(EXPORTED))
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Traces on, to memory: the operator's and API's (tracing.use) and the runner's (the global provider)."""
    monkeypatch.syspath_prepend(str(COMPONENTS))
    trace.set_tracer_provider(PROVIDER)  # once per process; the same provider every time
    EXPORTED.clear()
    tracing.use(PROVIDER)
    yield EXPORTED
    tracing.use(None)


def ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def parent_of(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_on_only_when_the_otel_environment_names_an_exporter(environ: dict[str, str], on: bool) -> None:
    assert tracing.configured(environ) is on


def test_off_it_makes_no_span_and_no_annotation() -> None:
    assert not tracing.setup("schedexec-test", {})
    assert not tracing.enabled()
    with tracing.span("anything") as made:
        assert made is None
        assert tracing.current() is None
    kube = FakeKube()
    kube.user("alice-token", "alice")
    kube.grant("alice", "create", NS)
    with TestClient(create_app(SETTINGS, kube, ExecutionCache(kube)), headers=TOKEN) as http:
        assert http.post("/v2/executions", json=execution(), params={"namespace": NS}).status_code == 202
    assert tracing.ANNOTATION not in (kube.created[0]["metadata"].get("annotations") or {})


@given(st.text(max_size=80))
def test_only_a_valid_traceparent_is_passed_on(value: str) -> None:
    passed = tracing.run_traceparent(value, "uid", 1)
    assert passed is None or tracing.valid(passed) == passed
    assert tracing.valid(value) in (None, value)


def test_a_run_s_traceparent_is_the_same_for_every_job_made_for_it_and_differs_by_run() -> None:
    first = tracing.run_traceparent(CLIENT_PARENT, "uid-a", 1)
    assert first == tracing.run_traceparent(CLIENT_PARENT, "uid-a", 1)
    assert first is not None and first.startswith(f"00-{CLIENT_TRACE}-") and first.endswith("-01")
    assert (
        len(
            {
                first,
                tracing.run_traceparent(CLIENT_PARENT, "uid-a", 2),
                tracing.run_traceparent(CLIENT_PARENT, "uid-b", 1),
            }
        )
        == 3
    )


def test_the_job_carries_the_run_s_traceparent_and_is_adopted_again_with_it() -> None:
    traceparent = tracing.run_traceparent(CLIENT_PARENT, "uid", 1)
    job = manifests.job_manifest(builders.execution(), 1, {}, builders.POD_DEFAULTS, traceparent=traceparent)
    template = job["spec"]["template"]
    assert job["metadata"]["annotations"][tracing.ANNOTATION] == traceparent
    assert template["metadata"]["annotations"][tracing.ANNOTATION] == traceparent
    assert {"name": "TRACEPARENT", "value": traceparent} in template["spec"]["containers"][0]["env"]
    untraced = manifests.job_manifest(builders.execution(), 1, {}, builders.POD_DEFAULTS)
    assert "TRACEPARENT" not in str(untraced)


def test_one_trace_from_the_rest_request_to_the_component(traced: InMemorySpanExporter, tmp_path: Path) -> None:
    # 1. the REST request: a SERVER span, child of the client's traceparent; the execution names it
    kube = FakeKube()
    kube.user("alice-token", "alice")
    kube.grant("alice", "create", NS)
    with TestClient(create_app(SETTINGS, kube, ExecutionCache(kube)), headers=TOKEN) as http:
        answer = http.post(
            "/v2/executions", json=execution(), params={"namespace": NS}, headers={"traceparent": CLIENT_PARENT}
        )
    assert answer.status_code == 202
    [request] = named(traced, "POST /v2/executions")
    assert request.kind is trace.SpanKind.SERVER and request.attributes is not None
    assert request.attributes["http.response.status_code"] == 202
    trace_id, request_id = ids(request)
    assert trace_id == CLIENT_TRACE and parent_of(request) == "b7ad6b7169203331"
    created = next(iter(kube.executions.values()))
    annotated = tracing.of(created)
    assert annotated is not None
    # the execution's parent: the span current in the route (FastAPI's endpoint span), inside the request's
    [handler] = [s for s in traced.get_finished_spans() if f"{ids(s)[1]}" == annotated.split("-")[2]]
    assert ids(handler)[0] == trace_id and parent_of(handler) == request_id
    execution_parent = ids(handler)[1]

    # 2. the operator: each reconcile a child of the execution's span; the run's Job names the run's span
    cluster = FakeCluster()
    made: list[dict[str, Any]] = []
    create_job = cluster.create_job

    async def recording(manifest: dict[str, Any]) -> bool:
        made.append(manifest)
        return await create_job(manifest)

    cluster.create_job = recording  # type: ignore[method-assign]
    c = controller(cluster)

    async def scenario() -> None:
        c.execution_event(None, created)
        await settle(c)

    asyncio.run(scenario())
    reconciles = named(traced, "reconcile")
    assert reconciles and all(ids(s)[0] == trace_id and parent_of(s) == execution_parent for s in reconciles)
    [job] = made
    uid = created["metadata"]["uid"]
    run_traceparent = tracing.run_traceparent(tracing.of(created), uid, 1)
    assert run_traceparent is not None
    assert job["metadata"]["annotations"][tracing.ANNOTATION] == run_traceparent
    run_span_id = run_traceparent.split("-")[2]

    # 3. the component: the runner continues the trace from TRACEPARENT
    environ = env(tmp_path, "{}", **{contract.METHOD: "countdown", "TRACEPARENT": run_traceparent})
    assert run(environ) == envelope.done({"seen": [1]})
    [component] = named(traced, "countdown")
    assert ids(component)[0] == trace_id and parent_of(component) == run_span_id

    # 4. the run's span, exported when the run ends, has the id its Job named, under the execution's span
    execution_now = models.ScheduledExecution.model_validate(
        {
            **created,
            "status": builders.running(1)
            | {"currentRun": {"index": 1, "job": "j", "startedAt": builders.T0.isoformat()}},
        }
    )
    ended = models.ScheduledExecutionStatus.model_validate({"phase": "Waiting", "runs": 1})
    job = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:04Z"}]
        },
    }
    pod = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": "2026-01-01T00:00:01Z"},
            ],
            "containerStatuses": [
                {"state": {"terminated": {"startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z"}}}
            ],
        },
    }
    tracing.record_runs(
        execution_now, tracing.of(created), ended, builders.at(5), lambda: tracing.run_stages(job, [pod])
    )
    [run_span] = named(traced, "run 1")
    assert [event.name for event in run_span.events] == [
        "job created",
        "pod scheduled",
        "sandbox ready",
        "container started",
        "container finished",
        "job complete",
    ], "the trace alone shows each Kubernetes stage of the run"
    assert ids(run_span) == (trace_id, run_span_id) and parent_of(run_span) == execution_parent
    assert run_span.end_time is not None and run_span.start_time is not None
    assert run_span.end_time - run_span.start_time == 5_000_000_000


def test_without_opentelemetry_the_runner_runs_as_before(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.syspath_prepend(str(COMPONENTS))
    monkeypatch.setitem(__import__("sys").modules, "opentelemetry", None)  # as if not installed: ImportError
    environ = env(tmp_path, "{}", **{contract.METHOD: "countdown", "TRACEPARENT": CLIENT_PARENT})
    assert run(environ) == envelope.done({"seen": [1]})


def test_a_traced_run_s_job_is_adopted_after_a_crash_and_one_with_another_trace_context_is_not() -> None:
    execution = builders.execution()
    traceparent = tracing.run_traceparent(CLIENT_PARENT, execution.metadata.uid, 1)
    made = manifests.job_manifest(execution, 1, {}, builders.POD_DEFAULTS, traceparent=traceparent)
    assert manifests.made_for(created(made), made) is None  # made again for the same run: the same context
    other = manifests.job_manifest(
        execution, 1, {}, builders.POD_DEFAULTS, traceparent=tracing.run_traceparent(CLIENT_PARENT, "other", 1)
    )
    assert manifests.made_for(created(other), made) is not None


def test_run_stages_leave_out_what_the_objects_do_not_show_and_are_in_time_order() -> None:
    pending = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:03Z"},
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "False", "lastTransitionTime": "2026-01-01T00:00:04Z"}]
        },
    }
    job = {"metadata": {"creationTimestamp": "2026-01-01T00:00:02Z"}, "status": {}}
    assert tracing.run_stages(job, [pending]) == [("job created", datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC))]
    assert tracing.run_stages(None, []) == []
    broken = {"metadata": {"creationTimestamp": "not a time"}, "status": {"conditions": [{"type": "Complete"}]}}
    assert tracing.run_stages(broken, [{"status": {"containerStatuses": [{"state": {"running": {}}}]}}]) == []
