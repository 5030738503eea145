"""Kueue (docs/kueue.md): an execution labelled kueue.x-k8s.io/queue-name gets its runs' Jobs created suspended
with that label; while a Job is suspended its run is Queued (phase Pending), and the run timeout and the watchdog
count from its admission (the Job unsuspended), while the sequence deadline holds throughout. The adoption check
accepts what Kueue changes on such a Job when it admits it, and nothing more."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedexec import decisions, manifests, models, runs
from schedexec.models import ConditionType, Phase, Reason
from schedexec.runs import RunObservation, RunState
from tests.unit import builders, podtemplates
from tests.unit.builders import POD_DEFAULTS, POLICY, T0, at, run_job
from tests.unit.test_adoption import created, execution, executions

QUEUE = "team-a"
SUSPENDED = RunObservation(RunState.ACTIVE, suspended=True, queue=QUEUE)
ADMITTED = RunObservation(RunState.ACTIVE, queue=QUEUE)


def queued_execution(status: dict[str, Any] | None = None, **spec: Any) -> models.ScheduledExecution:
    """The builders' execution, labelled with the LocalQueue QUEUE."""
    ex = builders.execution(status, **spec)
    return ex.model_copy(
        update={"metadata": ex.metadata.model_copy(update={"labels": {models.KUEUE_QUEUE_LABEL: QUEUE}})}
    )


def labelled(ex: models.ScheduledExecution, queue: str = QUEUE) -> models.ScheduledExecution:
    return ex.model_copy(
        update={"metadata": ex.metadata.model_copy(update={"labels": {models.KUEUE_QUEUE_LABEL: queue}})}
    )


def succeeded(d: decisions.Decision) -> models.Condition:
    return next(c for c in d.status.conditions if c.type == ConditionType.SUCCEEDED)


def then(ex: models.ScheduledExecution, d: decisions.Decision) -> models.ScheduledExecution:
    """`ex` with the status `d` decided."""
    return ex.model_copy(update={"status": d.status})


# --- the Job ---------------------------------------------------------------------------------------------------


def test_a_labelled_execution_makes_suspended_jobs_with_the_queue_label() -> None:
    job = manifests.job_manifest(labelled(execution()), 1, {}, POD_DEFAULTS)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][models.KUEUE_QUEUE_LABEL] == QUEUE
    assert models.KUEUE_QUEUE_LABEL not in job["spec"]["template"]["metadata"]["labels"], "Kueue reads the Job's"


def test_without_the_label_nothing_changes() -> None:
    job = manifests.job_manifest(execution(), 1, {}, POD_DEFAULTS)
    assert "suspend" not in job["spec"]
    assert models.KUEUE_QUEUE_LABEL not in job["metadata"]["labels"]


def admitted_by_kueue(job: dict[str, Any]) -> dict[str, Any]:
    """`job` as Kueue leaves it once it admitted it on a ResourceFlavor with node labels and a toleration, and an
    admission check added a label and an annotation (kueue pkg/podset: Merge)."""
    admitted = copy.deepcopy(job)
    admitted["spec"]["suspend"] = False
    template = admitted["spec"]["template"]
    template["metadata"]["labels"]["kueue.x-k8s.io/podset"] = "main"
    template["metadata"]["annotations"]["provreq.kueue.x-k8s.io/check"] = "ok"
    template["spec"]["nodeSelector"] = {"cloud.example.com/pool": "spot"}
    template["spec"]["tolerations"] = [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}]
    template["spec"]["schedulingGates"] = [{"name": "kueue.x-k8s.io/topology"}]
    return admitted


@pytest.mark.parametrize("suspend", [True, False])
def test_a_queued_job_is_adopted_suspended_or_as_kueue_admitted_it(suspend: bool) -> None:
    expected = manifests.job_manifest(labelled(execution()), 1, {"page": 1}, POD_DEFAULTS)
    job = created(expected)
    job["spec"]["suspend"] = True
    assert manifests.made_for(job, expected) is None
    admitted = admitted_by_kueue(job)
    admitted["spec"]["suspend"] = suspend  # suspended again: Kueue preempted it
    assert manifests.made_for(admitted, expected) is None


