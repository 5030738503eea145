"""The XSOAR integration context between the runs of a sequence: a run's schedule envelope carries it, the
decision keeps it in a Secret owned by the execution (manifests.xsoar_context_secret), written before the
status that schedules the next run (reconciler.keep_context), which mounts it read-only, optional
(manifests.job_manifest). It may hold tokens: never in the status, an event, a Decision's repr or the
operator's log."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schedexec import kube, manifests, models, reconciler
from schedexec.decisions import decide
from schedexec_runner import contract, envelope
from tests.unit import test_adoption
from tests.unit.builders import POLICY, at, execution, finished, running
from tests.unit.test_controller import RUNNING_A1, FakeCluster, body, controller, jn, job, run_pod

TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=16, max_size=40)
CONTEXT_MOUNT = "/var/run/schedexec/xsoar-context"


def context_of(secret: dict[str, Any]) -> Any:
    (text,) = secret["data"].values()
    return json.loads(base64.b64decode(text))


# --- the decision -------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=50)
@given(token=TOKENS, command=st.none() | st.just("cape-task-poll"))
def test_a_schedules_context_goes_into_the_executions_secret_and_nowhere_else(token: str, command: str | None) -> None:
    ex = execution(running(1))
    context = {"auth_info": {"token": token, "valid_until": 1767225600}}
    d = decide(
        ex, finished(envelope.schedule(60, {"task_id": "1"}, command=command, context=context)), at(5), True, POLICY
    )
    assert d.status.phase == models.Phase.WAITING and d.status.next_args == {"task_id": "1"}
    secret = d.context_secret
    assert secret is not None and context_of(secret) == context
    meta = ex.metadata
    assert secret["type"] == manifests.XSOAR_CONTEXT_TYPE == "schedexec.io/xsoar-context"
    assert secret["metadata"]["name"] == f"{meta.name}-{manifests.execution_tag(meta.uid)}-xsoar-context"
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": models.API_VERSION, "kind": models.KIND, "name": meta.name, "uid": meta.uid}
    ]
    shown = json.dumps(reconciler.status_document(d.status)) + json.dumps([e.message for e in d.events])
    assert token not in shown, "the status and the events never hold the context"
    assert token not in repr(d)


def test_a_schedule_that_leaves_the_context_unchanged_writes_no_secret() -> None:
    d = decide(execution(running(1)), finished(envelope.schedule(60, {})), at(5), True, POLICY)
    assert d.status.phase == models.Phase.WAITING and d.context_secret is None


def test_a_schedule_past_max_runs_ends_the_sequence_and_keeps_no_context() -> None:
    ex = execution(running(2), maxRuns=2)
    d = decide(ex, finished(envelope.schedule(60, {}, context={"token": "t"})), at(5), True, POLICY)
    assert d.status.phase == models.Phase.FAILED and d.context_secret is None


# --- the next run mounts it ------------------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [None, "creds"])
def test_every_run_mounts_the_context_secret_read_only_and_optional(credentials: str | None) -> None:
    ex = test_adoption.execution(credentials=credentials)
    pod = test_adoption.manifest_of(ex, 2)["spec"]["template"]["spec"]
    name = manifests.xsoar_context_name(ex.metadata)
    assert {"name": "xsoar-context", "secret": {"secretName": name, "optional": True}} in pod["volumes"]
    (container,) = pod["containers"]
    assert {"name": "xsoar-context", "mountPath": CONTEXT_MOUNT, "readOnly": True} in container["volumeMounts"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env[contract.XSOAR_CONTEXT_FILE] == f"{CONTEXT_MOUNT}/context.json" == contract.DEFAULT_XSOAR_CONTEXT_FILE
    key = manifests.xsoar_context_secret(ex, {})["data"]
    assert list(key) == ["context.json"], "the Secret's key is the file the run reads"


def test_a_job_with_the_context_mount_as_made_is_adopted_and_one_with_another_is_not() -> None:
    ex = test_adoption.execution()
    expected = test_adoption.manifest_of(ex)
    assert manifests.made_for(test_adoption.created(expected), expected) is None
    for change in (
        lambda v: v["secret"].update(secretName="someone-elses"),
        lambda v: v["secret"].update(optional=False),
        lambda v: v.update(secret=None, emptyDir={}),
    ):
        planted = test_adoption.created(expected)
        (volume,) = (v for v in planted["spec"]["template"]["spec"]["volumes"] if v["name"] == "xsoar-context")
        change(volume)
        assert manifests.made_for(planted, expected) is not None
    writable = test_adoption.created(expected)
    (mount,) = (
        m for m in writable["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] if m["name"] == "xsoar-context"
    )
    mount["readOnly"] = False
    assert manifests.made_for(writable, expected) is not None


# --- the reconciler: the Secret before the status ---------------------------------------------------------------


class SecretApi:
    """kube.Api as reconciler.keep_context reaches it: Secrets by name, created or replaced."""

    def __init__(self, calls: list[tuple[str, Any]], stored: dict[str, dict[str, Any]] | None = None) -> None:
        self.calls, self.stored = calls, stored if stored is not None else {}

    async def call(self, method: str, url: str, payload: Any = None, tolerate: Any = (), **_: Any) -> kube.Answer:
        assert url.startswith("/api/v1/namespaces/ns/secrets"), url
        self.calls.append((f"{method} secret", payload["metadata"]["name"]))
        name = payload["metadata"]["name"]
        if method == "post" and name in self.stored:
            assert 409 in tolerate
            return kube.Answer(409, {"reason": "AlreadyExists"})
        assert method == "post" or (method == "put" and url.endswith(f"/{name}")), (method, url)
        self.stored[name] = payload
        return kube.Answer(201 if method == "post" else 200, payload)


class RecordingCluster(FakeCluster):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    async def post_event(self, execution: models.ScheduledExecution, type_: str, reason: str, message: str) -> None:
        self.messages.append(message)
        await super().post_event(execution, type_, reason, message)


def reconcile_a_finished_run(cluster: FakeCluster, outcome: dict[str, Any]) -> None:
    c = controller(cluster)
    c.execution_event(None, body("a") | {"status": RUNNING_A1})
    done = job(jn("a", 1), "a") | {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    c.job_event("ADDED", done)
    message = envelope.encode(outcome)
    statuses = [{"name": "run", "state": {"terminated": {"exitCode": 0, "message": message}}}]
    c.pod_event("ADDED", run_pod("a-r1-x", jn("a", 1), "a", phase="Succeeded", containerStatuses=statuses))
    asyncio.run(c.reconciler.reconcile("ns/a"))


@pytest.mark.parametrize("kept_before", [False, True])
def test_the_context_secret_is_written_before_the_status_that_schedules_the_next_run(
    kept_before: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Created, or replaced when there (the previous run's, or this run's written before a crash): never read."""
    token = "tok-3f1c9a7e5b2d4c6a8e0f"
    name = manifests.owned_name("a", "uid-a", "xsoar-context")
    cluster = RecordingCluster()
    stored = {name: {"data": {"context.json": "e30="}}} if kept_before else {}
    cluster.api = SecretApi(cluster.calls, stored)  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG)
    reconcile_a_finished_run(cluster, envelope.schedule(30, {"task": 1}, context={"token": token}))
    writes = [call for call in cluster.calls if call[0] in ("post secret", "put secret", "write_status")]
    expected = [("post secret", name), ("put secret", name)] if kept_before else [("post secret", name)]
    assert writes == [*expected, ("write_status", "Waiting")]
    assert context_of(stored[name]) == {"token": token}
    assert token not in json.dumps(cluster.latest["a"]), "not in the execution"
    assert not [m for m in cluster.messages if token in m], "not in an event"
    assert token not in caplog.text, "not in the operator's log"


