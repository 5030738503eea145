"""The operator's and the REST API's metrics: bounded labels, what a status change counts, a clean scrape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schedexec import decisions, metrics, models
from schedexec.api.app import create_app
from schedexec.api.cache import ExecutionCache
from tests.unit import builders
from tests.unit.api_fake import FakeKube
from tests.unit.test_api_app import NS, SETTINGS, TOKEN, execution, schedule
from tests.unit.test_controller import FakeCluster, body, controller

BOUNDED_METHODS = {*metrics.METHODS, metrics.COMMAND}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@given(st.text(max_size=300))
def test_a_label_value_is_one_of_a_bounded_set_whatever_the_string(raw: str) -> None:
    assert metrics.method_label(raw) in BOUNDED_METHODS
    assert metrics.reason_label(raw) in {*metrics.REASONS, metrics.OTHER}
    namespace = metrics.namespace_label(raw)
    # a namespace label is a namespace (the cluster bounds how many there are), or "invalid"
    assert namespace == metrics.INVALID or (namespace == raw and len(raw) <= 63)
    assert metrics.verb_label(raw) in {*metrics.VERBS, "other"}


@given(st.sampled_from(sorted(BOUNDED_METHODS - {metrics.COMMAND})))
def test_the_elastic_io_methods_keep_their_names(method: str) -> None:
    assert metrics.method_label(method) == method


def test_a_component_s_own_command_and_error_reason_are_not_label_values() -> None:
    assert metrics.method_label("getCategories") == metrics.COMMAND
    assert metrics.reason_label("MyComponentBrokeInAnInterestingWay") == metrics.OTHER
    assert metrics.reason_label("ComponentError") == "ComponentError"
    assert metrics.reason_label(models.Reason.RUN_TIMED_OUT.value) == "RunTimedOut"


def test_a_started_run_counts_by_namespace_and_method_and_times_its_start() -> None:
    execution = builders.execution(method=models.SELECT_MODEL, function="f")
    labels = {"namespace": execution.metadata.namespace, "method": models.SELECT_MODEL}
    started, latency = (
        value("schedexec_runs_started_total", **labels),
        value("schedexec_run_start_latency_seconds_sum", method=models.SELECT_MODEL),
    )
    after = models.ScheduledExecutionStatus.model_validate(builders.running(1))
    start = decisions.StartRun(index=1, job=builders.run_job(1), args={})
    metrics.record_transition(execution, after, builders.at(3), start)
    assert value("schedexec_runs_started_total", **labels) == started + 1
    assert value("schedexec_run_start_latency_seconds_sum", method=models.SELECT_MODEL) == latency + 3


def test_a_finished_execution_counts_by_phase_and_reason_and_its_run_s_duration_by_method() -> None:
    execution = builders.execution(builders.running(1), method="poll")
    failed = models.ScheduledExecutionStatus.model_validate(
        {"phase": "Failed", "runs": 1, "error": {"reason": "ComponentError", "message": "boom"}}
    )
    labels = {"namespace": execution.metadata.namespace, "method": metrics.COMMAND}
    counted = {**labels, "phase": "Failed", "reason": "ComponentError"}
    before = value("schedexec_executions_finished_total", **counted)
    runs = value("schedexec_runs_finished_total", **labels)
    duration = value("schedexec_run_duration_seconds_sum", method=metrics.COMMAND)
    metrics.record_transition(execution, failed, builders.at(7), None)
    assert value("schedexec_executions_finished_total", **counted) == before + 1
    assert value("schedexec_runs_finished_total", **labels) == runs + 1
    assert value("schedexec_run_duration_seconds_sum", method=metrics.COMMAND) == duration + 7


def test_a_succeeded_execution_s_reason_is_succeeded() -> None:
    status = models.ScheduledExecutionStatus.model_validate({"phase": "Succeeded", "runs": 1})
    assert metrics.final_reason(status) == "Succeeded"


def test_requests_to_the_api_server_are_timed_by_verb_and_errors_counted_by_code() -> None:
    errors = value("schedexec_kube_request_errors_total", verb="patch", code="409")
    unanswered = value("schedexec_kube_request_errors_total", verb="get", code="none")
    count = value("schedexec_kube_request_duration_seconds_count", verb="patch")
    metrics.observe_request("PATCH", 0.02, 409)
    metrics.observe_request("PATCH", 0.01, 200)
    metrics.observe_request("GET", 10, None)
    assert value("schedexec_kube_request_duration_seconds_count", verb="patch") == count + 2
    assert value("schedexec_kube_request_errors_total", verb="patch", code="409") == errors + 1
    assert value("schedexec_kube_request_errors_total", verb="get", code="none") == unanswered + 1


def test_build_info_names_the_version() -> None:
    [sample] = next(s for s in REGISTRY.collect() if s.name == "schedexec_build_info").samples
    assert sample.value == 1 and sample.labels["version"] and sample.labels["python_version"]


def test_slots_and_queue_are_gauges_of_the_controller_s_state() -> None:
    metrics.observe_slots(waiting=4, held=3, limit=3, timers=9)
    assert value("schedexec_queue_depth") == 4
    assert value("schedexec_run_slots_in_use") == 3
    assert value("schedexec_run_slots") == 3
    assert value("schedexec_timers") == 9


# --- the REST API --------------------------------------------------------------------------------


@pytest.fixture
def http() -> Iterator[TestClient]:
    kube = FakeKube()
    kube.user("alice-token", "alice")
    for verb in ("create", "get"):
        kube.grant("alice", verb, NS)
    with TestClient(create_app(SETTINGS, kube, ExecutionCache(kube)), headers=TOKEN, follow_redirects=False) as client:
        yield client


def test_api_requests_count_by_route_template_never_by_path(http: TestClient) -> None:
    route = "/v2/exec/poll/{execution_id}"
    polls = value("schedexec_api_requests_total", route=route, method="GET", code="200")
    created = value("schedexec_api_requests_total", route="/v2/executions", method="POST", code="202")
    uid = schedule(http, "/v2/executions", execution())
    assert http.get(f"/v2/exec/poll/{uid}").status_code == 200
    assert value("schedexec_api_requests_total", route=route, method="GET", code="200") == polls + 1
    assert value("schedexec_api_requests_total", route="/v2/executions", method="POST", code="202") == created + 1
    assert value("schedexec_api_request_duration_seconds_count", route=route, method="GET") >= 1
    assert uid not in generate_latest(REGISTRY).decode()


def test_unknown_paths_and_the_guard_s_refusals_are_counted_without_their_path(http: TestClient) -> None:
    unmatched = value("schedexec_api_requests_total", route="unmatched", method="GET", code="404")
    refused = value("schedexec_api_requests_total", route="/v2/exec/poll/{execution_id}", method="GET", code="401")
    assert http.get("/some/path/of/the/callers/own").status_code == 404
    assert http.get("/v2/exec/poll/x", headers={"Authorization": "Bearer nobody"}).status_code == 401
    assert value("schedexec_api_requests_total", route="unmatched", method="GET", code="404") == unmatched + 1
    route = "/v2/exec/poll/{execution_id}"
    assert value("schedexec_api_requests_total", route=route, method="GET", code="401") == refused + 1
    assert "/some/path" not in generate_latest(REGISTRY).decode()


def test_review_cache_hits_are_lookups_without_a_review(http: TestClient) -> None:
    uid = schedule(http, "/v2/executions", execution())  # the token's review is cached from here on
    lookups, reviews = (
        value("schedexec_api_review_lookups_total", kind="token"),
        value("schedexec_api_reviews_total", kind="token"),
    )
    for _ in range(3):
        assert http.get(f"/v2/exec/poll/{uid}").status_code == 200
    assert value("schedexec_api_review_lookups_total", kind="token") == lookups + 3
    assert value("schedexec_api_reviews_total", kind="token") == reviews  # all three answered from the cache
    http.get(f"/v2/exec/poll/{uid}", headers={"Authorization": "Bearer new-token"})
    assert value("schedexec_api_reviews_total", kind="token") == reviews + 1


def test_the_scrape_parses_and_follows_the_naming_conventions(http: TestClient) -> None:
    http.get("/livez")
    families = list(text_string_to_metric_families(generate_latest(REGISTRY).decode()))
    ours = [family for family in families if family.name.startswith("schedexec_")]
    assert {"schedexec_build_info", "schedexec_api_requests", "schedexec_executions_finished"} <= {
        family.name for family in ours
    }
    for family in ours:
        assert family.documentation, family.name
        if family.type == "counter":  # the parser strips _total; the exposition has it
            assert all(sample.name.endswith(("_total", "_created")) for sample in family.samples), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


def test_executions_past_their_deadline_and_not_finished_are_counted_at_scrape_time() -> None:
    clock = [builders.at(0)]
    deadlines = metrics.Deadlines(lambda: clock[0])
    running = {"metadata": {"name": "a"}, "status": {"phase": "Running", "deadline": builders.at(60).isoformat()}}
    deadlines.seen("ns/a", running)
    deadlines.seen("ns/b", {"metadata": {"name": "b"}, "status": {"phase": "Pending"}})  # no deadline yet
    assert deadlines.passed() == 0
    clock[0] = builders.at(61)
    assert deadlines.passed() == 1
    deadlines.seen("ns/a", {**running, "status": {**running["status"], "phase": "TimedOut"}})
    assert deadlines.passed() == 0
    deadlines.seen("ns/a", running)
    deadlines.gone("ns/a")
    assert deadlines.passed() == 0


def test_the_controller_keeps_the_past_deadline_gauge_from_the_watch() -> None:
    cluster = FakeCluster()
    c = controller(cluster)
    c.now = lambda: builders.at(3600)  # type: ignore[method-assign]
    c.deadlines.now = c.now
    stuck = {**body("a"), "status": {"phase": "Running", "deadline": builders.at(60).isoformat()}}
    c.execution_event(None, stuck)
    assert value("schedexec_executions_past_deadline") == 1
    c.execution_event("DELETED", stuck)
    assert value("schedexec_executions_past_deadline") == 0