def test_kueues_changes_are_refused_on_a_job_that_names_no_queue() -> None:
    expected = manifests.job_manifest(execution(), 1, {"page": 1}, POD_DEFAULTS)
    assert manifests.made_for(created(expected), expected) is None
    assert manifests.made_for(admitted_by_kueue(created(expected)), expected) is not None


def poke(path: tuple[str | int, ...], value: Any) -> Any:
    def change(job: dict[str, Any]) -> None:
        target: Any = job
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


TEMPLATE = ("spec", "template")
CHANGES_NOT_KUEUES = [
    poke((*TEMPLATE, "spec", "containers", 0, "image"), "evil:1"),
    poke((*TEMPLATE, "spec", "hostNetwork"), True),
    poke((*TEMPLATE, "metadata", "labels", manifests.RUN_LABEL), "7"),
    poke((*TEMPLATE, "metadata", "annotations", manifests.ARGS_ANNOTATION), '{"page":2}'),
    poke((*TEMPLATE, "metadata", "labels", "batch.kubernetes.io/job-name"), "other"),
    poke(("metadata", "labels", models.KUEUE_QUEUE_LABEL), "other-queue"),
    poke(("spec", "suspend"), "yes"),
    poke(("spec", "parallelism"), 2),
]
"""Changes no Kueue admission makes: a changed image, host network, a value the operator set, a controller
label's value, another queue, a suspend that is no boolean, more pods."""


@pytest.mark.parametrize("change", CHANGES_NOT_KUEUES)
def test_a_queued_job_changed_otherwise_is_not_adopted(change: Any) -> None:
    expected = manifests.job_manifest(labelled(execution()), 1, {"page": 1}, POD_DEFAULTS)
    job = admitted_by_kueue(created(expected))
    change(job)
    assert manifests.made_for(job, expected) is not None


def test_a_toleration_of_the_operators_own_is_kept_before_kueues() -> None:
    expected = manifests.job_manifest(labelled(execution()), 1, {"page": 1}, POD_DEFAULTS)
    expected["spec"]["template"]["spec"]["tolerations"] = [{"key": "own", "operator": "Exists"}]
    job = admitted_by_kueue(created(expected))
    job["spec"]["template"]["spec"]["tolerations"] = [{"key": "own", "operator": "Exists"}, {"key": "spot"}]
    assert manifests.made_for(job, expected) is None
    job["spec"]["template"]["spec"]["tolerations"] = [{"key": "spot"}, {"key": "own", "operator": "Exists"}]
    assert manifests.made_for(job, expected) is not None, "Kueue appends; it never replaces the Job's own"


def admitted_on(job: dict[str, Any], part: str, key: str, added: Any) -> dict[str, Any]:
    """`job` as Kueue admitted it (admitted_by_kueue), with `added` merged into its pod template's `part`.`key`."""
    admitted = admitted_by_kueue(job)
    target = admitted["spec"]["template"][part]
    if isinstance(added, list):
        target[key] = [*target.get(key, []), *added]
    else:
        target[key] = {**target.get(key, {}), **added}
    return admitted


PLANTED = [
    ("metadata", "annotations", {"container.apparmor.security.beta.kubernetes.io/run": "unconfined"}),
    ("metadata", "annotations", {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}),
    ("metadata", "labels", {"node.kubernetes.io/x": "y"}),
    ("metadata", "labels", {"app.kubernetes.io/managed-by": "someone"}),
    ("metadata", "annotations", {"schedexec.io/other": "x"}),
    ("metadata", "labels", {"bad key!": "x"}),
    ("spec", "nodeSelector", {"kubernetes.io/hostname": "attacker-node"}),
    ("spec", "tolerations", [{"operator": "Exists"}]),
    ("spec", "tolerations", [{"key": "", "operator": "Exists", "effect": "NoSchedule"}]),
]
"""What a planted or patched Job adds beyond what Kueue adds: a label or annotation a template may not set (an
unconfined AppArmor or seccomp profile, Kubernetes', schedexec's, not a key), a node pinned by its hostname, a
toleration of every taint."""


@pytest.mark.parametrize(("part", "key", "added"), PLANTED)
def test_a_queued_job_with_more_than_kueue_adds_is_not_adopted(part: str, key: str, added: Any) -> None:
    expected = manifests.job_manifest(labelled(execution()), 1, {"page": 1}, POD_DEFAULTS)
    job = admitted_on(created(expected), part, key, added)
    assert manifests.made_for(job, expected) is not None


