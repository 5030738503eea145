"""The store: compact execution bodies (what goes in comes out, and no reader can change what is kept), and
which Jobs it takes for an execution's run."""

from __future__ import annotations

from typing import Any

import pytest

from schedexec import manifests, models
from schedexec.store import CompactBodies, Store


def test_a_kept_body_reads_back_whole_and_a_read_is_a_copy() -> None:
    bodies = CompactBodies()
    body = {"metadata": {"name": "a", "labels": {"x": "ü"}}, "status": {"history": [{"index": 1, "result": None}]}}
    bodies["ns/a"] = body
    assert bodies["ns/a"] == body and "ns/a" in bodies and list(bodies) == ["ns/a"] and len(bodies) == 1
    bodies["ns/a"]["status"]["history"].clear()
    assert bodies["ns/a"] == body
    assert bodies.get("ns/b") is None
    del bodies["ns/a"]
    assert "ns/a" not in bodies and len(bodies) == 0


def job(name: str, owner_uid: str) -> dict[str, Any]:
    owner = {"apiVersion": models.API_VERSION, "kind": models.KIND, "name": "a", "uid": owner_uid}
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"job-{name}", "ownerReferences": [owner]}}


EXECUTION = {"metadata": {"name": "a", "namespace": "ns", "uid": "uid-2"}, "status": {"phase": "Waiting", "runs": 1}}


@pytest.mark.parametrize(
    ("name", "owner", "in_progress"),
    [
        (manifests.job_name("a", "uid-2", 2), "uid-2", True),  # run 2's Job, made before a crash
        ("a-r2", "uid-2", True),  # ... by an operator before the upgrade (the legacy name)
        (manifests.job_name("a", "uid-2", 3), "uid-2", False),  # not the next run's
        (manifests.job_name("a", "uid-1", 2), "uid-1", False),  # the Job of the execution a was before
        ("a-r2", "uid-1", False),  # ... under the legacy name: another uid's, never this one's run
    ],
)
def test_a_next_runs_job_under_either_name_is_a_run_in_progress_if_this_execution_owns_it(
    name: str, owner: str, in_progress: bool
) -> None:
    store = Store()
    store.job_changed("ADDED", job(name, owner))
    assert store.run_in_progress(EXECUTION) is in_progress
