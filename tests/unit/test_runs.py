"""How a run's Job and pods are read back (runs.observe)."""

from __future__ import annotations

from typing import Any

from schedexec import manifests, runs
from schedexec.runs import RunState
from schedexec_runner import envelope


def job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {"type": t, "status": "True", "reason": r, "message": f"{r} happened"} for t, r in conditions
            ]
        }
    }


def pod(exit_code: int, message: str, finished: str = "2026-01-01T00:00:01Z") -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "containerStatuses": [
                {
                    "name": manifests.CONTAINER,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "message": message,
                            "reason": "Error" if exit_code else "Completed",
                            "finishedAt": finished,
                        }
                    },
                }
            ]
        },
    }


def test_observing_jobs() -> None:
    assert runs.observe(None, []) == runs.MISSING
    assert runs.observe(job(), []).state is RunState.ACTIVE
    done = runs.observe(job(("Complete", "")), [pod(0, envelope.encode(envelope.done(5)))])
    assert done.state is RunState.SUCCEEDED and done.envelope == envelope.Done(5) and done.exit_code == 0
    garbage = runs.observe(job(("Complete", "")), [pod(0, "nope")])
    assert garbage.envelope is None and garbage.envelope_problem is not None


def test_a_failed_job_reports_the_newest_pods_message() -> None:
    failed = runs.observe(
        job(("Failed", "BackoffLimitExceeded"))
        | {"status": {**job(("Failed", "BackoffLimitExceeded"))["status"], "failed": 2}},
        [pod(1, "first try", "2026-01-01T00:00:01Z"), pod(2, "second try", "2026-01-01T00:00:09Z")],
    )
    assert failed.state is RunState.FAILED and failed.failure_reason == "BackoffLimitExceeded"
    assert failed.attempts == 2, "the Job controller's count of pods that ran"
    assert failed.exit_code == 2 and failed.log_tail == "second try", "the newest pod's output, kept apart"
    assert "second try" not in failed.failure_message, "component output is not in the failure message"
