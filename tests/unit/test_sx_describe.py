"""`kubectl sx describe`: an execution's story rendered from its documents (schedexec.sx.describe)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings

from schedexec.sx.describe import describe, history_rows
from tests.unit import strategies

NOW = datetime(2026, 12, 7, 8, 0, 0, tzinfo=UTC)

FAILED = {
    "metadata": {"name": "shop-fail", "namespace": "team-a", "creationTimestamp": "2026-12-07T07:58:00Z", "uid": "u"},
    "spec": {
        "component": {"image": "ghcr.io/schedexec/test-component:dev"},
        "method": "countdown",
        "args": {"left": 1, "secret-looking": "x" * 500},
        "credentialsSecretRef": {"name": "shop-credentials"},
        "timeoutSeconds": 120,
        "runTimeoutSeconds": 60,
    },
    "status": {
        "phase": "Failed",
        "runs": 2,
        "startedAt": "2026-12-07T07:58:01Z",
        "completedAt": "2026-12-07T07:59:30Z",
        "deadline": "2026-12-07T08:00:01Z",
        "error": {"reason": "ShopUnavailable", "message": "the shop answered 503"},
        "conditions": [
            {"type": "Succeeded", "status": "False", "reason": "ShopUnavailable", "message": "the shop answered 503"},
            {"type": "Finished", "status": "True", "reason": "Failed", "message": ""},
        ],
        "history": [
            {
                "index": 1,
                "outcome": "Scheduled",
                "startedAt": "2026-12-07T07:58:01Z",
                "finishedAt": "2026-12-07T07:58:04Z",
                "exitCode": 0,
            },
            {
                "index": 2,
                "outcome": "Error",
                "startedAt": "2026-12-07T07:59:10Z",
                "finishedAt": "2026-12-07T07:59:30Z",
                "reason": "ShopUnavailable",
                "method": "fail",
                "attempts": 2,
                "dueAt": "2026-12-07T07:59:05Z",
            },
        ],
    },
}
EVENTS = [
    {"type": "Warning", "reason": "RunFailed", "message": "run 2 failed: ShopUnavailable", "count": 1,
     "lastTimestamp": "2026-12-07T07:59:30Z"},
    {"type": "Normal", "reason": "RunStarted", "message": "created job x-r1", "count": 2,
     "lastTimestamp": "2026-12-07T07:58:01Z"},
]  # fmt: skip


def test_a_failed_run_is_described_with_its_reason_history_and_events() -> None:
    text = describe(FAILED, EVENTS, NOW)
    assert "Phase:        Failed\n" in text
    assert "Reason:       ShopUnavailable\n" in text
    assert "Message:      the shop answered 503\n" in text
    assert "Credentials:  secret/shop-credentials\n" in text
    assert "Limits:       sequence 120s, run 60s, retries 1, max runs 100\n" in text
    history = text[text.index("History:") : text.index("Events:")].splitlines()
    assert history[1].split() == ["RUN", "METHOD", "STARTED", "DURATION", "OUTCOME", "LATENESS", "ATTEMPTS", "REASON"]
    assert history[2].split() == ["1", "countdown", "2026-12-07T07:58:01Z", "3s", "Scheduled", "-", "1", "-"]
    assert history[3].split() == ["2", "fail", "2026-12-07T07:59:10Z", "20s", "Error", "5s", "2", "ShopUnavailable"]
    events = text[text.index("Events:") :].splitlines()
    assert events[1].split()[:3] == ["TYPE", "REASON", "AGE"]
    assert events[2].split()[:4] == ["Normal", "RunStarted", "1m59s", "(x2)"], "oldest first, with its count"
    assert events[3].split()[:3] == ["Warning", "RunFailed", "30s"]


def test_the_args_are_summarised_not_dumped() -> None:
    (line,) = [line for line in describe(FAILED, [], NOW).splitlines() if line.startswith("Args:")]
    assert len(line) < 240 and line.endswith("...")


def test_a_waiting_sequence_shows_its_next_run_and_a_waiting_pod() -> None:
    status = {
        "phase": "Waiting",
        "runs": 1,
        "nextRunAt": "2026-12-07T08:00:42Z",
        "nextMethod": "xsoar-poll",
        "itemsRemaining": 3,
        "partialResult": {"remoteJob": "job-42"},
    }
    text = describe({**FAILED, "status": status}, [], NOW)
    assert "Next run:     2026-12-07T08:00:42Z (in 42s), command xsoar-poll\n" in text
    assert "Remaining:    3 items\n" in text
    assert 'Partial:      {"remoteJob":"job-42"}\n' in text
    assert "Events:  <none>\n" in text
    running = {
        "phase": "Running",
        "currentRun": {
            "index": 1,
            "job": "j-r1",
            "startedAt": "2026-12-07T07:59:00Z",
            "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"},
        },
    }
    text = describe({**FAILED, "status": running}, [], NOW)
    assert "Current run:  1 (job j-r1, running for 1m)\n" in text
    assert "Waiting:      ImagePullBackOff: Back-off pulling image\n" in text


def test_a_large_result_names_its_config_map_and_checksum() -> None:
    status = {"phase": "Succeeded", "resultRef": {"configMap": "cm", "key": "result.json", "bytes": 9, "sha256": "ab"}}
    text = describe({**FAILED, "status": status}, [], NOW)
    assert "Result:       configmap/cm key result.json, 9 bytes, sha256 ab (kubectl sx result)\n" in text


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(strategies.strategy_for(strategies.status_schema()))
def test_any_status_the_crd_admits_is_described(status: dict[str, Any]) -> None:
    text = describe({**FAILED, "status": status}, EVENTS, NOW)
    assert text.startswith("Name:         shop-fail\n")
    assert len(history_rows(status, "m")) == len(status.get("history") or [])
