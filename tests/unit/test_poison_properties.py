"""Proof by generated input (issue 24): no execution the API server admits, and nothing a run leaves behind,
breaks the operator's decisions or the status it writes.

The table-driven tests in test_decisions.py show the rules on the cases someone thought of. Here Hypothesis
writes the cases: specs derived from the CRD's own schema (tests.unit.strategies), and termination messages,
exit codes and logs of every kind a component can produce. Each execution is driven through a simulated
sequence of reconciles, as the reconciler does it: observe the run (`runs.observe` of its pod, the message as
the kubelet reports it, and the log for a framed outcome), `decide` on a fake clock, write
`status_document(decision.status)` and read it back as the next reconcile would. The properties are what users rely on:

- nothing raises: an exception in `observe`, `decide` or the status write is an execution stuck for good (its
  reconcile fails the same way on every retry) or a watch that stops;
- every step ends the execution or leaves it in a documented wait (Waiting until nextRunAt, Pending for a run
  slot, Running no longer than its overdue moment), and past its deadline plus the overdue grace it has ended;
- every status written is one the API server stores: it encodes as UTF-8, matches the CRD's status schema,
  and stays under MAX_STATUS_BYTES.

Inputs are drawn with `data.draw` rather than given as arguments: the schemathesis pytest plugin (installed
for the REST API's tests) blanks the arguments in Hypothesis' failure report, but not the draws.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any, cast

import jsonschema  # type: ignore[import-untyped]  # no stubs; only its Draft4Validator is used
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from schedexec import decisions, manifests, models, reconciler, runs
from schedexec.models import Phase
from tests.unit import builders, strategies
from tests.unit.builders import POD_DEFAULTS, POLICY, T0

MAX_STATUS_BYTES = 512 * 1024
"""The largest status (its UTF-8 JSON) an execution may write. etcd refuses an object over 1.5 MiB, and every
watcher of executions (the operator, the REST API, kubectl -w) receives the whole object on each change; the
spec (args up to 200 KiB) and metadata share that budget. A third of it for the status leaves room for one
copy of the largest value a run may write (a 256 KiB decompressed envelope), not several."""

MAX_STEPS = 12
"""Reconciles simulated per execution (then the clock jumps past the deadline for a last one)."""

POLICIES = (
    POLICY,
    builders.policy(min_interval_seconds=1, log_tail_in_status=True, inline_result_bytes=1024),
    builders.policy(min_interval_seconds=30, overdue_grace_seconds=0, run_retention_seconds=0),
)

STATUS_SCHEMA = jsonschema.Draft4Validator(strategies.status_schema())
"""The CRD's status schema, as the API server checks a status write (x-kubernetes-* keys play no part here)."""


def test_the_generators_mirror_the_crd_and_the_operator() -> None:
    """The CEL mirror covers every rule that applies on create, and the constants the strategies repeat agree."""
    rules = strategies.spec_schema()["x-kubernetes-validations"]
    on_create = {rule["rule"] for rule in rules if "oldSelf" not in rule["rule"]}
    assert on_create == strategies.CEL_RULES_ON_CREATE, "a CEL rule changed: update strategies.admitted_by_cel"
    assert (strategies.KIND, strategies.VERSION) == (models.KIND, models.VERSION)
    assert strategies.RUN_CONTAINER == manifests.CONTAINER


# --- (a) observing a finished run ------------------------------------------------------------------------


@settings(deadline=None, max_examples=500)
@given(data=st.data())
def test_observing_a_run_never_raises_whatever_its_container_wrote(data: st.DataObject) -> None:
    outputs = data.draw(st.lists(strategies.component_outputs(), min_size=1, max_size=3), label="outputs")
    condition = data.draw(st.sampled_from(["Complete", "Failed"]), label="condition")
    reason = data.draw(st.sampled_from(strategies.JOB_FAILURE_REASONS), label="reason")
    pods = [
        strategies.terminated_pod(output, f"sx1-r1-{i}", f"2026-11-23T12:00:0{i}Z", reported=False)
        for i, output in enumerate(outputs)
    ]
    observed = runs.observe(strategies.job(condition, reason, failed=len(pods)), pods)
    assert observed.state.finished
    assert (observed.envelope, observed.envelope_problem, observed.logged).count(None) >= 2


# --- (b) the decision loop -------------------------------------------------------------------------------


class _PodLog:
    """The one API call `Reconciler._read_logged` makes: the run pod's log."""

    def __init__(self, log: str) -> None:
        self.log = log

    async def pod_log(self, *_: Any, **__: Any) -> str:
        return self.log


def read_logged(observed: runs.RunObservation, log: str, policy: decisions.Policy) -> runs.RunObservation:
    """What the reconciler makes of a framed outcome: the real `_read_logged` on a pod whose log is `log`."""
    cluster, nothing = cast(Any, _PodLog(log)), cast(Any, None)
    reading = reconciler.Reconciler(cluster, nothing, nothing, policy, POD_DEFAULTS, wake=lambda _: None)
    return asyncio.run(reading._read_logged("ns", observed))


