"""bench/select_model_breakdown.py's pure stage computation, from recorded inputs.

The bench's numbers are only as good as the marks it takes from watches,
spans, logs and the shop's calls; these tests pin down which event makes
which mark (the first matching one, the reconcile after the kubelet
reported, the shop call of this run and not an earlier one) and how
stages and their summary follow from the marks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import select_model_breakdown as bd

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTHER = "00000000000000000000000000000001"


def pod(t: float, *conditions: str, terminated: bool = False) -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0}} if terminated else {"waiting": {"reason": "ContainerCreating"}}
    return {
        "t": t,
        "type": "MODIFIED",
        "object": {
            "metadata": {"name": "run-1-abcde"},
            "status": {
                "conditions": [{"type": c, "status": "True"} for c in conditions]
                + [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "run", "state": state}],
            },
        },
    }


# As a watch delivered them for one run pod of the recorded bench (times relative to the POST).
POD_EVENTS = [
    {"t": 0.31, "type": "ADDED", "object": {"metadata": {"name": "run-1-abcde"}, "status": {}}},
    pod(0.33, "PodScheduled"),
    pod(0.95, "PodScheduled", "PodReadyToStartContainers"),
    pod(2.02, "PodScheduled", "PodReadyToStartContainers", terminated=True),
    pod(2.05, "PodScheduled", "PodReadyToStartContainers", terminated=True),
]
LOG = (
    "2026-12-07T12:00:01.104250123Z import time: self [us] | cumulative | imported package\n"
    "2026-12-07T12:00:01.104311000Z import time:       112 |        112 |   _io\n"
    "2026-12-07T12:00:01.530000000Z import time:       900 |      51000 | schedexec_runner.main\n"
)
LOG_START = 1796644801.104250  # 2026-12-07T12:00:01.104250Z


def span(name: str, start: float, end: float, parent: str = "b7ad6b7169203331", trace: str = TRACE) -> dict[str, Any]:
    return {"service": "x", "name": name, "trace_id": trace, "span_id": f"{int(start * 1000):016x}",
            "parent_id": parent, "start": start, "end": end}  # fmt: skip


def test_log_stamp_reads_containerds_nanosecond_stamps() -> None:
    assert bd.log_stamp(LOG.splitlines()[0]) == pytest.approx(LOG_START, abs=1e-6)
    assert bd.log_stamp("no stamp here") is None
    assert bd.log_stamp("2026-13-45T99:00:00Z bad") is None


def test_pod_marks_take_the_first_event_that_shows_each_step_and_the_logs_first_line() -> None:
    marks = bd.pod_marks(POD_EVENTS, LOG)
    assert marks == {
        "pod_scheduled": 0.33,
        "sandbox_ready": 0.95,
        "container_started": pytest.approx(LOG_START, abs=1e-6),
        "kubelet_reported": 2.02,
    }


def test_pod_marks_of_a_pod_not_yet_started_are_missing_not_invented() -> None:
    assert bd.pod_marks(POD_EVENTS[:2], "") == {
        "pod_scheduled": 0.33,
        "sandbox_ready": None,
        "container_started": None,
        "kubelet_reported": None,
    }


def select_model_marks(shop_calls: list[float]) -> dict[str, float | None]:
    execution = [
        {"t": 0.12, "type": "ADDED", "object": {"status": {}}},
        {"t": 0.29, "type": "MODIFIED", "object": {"status": {"phase": "Running"}}},
        {"t": 3.40, "type": "MODIFIED", "object": {"status": {"phase": "Succeeded"}}},
    ]
    complete = {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    jobs = [
        {"t": 0.30, "type": "ADDED", "object": {}},
        {"t": 2.03, "type": "MODIFIED", "object": {"status": {"succeeded": 0}}},
        {"t": 3.05, "type": "MODIFIED", "object": complete},
    ]
    spans = [
        span("POST /v2/components/{component}/versions/{version}/select-model", 0.05, 0.13, parent=""),
        span("reconcile", 0.13, 0.29),
        span("reconcile", 2.10, 2.12),  # saw the pod terminated, but the Job is not Complete yet: nothing to do
        span("reconcile", 3.048, 3.38),  # wrote the status: saw the Job Complete 2 ms before the bench's watch
        span("reconcile", 3.45, 3.47),  # after the status was written
        span("reconcile", 3.39, 3.391, trace=OTHER),  # another execution's
    ]
    pod_marks = {"pod_scheduled": 0.33, "sandbox_ready": 0.95, "container_started": 1.2, "kubelet_reported": 2.02}
    client = {"post_sent": 0.0, "poll_answered": 3.45}
    return bd.select_model_marks(client, spans, TRACE, execution, jobs, pod_marks, shop_calls)


def test_select_model_marks_follow_one_request_through_every_stage() -> None:
    marks = select_model_marks(shop_calls=[-5.0, 1.8, 9.0])  # an earlier run's call, this run's, a later one's
    assert marks == {
        "post_sent": 0.0,
        "post_received": 0.05,
        "execution_created": 0.12,
        "job_created": 0.30,
        "pod_scheduled": 0.33,
        "sandbox_ready": 0.95,
        "container_started": 1.2,
        "component_returned": 1.8,
        "kubelet_reported": 2.02,
        "job_complete": 3.05,
        "operator_observed": 3.048,
        "status_written": 3.40,
        "poll_answered": 3.45,
    }
    seconds = bd.stages(marks, bd.SELECT_MODEL_STAGES)
    assert list(seconds) == [label for _, _, label in bd.SELECT_MODEL_STAGES]
    assert sum(v for v in seconds.values() if v is not None) == pytest.approx(3.45)
    assert seconds["container exit → kubelet reported"] == pytest.approx(0.22)
    assert seconds["Job controller: pod succeeded → Job Complete"] == pytest.approx(1.03)
    assert seconds["Job Complete → operator reconciles"] == pytest.approx(-0.002)
    assert seconds["operator: reconcile → status written"] == pytest.approx(0.352)


def test_a_run_whose_shop_call_was_not_seen_has_that_stage_missing() -> None:
    seconds = bd.stages(select_model_marks(shop_calls=[-5.0]), bd.SELECT_MODEL_STAGES)
    assert seconds["Python start, runner, component → component returned"] is None
    assert seconds["container exit → kubelet reported"] is None
    assert seconds["kubelet: scheduled → sandbox ready"] == pytest.approx(0.62)


def test_raw_job_marks_end_at_the_jobs_complete_condition() -> None:
    jobs = [
        {"t": 0.02, "type": "ADDED", "object": {"status": {}}},
        {"t": 2.10, "type": "MODIFIED", "object": {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}},
    ]
    pod_marks = {"pod_scheduled": 0.04, "sandbox_ready": 0.7, "container_started": 0.9, "kubelet_reported": 2.0}
    marks = bd.raw_job_marks(0.0, jobs, pod_marks, [1.5])
    assert marks["job_created"] == 0.02 and marks["component_returned"] == 1.5 and marks["job_complete"] == 2.10
    seconds = bd.stages(marks, bd.RAW_JOB_STAGES)
    assert seconds["Job controller: pod succeeded → Job Complete"] == pytest.approx(0.10)


@given(st.lists(st.lists(st.floats(0, 10), min_size=3, max_size=3), min_size=1, max_size=20))
def test_summary_gives_each_stages_median_and_p90_and_the_largest_median(values: list[list[float]]) -> None:
    order = (("a", "b", "one"), ("b", "c", "two"), ("c", "d", "three"))
    runs = [dict(zip(("one", "two", "three"), v, strict=True)) for v in values]
    result = bd.summary(runs, order)
    for index, label in enumerate(("one", "two", "three")):
        column = sorted(v[index] for v in values)
        assert column[0] <= result["stages"][label]["p50"] <= column[-1]
        assert result["stages"][label]["p90"] >= result["stages"][label]["p50"] or len(column) < 3
        assert result["stages"][label]["count"] == len(values)
    assert result["dominant"] == max(result["stages"], key=lambda label: result["stages"][label]["p50"])
    assert result["complete_runs"] == len(values)


def test_summary_leaves_incomplete_runs_out_of_the_end_to_end_time() -> None:
    order = (("a", "b", "one"), ("b", "c", "two"))
    result = bd.summary([{"one": 1.0, "two": 2.0}, {"one": 1.5, "two": None}], order)
    assert result["stages"]["two"] == {"p50": 2.0, "p90": 2.0, "count": 1}
    assert result["total"] == {"p50": 3.0, "p90": 3.0}
    assert result["dominant"] == "two"


def test_span_tree_nests_children_under_parents_in_start_order() -> None:
    spans = [
        {"service": "api", "name": "POST", "trace_id": TRACE, "span_id": "a", "parent_id": "", "start": 10.0,
         "end": 10.1},
        {"service": "operator", "name": "run 1", "trace_id": TRACE, "span_id": "c", "parent_id": "b", "start": 10.3,
         "end": 12.0},
        {"service": "api", "name": "endpoint", "trace_id": TRACE, "span_id": "b", "parent_id": "a", "start": 10.01,
         "end": 10.09},
        {"service": "operator", "name": "reconcile", "trace_id": TRACE, "span_id": "d", "parent_id": "b",
         "start": 10.2, "end": 10.25},
    ]  # fmt: skip
    assert bd.span_tree(spans).splitlines() == [
        "POST [api] 0 → 100 ms",
        "  endpoint [api] 10 → 90 ms",
        "    reconcile [operator] 200 → 250 ms",
        "    run 1 [operator] 300 → 2000 ms",
    ]


def test_raw_job_from_keeps_the_runs_pod_and_drops_owner_labels_selector_and_trace() -> None:
    run_job = {
        "metadata": {"name": "x-run-1", "ownerReferences": [{"uid": "u"}], "labels": {"schedexec.io/run": "1"}},
        "spec": {
            "backoffLimit": 0,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "c"}},
            "template": {
                "metadata": {
                    "labels": {"batch.kubernetes.io/controller-uid": "c"},
                    "annotations": {"schedexec.io/traceparent": "00-x", "schedexec.io/args": "{}"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "run",
                            "image": "shop",
                            "env": [{"name": "TRACEPARENT", "value": "00-x"}, {"name": "PYTHONPROFILEIMPORTTIME"}],
                        }
                    ],
                    "restartPolicy": "Never",
                },
            },
        },
    }
    raw = bd.raw_job_from(run_job, "raw-1")
    assert raw["metadata"] == {"name": "raw-1", "labels": {"bench": "raw"}}
    assert "selector" not in raw["spec"] and raw["spec"]["backoffLimit"] == 0
    assert raw["spec"]["template"]["metadata"] == {
        "labels": {"bench": "raw"},
        "annotations": {"schedexec.io/args": "{}"},  # the run's args reach it through its annotation
    }
    (container,) = raw["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "shop" and container["env"] == [{"name": "PYTHONPROFILEIMPORTTIME"}]
    assert run_job["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"] == "TRACEPARENT", "not mutated"


def test_with_section_replaces_the_breakdown_and_keeps_the_rest() -> None:
    document = "# Benchmarks\n\n## Throughput\n\nnumbers\n"
    once = bd.with_section(document, f"{bd.SECTION}\n\nfirst\n")
    assert once == f"# Benchmarks\n\n## Throughput\n\nnumbers\n\n{bd.SECTION}\n\nfirst\n"
    assert bd.with_section(once, f"{bd.SECTION}\n\nsecond\n").endswith("numbers\n\n" + f"{bd.SECTION}\n\nsecond\n")
