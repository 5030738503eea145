"""What users hit on a real kubelet: a run whose pod cannot start ends promptly with a clear reason, while it
waits the status says why, and args beyond what an environment variable carries arrive intact (or are refused).

The node agent reports waiting reasons, FailedMount events and unschedulable pods as a kubelet and the
scheduler do. These tests run their own operator with short graces (the defaults are 30 s and 120 s), with
the session's cluster-wide operator stopped meanwhile, so that only theirs acts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from schedexec import models
from schedexec_runner import contract
from tests.cluster.test_operator import IMAGE, execution
from tests.support import LocalCluster, Operator, wait_for

pytestmark = pytest.mark.cluster

GRACE_SECONDS = 3
UNSCHEDULABLE_GRACE_SECONDS = 4


class FastOperator(Operator):
    """The test operator, with short start-failure graces."""

    def start(self) -> None:
        graces = {
            "SCHEDEXEC_START_FAILURE_GRACE_SECONDS": str(GRACE_SECONDS),
            "SCHEDEXEC_UNSCHEDULABLE_GRACE_SECONDS": str(UNSCHEDULABLE_GRACE_SECONDS),
        }
        with mock.patch.dict(os.environ, graces):
            super().start()


@pytest.fixture
def fast_operator(cluster: LocalCluster, without_session_operator: None, tmp_path: Path) -> Iterator[Operator]:
    handle = FastOperator(cluster, tmp_path)
    handle.start()
    yield handle
    handle.stop()


def create(cluster: LocalCluster, namespace: str, body: dict[str, Any]) -> None:
    cluster.custom.create_namespaced_custom_object(models.GROUP, models.VERSION, namespace, models.PLURAL, body)


def waiting_of(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any] | None:
    status = cluster.execution(namespace, name).get("status") or {}
    return (status.get("currentRun") or {}).get("waiting")  # type: ignore[no-any-return]


def no_jobs_left(cluster: LocalCluster, namespace: str) -> bool:
    return not cluster.batch.list_namespaced_job(namespace).items


def test_a_wrong_image_shows_why_it_waits_then_fails_fast_naming_the_image(
    cluster: LocalCluster, fast_operator: Operator, namespace: str
) -> None:
    image = "ghcr.io/acme/does-not-exist:1.0"
    started = time.monotonic()
    create(
        cluster,
        namespace,
        execution("wrong", "getCategories", component={"image": image}, retries=3, runTimeoutSeconds=300),
    )
    waiting = wait_for("the pull failure in status", lambda: waiting_of(cluster, namespace, "wrong"), timeout=30)
    assert waiting["reason"] in ("ErrImagePull", "ImagePullBackOff") and image in waiting["message"]
    body = cluster.execution(namespace, "wrong")
    assert body["status"]["phase"] == "Running"
    succeeded = next(c for c in body["status"]["conditions"] if c["type"] == "Succeeded")
    assert succeeded["status"] == "Unknown" and succeeded["reason"] in ("ErrImagePull", "ImagePullBackOff")
    table = cluster.kubectl("get", "sx", "-n", namespace, "wrong").stdout
    assert "ErrImagePull" in table or "ImagePullBackOff" in table, table
    done = cluster.wait_finished(namespace, "wrong", timeout=60)
    assert time.monotonic() - started < 60, "ends after the grace, not after runTimeoutSeconds (300 s)"
    error = done["status"]["error"]
    assert done["status"]["phase"] == "Failed" and error["reason"] == "ImagePullFailed"
    assert image in error["message"] and "cannot be pulled" in error["message"]
    assert [r["outcome"] for r in done["status"]["history"]] == ["NotStarted"], "retries are not burned"
    # the Event follows the status write (status first, so a crash between them loses no outcome)
    wait_for("the ImagePullFailed event", lambda: "ImagePullFailed" in [e.reason for e in cluster.events(namespace)])
    wait_for("the run's Job to be deleted", lambda: no_jobs_left(cluster, namespace))


def test_an_invalid_image_name_fails_at_once(cluster: LocalCluster, fast_operator: Operator, namespace: str) -> None:
    create(cluster, namespace, execution("invalid", "getCategories", component={"image": "ghcr.io/Acme/Upper:1"}))
    done = cluster.wait_finished(namespace, "invalid", timeout=30)
    assert done["status"]["error"]["reason"] == "ImagePullFailed"
    assert "InvalidImageName" in done["status"]["error"]["message"]
    assert "ghcr.io/Acme/Upper:1" in done["status"]["error"]["message"]


def test_a_missing_credentials_secret_fails_fast_with_config_error_naming_it(
    cluster: LocalCluster, fast_operator: Operator, namespace: str
) -> None:
    create(cluster, namespace, execution("nosecret", "verifyCredentials", credentialsSecretRef={"name": "absent"}))
    done = cluster.wait_finished(namespace, "nosecret", timeout=60)
    error = done["status"]["error"]
    assert error["reason"] == "ConfigError"
    assert 'secret "absent" not found' in error["message"] and "FailedMount" in error["message"]
    assert "spec.credentialsSecretRef names the Secret 'absent'" in error["message"]
    wait_for("the run's Job to be deleted", lambda: no_jobs_left(cluster, namespace))


def test_an_unschedulable_pod_fails_with_the_schedulers_message(
    cluster: LocalCluster, fast_operator: Operator, namespace: str
) -> None:
    create(
        cluster,
        namespace,
        execution("huge", "getCategories", component={"image": IMAGE, "resources": {"requests": {"cpu": "9999"}}}),
    )
    waiting = wait_for("Unschedulable in status", lambda: waiting_of(cluster, namespace, "huge"), timeout=30)
    assert waiting["reason"] == "Unschedulable"
    done = cluster.wait_finished(namespace, "huge", timeout=60)
    assert done["status"]["error"]["reason"] == "Unschedulable"
    assert "Insufficient cpu" in done["status"]["error"]["message"]


def canonical_digest(args: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    ).hexdigest()


def test_args_beyond_what_an_environment_variable_carries_reach_the_component_intact(
    cluster: LocalCluster, fast_operator: Operator, namespace: str
) -> None:
    """~150 KiB of args (an environment string is capped at 128 KiB), applied with kubectl; HOME is /tmp."""
    args = {"blob": "αβγ-" * 20_000, "items": list(range(5000)), "quote": "\"'$(x)`\\n"}
    size = len(json.dumps(args, separators=(",", ":"), ensure_ascii=False).encode())
    assert 128 * 1024 < size <= contract.MAX_ARGS_BYTES
    body = execution("big", "digest", args=args)
    body["metadata"]["namespace"] = namespace
    cluster.apply(body)
    done = cluster.wait_finished(namespace, "big", timeout=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    result = done["status"]["result"]
    assert result["sha256"] == canonical_digest(args)
    assert result["home"].endswith("/tmp")


def test_args_over_the_limit_fail_before_any_job_is_created(
    cluster: LocalCluster, fast_operator: Operator, namespace: str
) -> None:
    create(cluster, namespace, execution("toobig", "digest", args={"blob": "x" * (contract.MAX_ARGS_BYTES + 1)}))
    done = cluster.wait_finished(namespace, "toobig", timeout=30)
    error = done["status"]["error"]
    assert error["reason"] == "ArgsTooLarge"
    assert f"the limit is {contract.MAX_ARGS_BYTES} bytes" in error["message"]
    assert done["status"]["runs"] == 0 and not done["status"].get("history")
    assert no_jobs_left(cluster, namespace)