def observe_run(
    data: st.DataObject, execution: models.ScheduledExecution, now: datetime, policy: decisions.Policy
) -> runs.RunObservation:
    """The current run as the cluster shows it now: finished with a generated output, active, or gone."""
    if execution.status.current_run is None:
        return runs.MISSING
    kind = data.draw(st.sampled_from(["finished", "finished", "finished", "active", "active", "gone"]), label="run")
    if kind == "gone":
        return runs.MISSING
    if kind == "active":
        return runs.observe(strategies.job(), data.draw(strategies.active_pods(now), label="pods"))
    output = data.draw(strategies.run_outputs(), label="output")
    job = data.draw(strategies.finished_jobs(output), label="job")
    observed = runs.observe(job, [strategies.terminated_pod(output)])
    return observed if observed.logged is None else read_logged(observed, output.log, policy)


def biggest_fields(document: dict[str, Any]) -> str:
    sizes = {
        key: len(json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")) for key, value in document.items()
    }
    return ", ".join(f"{key} {size}" for key, size in sorted(sizes.items(), key=lambda item: -item[1])[:4])


def write_and_read_back(body: dict[str, Any], decision: decisions.Decision) -> models.ScheduledExecution:
    """Write the decision's status as the reconciler does, check the API server would store it, and read the
    execution back as the next reconcile does."""
    document = reconciler.status_document(decision.status)
    encoded = json.dumps(document, ensure_ascii=False).encode("utf-8")
    assert len(encoded) <= MAX_STATUS_BYTES, f"the status is {len(encoded)} bytes: {biggest_fields(document)}"
    STATUS_SCHEMA.validate(document)
    return models.ScheduledExecution.model_validate({**body, "status": json.loads(encoded)})


def check_end_or_documented_wait(
    execution: models.ScheduledExecution,
    decision: decisions.Decision,
    now: datetime,
    slot_free: bool,
    policy: decisions.Policy,
) -> None:
    status, grace = decision.status, timedelta(seconds=policy.overdue_grace_seconds)
    phase = status.phase
    assert phase is not None
    if status.deadline is not None and now >= status.deadline + grace:
        assert phase.finished, f"{phase} at {now}, past the deadline {status.deadline} and the overdue grace"
    if phase.finished:
        return
    if phase is Phase.WAITING:
        assert status.next_run_at is not None and decision.wake_at is not None
        assert decision.wake_at <= status.next_run_at
    elif phase is Phase.PENDING:
        assert decision.queued and not slot_free, "Pending only while queued for a run slot"
    else:
        assert phase is Phase.RUNNING and status.current_run is not None
        overdue = status.current_run.started_at + timedelta(seconds=execution.spec.run_timeout) + grace
        assert decision.wake_at is not None and decision.wake_at <= overdue


def ending(status: models.ScheduledExecutionStatus) -> str:
    """The reason an execution ended, for Hypothesis' statistics (--hypothesis-show-statistics)."""
    return "Done" if status.error is None else status.error.reason[:30]


def advance(data: st.DataObject, now: datetime, decision: decisions.Decision) -> datetime:
    """The fake clock: to the moment the decision asked to be woken, or on by any amount."""
    how = data.draw(st.sampled_from(["wake", "wake", "seconds", "hours", "days"]), label="clock")
    if how == "wake" and decision.wake_at is not None:
        return max(now, decision.wake_at)
    most = {"wake": 60, "seconds": 60, "hours": 7200, "days": 8 * 86400}[how]
    return now + timedelta(seconds=data.draw(st.integers(0, most), label="seconds"))


@settings(deadline=None, max_examples=600, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_admitted_execution_ends_or_waits_as_documented_and_writes_storable_status(data: st.DataObject) -> None:
    body = strategies.execution_body(data.draw(strategies.specs(), label="spec"))
    execution = models.ScheduledExecution.model_validate(body)  # the CRD admitted it: the models must read it
    policy = data.draw(st.sampled_from(POLICIES), label="policy")
    now = T0 + timedelta(seconds=data.draw(st.integers(0, 10), label="first seen"))
    for step in range(MAX_STEPS):
        run = observe_run(data, execution, now, policy)
        slot_free = data.draw(st.sampled_from([True, True, False]), label="slot free")
        note(f"step {step} at {now}: run {run.state}, slot free {slot_free}")
        decision = decisions.decide(execution, run, now, slot_free, policy)
        note(f"  -> {decision.status.phase}, wake at {decision.wake_at}")
        execution = write_and_read_back(body, decision)
        check_end_or_documented_wait(execution, decision, now, slot_free, policy)
        if execution.status.phase is not None and execution.status.phase.finished:
            later = advance(data, now, decision)  # and it stays ended, until its TTL deletes it
            after = decisions.decide(execution, observe_run(data, execution, later, policy), later, True, policy)
            write_and_read_back(body, after)
            assert after.status.phase is execution.status.phase
            event(f"ended {execution.status.phase} after {step + 1} steps: {ending(execution.status)}")
            return
        now = advance(data, now, decision)
    deadline = execution.status.deadline
    assert deadline is not None
    past = max(now, deadline + timedelta(seconds=policy.overdue_grace_seconds)) + timedelta(seconds=1)
    slot_free = data.draw(st.booleans(), label="slot free")
    decision = decisions.decide(execution, observe_run(data, execution, past, policy), past, slot_free, policy)
    execution = write_and_read_back(body, decision)
    check_end_or_documented_wait(execution, decision, past, slot_free, policy)
    assert decision.status.phase is not None and decision.status.phase.finished
    event(f"ended {decision.status.phase} past the deadline: {ending(decision.status)}")