AS_KUEUE_ADMITS = [
    ("spec", "nodeSelector", {"cloud.google.com/gke-nodepool": "batch", "cloud.google.com/gke-spot": "true"}),
    ("spec", "nodeSelector", {"instance-type": "spot", "node.kubernetes.io/instance-type": "m5.large"}),
    ("spec", "nodeSelector", {"topology.kubernetes.io/zone": "eu-west-1a", "kubernetes.io/arch": "arm64"}),
    ("spec", "tolerations", [{"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
    ("spec", "tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists"}]),
    ("metadata", "annotations", {"autoscaling.x-k8s.io/consume-provisioning-request": "job-1-provreq"}),
    ("metadata", "labels", {"kueue.x-k8s.io/tas": "true", "app.kubernetes.io/component": "batch"}),
    ("metadata", "annotations", {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}),
]
"""What Kueue adds on admission: a ResourceFlavor's nodeLabels (a node pool, an instance type, a zone) and
tolerations (with a key), an admission check's podSetUpdates (a ProvisioningRequest's annotations)."""


@pytest.mark.parametrize(("part", "key", "added"), AS_KUEUE_ADMITS)
def test_a_queued_job_as_kueue_admits_it_is_adopted(part: str, key: str, added: Any) -> None:
    expected = manifests.job_manifest(labelled(execution()), 1, {"page": 1}, POD_DEFAULTS)
    job = admitted_on(created(expected), part, key, added)
    assert manifests.made_for(job, expected) is None


# --- observing it -----------------------------------------------------------------------------------------------


def test_a_suspended_job_is_observed_active_and_suspended_with_its_queue() -> None:
    job = created(manifests.job_manifest(labelled(execution()), 1, {}, POD_DEFAULTS))
    job["spec"]["suspend"] = True
    job["status"] = {"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}]}
    seen = runs.observe(job, [])
    assert (seen.state, seen.suspended, seen.queue) == (RunState.ACTIVE, True, QUEUE)
    job["spec"]["suspend"] = False  # admitted: the Job controller drops the Suspended condition a moment later
    seen = runs.observe(job, [])
    assert (seen.state, seen.suspended) == (RunState.ACTIVE, False)


def test_unsuspending_a_job_changes_its_signature_so_the_execution_is_reconciled() -> None:
    job = created(manifests.job_manifest(labelled(execution()), 1, {}, POD_DEFAULTS))
    resumed = copy.deepcopy(job)
    job["spec"]["suspend"] = True
    assert runs.job_signature(job) != runs.job_signature(resumed)


# --- deciding ---------------------------------------------------------------------------------------------------


def test_queued_then_admitted_then_running() -> None:
    ex = queued_execution()
    d = decisions.decide(ex, runs.MISSING, T0, True, POLICY)
    assert d.start_run is not None and d.status.current_run is not None
    assert d.status.phase is Phase.PENDING
    assert (d.status.current_run.queue, d.status.current_run.suspended) == (QUEUE, True)
    condition = succeeded(d)
    assert (condition.status, condition.reason) == ("Unknown", Reason.QUEUED)
    assert condition.message == f"waiting for Kueue to admit run 1's Job {run_job(1)} in LocalQueue {QUEUE}"
    assert [(e.reason, e.posted) for e in d.events] == [(Reason.RUN_STARTED, False), (Reason.QUEUED, True)]

    ex = then(ex, d)
    d = decisions.decide(ex, SUSPENDED, at(30), True, POLICY)
    assert d.status.phase is Phase.PENDING and succeeded(d).reason == Reason.QUEUED
    assert d.events == [], "the Queued event is posted once"

    ex = then(ex, d)
    d = decisions.decide(ex, ADMITTED, at(400), True, POLICY)
    assert d.status.phase is Phase.RUNNING
    assert d.status.current_run is not None and d.status.current_run.admitted_at == at(400)
    assert not d.status.current_run.suspended
    assert succeeded(d).reason == Phase.RUNNING.value
    assert [e.reason for e in d.events] == [Reason.RUN_ADMITTED]

    ex = then(ex, d)
    d = decisions.decide(ex, ADMITTED, at(410), True, POLICY)
    assert d.status.phase is Phase.RUNNING and d.events == []
    assert d.status.current_run is not None and d.status.current_run.admitted_at == at(400), "first seen, kept"


def test_the_watchdog_counts_from_admission_not_from_the_jobs_creation() -> None:
    """runTimeoutSeconds 60, grace 60 (builders' policy: POLICY.overdue_grace_seconds): queued for 500 s, far
    longer than both, the run is not overdue; 120 s after its admission it is."""
    grace = POLICY.overdue_grace_seconds
    ex = queued_execution(timeoutSeconds=3600, runTimeoutSeconds=60)
    ex = then(ex, decisions.decide(ex, runs.MISSING, T0, True, POLICY))
    d = decisions.decide(ex, SUSPENDED, at(500), True, POLICY)
    assert d.status.phase is Phase.PENDING
    assert d.wake_at == at(3600), "while queued only the sequence deadline is due"
    ex = then(ex, decisions.decide(ex, ADMITTED, at(500), True, POLICY))
    d = decisions.decide(ex, ADMITTED, at(500 + 60 + grace - 1), True, POLICY)
    assert d.status.phase is Phase.RUNNING and d.wake_at == at(500 + 60 + grace)
    d = decisions.decide(ex, ADMITTED, at(500 + 60 + grace), True, POLICY)
    assert d.status.phase is Phase.FAILED
    assert d.status.error is not None and d.status.error.reason == Reason.RUN_OVERDUE
    assert "after Kueue admitted it" in d.status.error.message
    assert d.delete_job == run_job(1)


def test_a_run_queued_past_the_sequence_deadline_times_out_and_its_job_goes() -> None:
    ex = queued_execution(timeoutSeconds=600, runTimeoutSeconds=60)
    ex = then(ex, decisions.decide(ex, runs.MISSING, T0, True, POLICY))
    d = decisions.decide(ex, SUSPENDED, at(600), True, POLICY)
    assert d.status.phase is Phase.TIMED_OUT
    assert d.status.error is not None and d.status.error.reason == Reason.TIMEOUT
    assert d.delete_job == run_job(1)
    assert d.status.history[-1].outcome is models.RunOutcome.STOPPED


def test_a_preempted_run_is_queued_again_and_its_watchdog_restarts_at_readmission() -> None:
    grace = POLICY.overdue_grace_seconds
    ex = queued_execution(timeoutSeconds=3600, runTimeoutSeconds=60)
    ex = then(ex, decisions.decide(ex, runs.MISSING, T0, True, POLICY))
    ex = then(ex, decisions.decide(ex, ADMITTED, at(10), True, POLICY))
    d = decisions.decide(ex, SUSPENDED, at(20), True, POLICY)
    assert d.status.phase is Phase.PENDING and succeeded(d).reason == Reason.QUEUED
    assert d.status.current_run is not None and d.status.current_run.admitted_at is None
    assert [e.reason for e in d.events] == [Reason.QUEUED], "preempted: queued again, and said so"
    ex = then(ex, d)
    ex = then(ex, decisions.decide(ex, SUSPENDED, at(1000), True, POLICY))
    ex = then(ex, decisions.decide(ex, ADMITTED, at(1000), True, POLICY))
    assert decisions.decide(ex, ADMITTED, at(1000 + 60 + grace - 1), True, POLICY).status.phase is Phase.RUNNING


def test_a_job_suspended_without_a_queue_label_is_queued_too_and_says_so() -> None:
    """Kueue may manage Jobs without the label (manageJobsWithoutQueueName, a namespace's default LocalQueue),
    and anyone may suspend a Job: the run is not running either way."""
    ex = builders.execution(builders.running())
    d = decisions.decide(ex, RunObservation(RunState.ACTIVE, suspended=True), at(5), True, POLICY)
    assert d.status.phase is Phase.PENDING
    assert "is suspended (spec.suspend)" in succeeded(d).message
    d = decisions.decide(ex, RunObservation(RunState.ACTIVE, suspended=True, queue="default"), at(5), True, POLICY)
    assert "in LocalQueue default" in succeeded(d).message


def test_a_run_without_kueue_keeps_its_watchdog_from_its_start() -> None:
    ex = builders.execution(builders.running(), runTimeoutSeconds=100)
    d = decisions.decide(ex, RunObservation(RunState.ACTIVE), at(100 + POLICY.overdue_grace_seconds), True, POLICY)
    assert d.status.error is not None and d.status.error.reason == Reason.RUN_OVERDUE


@given(queued_for=st.integers(0, 3000), ran_for=st.integers(0, 3000))
def test_a_queued_run_is_overdue_exactly_its_timeout_and_grace_after_admission(queued_for: int, ran_for: int) -> None:
    ex = queued_execution(timeoutSeconds=7 * 24 * 3600, runTimeoutSeconds=300)
    ex = then(ex, decisions.decide(ex, runs.MISSING, T0, True, POLICY))
    ex = then(ex, decisions.decide(ex, SUSPENDED, at(queued_for), True, POLICY))
    ex = then(ex, decisions.decide(ex, ADMITTED, at(queued_for), True, POLICY))
    d = decisions.decide(ex, ADMITTED, at(queued_for + ran_for), True, POLICY)
    overdue = ran_for >= 300 + POLICY.overdue_grace_seconds
    assert (d.status.phase is Phase.FAILED) == overdue


KEYS = st.from_regex(r"[a-z]([a-z0-9.-]{0,20}[a-z0-9])?(/[a-z]{1,10})?", fullmatch=True).filter(podtemplates.key_valid)
"""Label keys, as the API server admits them on a Job (a `a..b/c` never reaches a Job)."""
VALUES = st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=12)
TOLERATIONS = st.fixed_dictionaries(
    {"key": KEYS, "operator": st.sampled_from(["Exists", "Equal"])},
    optional={"value": VALUES, "effect": st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"])},
)


@given(
    made=executions(),
    suspend=st.booleans(),
    node_selector=st.dictionaries(KEYS.filter(lambda k: k != "kubernetes.io/hostname"), VALUES, max_size=3),
    tolerations=st.lists(TOLERATIONS, max_size=3),
    labels=st.dictionaries(KEYS.filter(lambda k: not podtemplates.key_reserved(k)), VALUES, max_size=3),
    annotations=st.dictionaries(KEYS.filter(lambda k: not podtemplates.key_reserved(k)), VALUES, max_size=3),
)
def test_whatever_kueue_adds_on_admission_is_adopted(
    made: tuple[models.ScheduledExecution, dict[str, str]],
    suspend: bool,
    node_selector: dict[str, str],
    tolerations: list[dict[str, str]],
    labels: dict[str, str],
    annotations: dict[str, str],
) -> None:
    """Any ResourceFlavor (node labels but a host's, keyed tolerations) and any AdmissionCheck's podSetUpdates
    (labels and annotations a template may carry) Kueue merges into a queued run's Job; never so on a Job of an
    execution without a queue."""
    ex, canonical = made
    labels = {k: v for k, v in labels.items() if k not in ("job-name", "controller-uid")}
    expected = manifests.job_manifest(labelled(ex), 1, {"page": 1}, POD_DEFAULTS)
    job = created(expected, canonical)
    job["spec"]["suspend"] = suspend
    template = job["spec"]["template"]
    template["metadata"]["labels"] = {**labels, **template["metadata"]["labels"]}
    template["metadata"]["annotations"] = {**annotations, **template["metadata"]["annotations"]}
    if node_selector:
        template["spec"]["nodeSelector"] = node_selector
    if tolerations:
        template["spec"]["tolerations"] = tolerations
    assert manifests.made_for(job, expected) is None
    plain = manifests.job_manifest(ex, 1, {"page": 1}, POD_DEFAULTS)
    added = bool(
        suspend
        or node_selector
        or tolerations
        or set(labels) - set(expected["spec"]["template"]["metadata"]["labels"])
        or annotations
    )
    plain_job = copy.deepcopy(job)
    plain_job["metadata"]["labels"] = plain["metadata"]["labels"] | {
        k: v for k, v in job["metadata"]["labels"].items() if k != models.KUEUE_QUEUE_LABEL
    }
    if not suspend:
        plain_job["spec"]["suspend"] = False
    assert (manifests.made_for(plain_job, plain) is None) == (not added)