def test_a_run_that_leaves_the_context_unchanged_touches_no_secret() -> None:
    cluster = FakeCluster()
    cluster.api = SecretApi(cluster.calls)  # type: ignore[attr-defined]
    reconcile_a_finished_run(cluster, envelope.schedule(30, {"task": 1}))
    assert ("write_status", "Waiting") in cluster.calls
    assert not [call for call in cluster.calls if "secret" in call[0]]


def test_a_cancelled_sequence_keeps_no_context() -> None:
    """A cancelled sequence has no next run: nothing to write (a Secret that could not be written must not hold
    the end up)."""
    ex = execution(running(1), cancel=True)
    d = decide(ex, finished(envelope.schedule(60, {"t": 1}, context={"token": "x" * 20})), at(5), True, POLICY)
    assert d.status.phase == models.Phase.CANCELLED
    assert d.context_secret is None


class RefusingSecretApi(SecretApi):
    """The API server refuses the context Secret's write with `status` (the fence, RBAC, or a Secret of another
    type under its name: 403/422), or fails it (500)."""

    def __init__(self, calls: list[tuple[str, Any]], status: int) -> None:
        super().__init__(calls)
        self.status = status

    async def call(self, method: str, url: str, payload: Any = None, tolerate: Any = (), **_: Any) -> kube.Answer:
        self.calls.append((f"{method} secret", payload["metadata"]["name"]))
        raise kube.APIError({"message": "denied by schedexec-operator-secrets"}, status=self.status)


@pytest.mark.parametrize("status", [403, 422])
def test_a_refused_context_write_never_holds_the_sequence_up(status: int, caplog: pytest.LogCaptureFixture) -> None:
    cluster = FakeCluster()
    cluster.api = RefusingSecretApi(cluster.calls, status)  # type: ignore[attr-defined]
    token = "tok-refused-7c1e9a3b5d"
    reconcile_a_finished_run(cluster, envelope.schedule(30, {"task": 1}, context={"token": token}))
    assert ("write_status", "Waiting") in cluster.calls, "the sequence goes on without the new context"
    assert "integration context was not kept" in caplog.text and token not in caplog.text


def test_a_failed_context_write_is_retried_before_the_status() -> None:
    cluster = FakeCluster()
    cluster.api = RefusingSecretApi(cluster.calls, 500)  # type: ignore[attr-defined]
    with pytest.raises(kube.APIError):
        reconcile_a_finished_run(cluster, envelope.schedule(30, {"task": 1}, context={"token": "t" * 20}))
    assert not [call for call in cluster.calls if call[0] == "write_status"], "no status before the context"


def test_an_immediate_next_run_finds_its_context_written_before_its_job() -> None:
    """nextRunInSeconds 0 with SCHEDEXEC_MIN_INTERVAL_SECONDS=0: one decision records the schedule and starts the
    next run; its pod mounts the Secret, so the Secret comes first."""
    ex = execution(running(1))
    immediate = dataclasses.replace(POLICY, min_interval_seconds=0)
    d = decide(ex, finished(envelope.schedule(0, {"t": 1}, context={"token": "now"})), at(5), True, immediate)
    assert d.start_run is not None and d.context_secret is not None
    cluster = FakeCluster()
    cluster.api = SecretApi(cluster.calls)  # type: ignore[attr-defined]
    c = controller(cluster)
    asyncio.run(c.reconciler.apply(ex, d, at(5)))
    order = [call[0] for call in cluster.calls if call[0] in ("post secret", "create_job")]
    assert order == ["post secret", "create_job"]
