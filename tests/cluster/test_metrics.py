"""Metrics and traces on the local control plane: promtool on live scrapes and on the chart's alerts.

The operator and the REST API run as real processes (`schedexec operator` on this test's namespace only,
the shared cluster-wide one paused; `schedexec api`), each serving its metrics on a port of its own and
tracing to its log (OTEL_TRACES_EXPORTER=console). A REST countdown runs to its result; then promtool's
`check metrics` lints both scrapes, and the execution, its Job and the operator's spans are one trace.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from schedexec import tracing
from schedexec_devcluster import binaries, promtool
from schedexec_devcluster.controlplane import die_with_parent
from tests.cluster.test_chart import documents, helm, render  # noqa: F401 (helm: a fixture)
from tests.cluster.test_restapi import COMPONENTS
from tests.support import LocalCluster, client_token, free_port, rest_countdown, serving_api, wait_for

pytestmark = pytest.mark.cluster
RULE_TESTS = Path(__file__).parent / "promtool" / "alerts.test.yaml"
TRACED = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "200"}


@pytest.fixture(scope="module")
def checker() -> Path:
    try:
        return promtool.ensure_promtool()
    except binaries.BinariesUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"promtool is needed for the metrics checks: {exc}")
        pytest.skip(f"promtool is needed for the metrics checks: {exc}")


@pytest.fixture
def operator_serving_metrics(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """`schedexec operator` on `namespace` alone, its metrics on a free port, its spans in its log."""
    port, log = free_port(), tmp_path / "operator.log"
    env = {
        **os.environ,
        **TRACED,
        "KUBECONFIG": str(cluster.kubeconfig),
        "SCHEDEXEC_NAMESPACES": json.dumps([namespace]),
        "SCHEDEXEC_METRICS_PORT": str(port),
        "SCHEDEXEC_MIN_INTERVAL_SECONDS": "1",
        "SCHEDEXEC_MAX_RESULT_BYTES": "0",
        "SCHEDEXEC_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "schedexec.cli", "operator"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    try:
        wait_for("the operator's metrics", lambda: scrape(port) or None, timeout=30)
        yield port, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(port: int) -> str:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def checked(checker: Path, exposition: str) -> None:
    done = promtool.check_metrics(checker, exposition)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


@pytest.mark.usefixtures("without_session_operator")
def test_live_scrapes_pass_promtool_and_a_rest_execution_is_one_trace(
    cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
    checker: Path,
    operator_serving_metrics: tuple[int, Path],
) -> None:
    operator_port, operator_log = operator_serving_metrics
    api_port = free_port()
    settings = {
        **TRACED,
        "SCHEDEXEC_API_COMPONENTS": json.dumps(COMPONENTS),
        "SCHEDEXEC_API_METRICS_PORT": str(api_port),
    }
    token = client_token(cluster, namespace)
    with serving_api(cluster, tmp_path, settings) as api:
        with api.client(token) as http:
            rest_countdown(http, namespace)
            assert http.get("/v2/exec/poll/not-an-id").status_code == 404
        api_text = scrape(api_port)

    labels = f'method="command",namespace="{namespace}"'
    finished = f'schedexec_executions_finished_total{{{labels},phase="Succeeded",reason="Succeeded"}} 1.0'

    def counted() -> str | None:
        text = scrape(operator_port)
        return text if finished in text else None

    operator_text = wait_for("the finished execution counted", counted)
    assert f"schedexec_runs_started_total{{{labels}}} 2.0" in operator_text
    assert "schedexec_build_info{" in operator_text
    assert 'schedexec_kube_request_duration_seconds_count{verb="post"}' in operator_text  # the runs' Jobs
    assert 'schedexec_api_requests_total{code="202",method="POST",route="/v2/executions"} 1.0' in api_text
    assert 'route="/v2/exec/poll/{execution_id}"' in api_text and "not-an-id" not in api_text
    checked(checker, operator_text)
    checked(checker, api_text)

    # the trace: the execution names the request's span; its Jobs name their runs' spans under it
    [execution] = json.loads(cluster.kubectl("get", "scheduledexecutions", "-n", namespace, "-o", "json").stdout)[
        "items"
    ]
    annotated = tracing.of(execution)
    assert annotated is not None, "the REST API put its request's trace context on the execution"
    trace_id, request_span = annotated.split("-")[1:3]
    uid = execution["metadata"]["uid"]
    spans = wait_for("the operator's spans", lambda: spans_in(operator_log, trace_id, "run 2") or None, timeout=30)
    reconciles = [s for s in spans if s["name"] == "reconcile"]
    assert reconciles and all(s["parent_id"] == f"0x{request_span}" for s in reconciles)
    for index in (1, 2):
        run_traceparent = tracing.run_traceparent(annotated, uid, index)
        assert run_traceparent is not None
        [run] = [s for s in spans if s["name"] == f"run {index}"]
        assert (
            run["context"]["span_id"] == f"0x{run_traceparent.split('-')[2]}"
            and run["parent_id"] == f"0x{request_span}"
        )
    api_spans = spans_in(tmp_path / "api.log", trace_id)
    assert any(s["context"]["span_id"] == f"0x{request_span}" for s in api_spans), "the request's span was exported"


def spans_in(log: Path, trace_id: str, until: str | None = None) -> list[dict[str, Any]]:
    """The spans of trace `trace_id` the console exporter wrote to `log` (JSON objects among log lines); none
    until one named `until` is there."""
    text = log.read_text(errors="replace")
    spans = []
    for match in re.finditer(r"^\{\n.*?^\}$", text, re.MULTILINE | re.DOTALL):
        try:
            span = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(span, dict) and span.get("context", {}).get("trace_id") == f"0x{trace_id}":
            spans.append(span)
    if until is not None and not any(s.get("name") == until for s in spans):
        return []
    return spans


def test_promtool_unit_tests_of_the_chart_s_alerts_pass(helm: Path, checker: Path, tmp_path: Path) -> None:  # noqa: F811
    [rule] = [
        d
        for d in documents(render(helm, "monitoring.prometheusRule.enabled=true").stdout)
        if d["kind"] == "PrometheusRule"
    ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    checked_rules = subprocess.run(
        [str(checker), "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True
    )
    assert checked_rules.returncode == 0, checked_rules.stdout + checked_rules.stderr
    done = promtool.run_rule_tests(checker, tmp_path / RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_monitoring_objects_are_off_by_default_and_the_dashboard_is_json(helm: Path) -> None:  # noqa: F811
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents(render(helm).stdout)}
    assert not {k for k in kinds if k[0] in ("PrometheusRule", "ServiceMonitor") or k[1].endswith("-dashboard")}
    [dashboard] = [
        d
        for d in documents(render(helm, "monitoring.dashboard.enabled=true").stdout)
        if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["schedexec.json"])["panels"]
    exprs = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    for metric in ("schedexec_executions_finished_total", "schedexec_api_requests_total", "schedexec_run_slots_in_use"):
        assert metric in exprs
