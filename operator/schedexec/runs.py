"""A run as Kubernetes sees it: the Job the operator creates, and what it observed.

`job_manifest` builds the Job of one run (pure: execution + run index + args
→ manifest) with the restricted security context every run gets. `observe`
reads a Job, its pods (and, for a pod stuck before its volumes are mounted,
the pod's FailedMount events) back into a `RunObservation`, the only thing
the decision logic knows about the cluster. `judge_start` classifies why an
active run's pod has not started yet: normal progress, or a failure that
will not heal by waiting (an image that cannot be pulled, a container that
cannot be configured, a pod no node takes). All are pure so they are
unit-tested without a cluster.

The args travel in a pod annotation, projected into the container as a file
by a downwardAPI volume: an environment variable would cap them at 128 KiB
(the kernel's limit for one string), an annotation allows 256 KiB in total,
of which contract.MAX_ARGS_BYTES are for args.
"""

from __future__ import annotations

import base64
import enum
import gzip
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schedexec import models
from schedexec.models import Reason
from schedexec_runner import contract, frame
from schedexec_runner import envelope as envelopes

MANAGED_BY = "schedexec"
EXECUTION_LABEL = "schedexec.io/execution"
RUN_LABEL = "schedexec.io/run"
CONTAINER = "run"
CREDENTIALS_VOLUME = "credentials"
ARGS_VOLUME = "args"
ARGS_ANNOTATION = "schedexec.io/args"
"""Pod-template annotation holding the run's args (compact JSON); the args volume projects it as a file."""
HOME = "/tmp"
"""HOME of the run's container: the writable emptyDir (the root filesystem is read-only)."""
MAX_JOB_NAME = 63
"""Job names become pod label values, which Kubernetes caps at 63 characters."""

MESSAGE_TAIL = 1024
"""How much of a dead pod's message or log tail an error message quotes."""


def job_name(execution: str, index: int) -> str:
    """Deterministic, so a restarted operator finds (never duplicates) a run's Job."""
    suffix = f"-r{index}"
    return _fit(execution, MAX_JOB_NAME - len(suffix)) + suffix


def _fit(name: str, limit: int) -> str:
    """`name`, or a stable hash-suffixed prefix of it when longer than `limit`."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - len(digest) - 1].rstrip('-.')}-{digest}"


@dataclass(frozen=True)
class PodDefaults:
    """Operator-wide settings that shape every run's pod."""

    run_as_user: int = 65532
    job_ttl_seconds: int = 86400
    """Safety net only: the operator deletes a run's Job once it recorded the outcome."""
    max_result_bytes: int = frame.DEFAULT_MAX_RESULT_BYTES
    """Largest `done` envelope a run may report through its log (contract.MAX_RESULT_BYTES); 0: none."""


def args_json(args: Mapping[str, Any]) -> str:
    """The args as the run receives them: compact JSON, UTF-8 (non-ASCII characters as they are)."""
    return json.dumps(args, separators=(",", ":"), ensure_ascii=False)


def args_size(args: Mapping[str, Any]) -> int:
    """Bytes of `args_json(args)`: what contract.MAX_ARGS_BYTES limits."""
    return len(args_json(args).encode())


def args_too_large(what: str, size: int) -> str:
    """The message of args that cannot reach a run (`what` names them: "spec.args are", ...)."""
    return (
        f"{what} {size} bytes as JSON; the limit is {contract.MAX_ARGS_BYTES} bytes "
        f"({contract.MAX_ARGS_BYTES // 1024} KiB): args reach the run in a pod annotation, "
        "and Kubernetes limits a pod's annotations to 256 KiB"
    )


DISRUPTION_FAILS_THE_RUN = {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
"""A run whose pod was disrupted (evicted, preempted, its node lost or drained) is not started again
behind the component's back: it may have done part of its work. The Job fails with reason
JOB_FAILED_BY_POLICY and the execution with RunDisrupted. `spec.retries` retries only runs that crashed
(their container exited non-zero without reporting an outcome)."""

JOB_FAILED_BY_POLICY = "PodFailurePolicy"
"""The Job controller's reason for a Job failed by a FailJob rule of its podFailurePolicy."""


def job_manifest(
    execution: models.ScheduledExecution,
    index: int,
    args: dict[str, Any],
    defaults: PodDefaults,
    method: str | None = None,
) -> dict[str, Any]:
    """The Job that performs run `index` of `execution` with `args` (running `method` instead of
    spec.method if given: a command a previous run scheduled)."""
    spec, meta = execution.spec, execution.metadata
    labels = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        EXECUTION_LABEL: _fit(meta.name, MAX_JOB_NAME),
        RUN_LABEL: str(index),
    }
    owner = {
        "apiVersion": models.API_VERSION,
        "kind": models.KIND,
        "name": meta.name,
        "uid": meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta.name, index),
            "namespace": meta.namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": {
            "backoffLimit": spec.retries,
            # a replacement pod only once the failed one is fully terminated: an index never runs in two pods at once
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {"rules": [DISRUPTION_FAILS_THE_RUN]},
            "activeDeadlineSeconds": spec.run_timeout_seconds,
            "ttlSecondsAfterFinished": defaults.job_ttl_seconds,
            "template": {
                "metadata": {"labels": labels, "annotations": {ARGS_ANNOTATION: args_json(args)}},
                "spec": _pod_spec(execution, index, defaults, method or execution.spec.method),
            },
        },
    }


def _pod_spec(execution: models.ScheduledExecution, index: int, defaults: PodDefaults, method: str) -> dict[str, Any]:
    """The run's pod: one container, no API credentials, non-root, args and credentials as read-only files."""
    spec = execution.spec
    args_dir, _, args_file = contract.DEFAULT_ARGS_FILE.rpartition("/")
    env = {
        contract.METHOD: method,
        contract.MODULE: spec.module,
        contract.FUNCTION: spec.function,
        contract.ARGS_FILE: contract.DEFAULT_ARGS_FILE,
        contract.RUN_INDEX: str(index),
        contract.EXECUTION: execution.key,
        contract.MAX_RESULT_BYTES: str(defaults.max_result_bytes),
        "HOME": HOME,
    }
    mounts = [
        {"name": "tmp", "mountPath": HOME},
        {"name": ARGS_VOLUME, "mountPath": args_dir, "readOnly": True},
    ]
    args_item = {"path": args_file, "fieldRef": {"fieldPath": f"metadata.annotations['{ARGS_ANNOTATION}']"}}
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": ARGS_VOLUME, "downwardAPI": {"items": [args_item]}},
    ]
    if spec.credentials_secret_ref is not None:
        env[contract.CREDENTIALS_DIR] = contract.DEFAULT_CREDENTIALS_DIR
        mounts.append({"name": CREDENTIALS_VOLUME, "mountPath": contract.DEFAULT_CREDENTIALS_DIR, "readOnly": True})
        volumes.append({"name": CREDENTIALS_VOLUME, "secret": {"secretName": spec.credentials_secret_ref.name}})
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.component.image,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
        "env": [{"name": k, "value": v} for k, v in env.items() if v is not None],
    }
    if spec.component.command:
        container["command"] = spec.component.command
    if spec.component.resources is not None:
        container["resources"] = spec.component.resources.model_dump(exclude_none=True)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": defaults.run_as_user,
            "runAsGroup": defaults.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if spec.component.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": ref.name} for ref in spec.component.image_pull_secrets]
    return pod_spec


RESULT_KEY = "result.json"
RESULT_GZ_KEY = "result.json.gz"
PLAIN_RESULT_LIMIT = 1_000_000
"""Results up to this size are kept as plain JSON (readable with kubectl); larger ones gzip-compressed:
a ConfigMap holds at most 1 MiB in all."""


def result_config_map(execution: models.ScheduledExecution, text: str) -> tuple[dict[str, Any], models.ResultRef]:
    """The ConfigMap that keeps a large result (`text`, its JSON), owned by the execution, and its reference."""
    raw = text.encode("utf-8")
    meta = execution.metadata
    name = _fit(f"{meta.name}-result", MAX_JOB_NAME)
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, EXECUTION_LABEL: _fit(meta.name, MAX_JOB_NAME)},
            "ownerReferences": [
                {"apiVersion": models.API_VERSION, "kind": models.KIND, "name": meta.name, "uid": meta.uid}
            ],
        },
        "immutable": True,
    }
    if len(raw) <= PLAIN_RESULT_LIMIT:
        key, body["data"] = RESULT_KEY, {RESULT_KEY: text}
    else:
        packed = base64.b64encode(gzip.compress(raw, mtime=0)).decode("ascii")
        key, body["binaryData"] = RESULT_GZ_KEY, {RESULT_GZ_KEY: packed}
    reference = models.ResultRef(config_map=name, key=key, bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    return body, reference


class RunState(enum.StrEnum):
    MISSING = "Missing"
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED)


SCHEDULING = "Scheduling"
"""Waiting reason of a pod that no scheduler has placed yet, and none has refused."""
CREATING = "ContainerCreating"
FAILED_MOUNT = "FailedMount"
UNSCHEDULABLE = "Unschedulable"
"""The scheduler's reason on a pod's PodScheduled=False condition."""
JOB_DEADLINE_EXCEEDED = "DeadlineExceeded"
"""The Job controller's reason for a Job stopped at its activeDeadlineSeconds (spec.runTimeoutSeconds)."""


@dataclass(frozen=True)
class PodWaiting:
    """Why the run's pod has not started its container (yet)."""

    reason: str
    """The kubelet's waiting reason (ContainerCreating, ErrImagePull, ImagePullBackOff, InvalidImageName,
    CreateContainerConfigError, ...), FailedMount (from the pod's events), the scheduler's Unschedulable,
    or Scheduling (not placed yet)."""
    message: str
    since: datetime | None
    """When the pod was scheduled (while it is not: when the scheduler refused it, or it was created).
    The graces of `judge_start` count from here."""
    image: str
    volumes_pending: bool = False
    """Scheduled, but the kubelet has not mounted its volumes yet (PodReadyToStartContainers is not True):
    a missing Secret shows only as FailedMount events then, not in the pod's status."""


@dataclass(frozen=True)
class RunObservation:
    """What the cluster says about one run's Job."""

    state: RunState
    envelope: envelopes.Outcome | None = None
    """The outcome the run reported in its envelope, if it reported one."""
    envelope_problem: str | None = None
    """Why the termination message is not a valid envelope, if it is not."""
    exit_code: int | None = None
    failure_reason: str | None = None
    """The Job's or pod's failure reason (BackoffLimitExceeded, DeadlineExceeded, ...)."""
    failure_message: str = ""
    """The Job controller's failure message (BackoffLimitExceeded: "Job has reached the specified backoff
    limit", ...): written by Kubernetes, never by the component."""
    log_tail: str = ""
    """The end of what the run's container wrote (its termination message, or the kubelet's copy of its log
    tail: FallbackToLogsOnError) when that is not an outcome: component output, which may hold anything."""
    waiting: PodWaiting | None = None
    """While the Job is active: why its current pod has not started its container, if it has not."""
    logged: LoggedOutcome | None = None
    """Where the run wrote an outcome too large for its termination message (its pod's log)."""
    attempts: int | None = None
    """How many pods of the finished Job ran to an end (the Job controller's count): more than one means
    the run index was retried after its pod died (spec.retries)."""


@dataclass(frozen=True)
class LoggedOutcome:
    """A pointer to a framed outcome in a pod's log (schedexec_runner.frame)."""

    pod: str
    pointer: dict[str, Any]


MISSING = RunObservation(RunState.MISSING)


def observe(
    job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]], events: Iterable[Mapping[str, Any]] = ()
) -> RunObservation:
    """Read a run's Job, its pods and (optionally) the FailedMount events of its current pod; pure."""
    if job is None:
        return MISSING
    job_status = job.get("status") or {}
    conditions = {c.get("type"): c for c in job_status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions:
        state = RunState.SUCCEEDED
    elif "Failed" in conditions:
        state = RunState.FAILED
    else:
        return RunObservation(RunState.ACTIVE, waiting=pod_waiting(current_pod(pods), events))
    pod, terminated = _latest_termination(pods) or (None, None)
    message = (terminated or {}).get("message") or ""
    exit_code = (terminated or {}).get("exitCode")
    decoded: envelopes.Outcome | None = None
    problem: str | None = None
    logged: LoggedOutcome | None = None
    if exit_code == contract.EXIT_REPORTED or (message and state is RunState.SUCCEEDED):
        try:
            if (pointer := frame.pointer(message)) is not None and pod is not None:
                logged = LoggedOutcome(pod, pointer)
            else:
                decoded = envelopes.read(message)
        except (envelopes.EnvelopeError, frame.FrameError) as exc:
            problem = str(exc)
    failed = conditions.get("Failed", {})
    reason = failed.get("reason") or (terminated or {}).get("reason")
    tail = message if decoded is None and logged is None else ""
    return RunObservation(
        state=state,
        envelope=decoded,
        envelope_problem=problem,
        exit_code=exit_code,
        failure_reason=reason,
        attempts=int(job_status.get("succeeded") or 0) + int(job_status.get("failed") or 0) or None,
        failure_message=(failed.get("message") or "")[-MESSAGE_TAIL:],
        log_tail=tail[-MESSAGE_TAIL:],
        logged=logged,
    )


def _latest_termination(pods: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The name of the newest pod whose run container terminated, and that terminated state."""
    newest: tuple[str, str, dict[str, Any]] | None = None
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") != CONTAINER or not terminated:
                continue
            stamp = terminated.get("finishedAt") or pod.get("metadata", {}).get("creationTimestamp") or ""
            if newest is None or stamp >= newest[0]:
                newest = (stamp, pod.get("metadata", {}).get("name", ""), terminated)
    return None if newest is None else (newest[1], newest[2])


# --- the pod of an active run ---------------------------------------------------------------------

TERMINAL_POD_PHASES = frozenset({"Succeeded", "Failed"})


def current_pod(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The pod the Job is running now: the newest one that is neither finished nor being deleted."""
    live = [
        pod
        for pod in pods
        if (pod.get("status") or {}).get("phase") not in TERMINAL_POD_PHASES
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    ]
    return max(live, key=lambda pod: (pod.get("metadata") or {}).get("creationTimestamp") or "", default=None)


def pod_waiting(pod: Mapping[str, Any] | None, events: Iterable[Mapping[str, Any]] = ()) -> PodWaiting | None:
    """Why `pod` has not started the run container, or None if it has (or there is no pod)."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return None
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    image = next((c.get("image", "") for c in spec.get("containers") or [] if c.get("name") == CONTAINER), "")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    created = parse_time(meta.get("creationTimestamp"))
    scheduled = conditions.get("PodScheduled") or {}
    if not spec.get("nodeName"):
        if scheduled.get("status") == "False" and scheduled.get("reason") == UNSCHEDULABLE:
            since = parse_time(scheduled.get("lastTransitionTime")) or created
            return PodWaiting(UNSCHEDULABLE, scheduled.get("message") or "", since, image)
        return PodWaiting(SCHEDULING, "the pod is not on a node yet", created, image)
    since = (parse_time(scheduled.get("lastTransitionTime")) if scheduled.get("status") == "True" else None) or created
    container: Mapping[str, Any] = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == CONTAINER), {}
    )
    state = container.get("state") or {}
    if state.get("running") or state.get("terminated"):
        return None
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason") or CREATING
    # the kubelet says it is still setting the pod up (its sandbox, and so its volumes, not ready; without the
    # PodReadyToStartContainers condition: it reported the container as being created). A pod it has not
    # reported on yet (a busy node) is not waiting for volumes, and costs no events read.
    sandbox = (conditions.get("PodReadyToStartContainers") or {}).get("status")
    volumes_pending = reason == CREATING and (sandbox == "False" or (sandbox is None and bool(container)))
    if volumes_pending and (mount := _latest_mount_failure(events, meta.get("uid"))) is not None:
        return PodWaiting(FAILED_MOUNT, mount, since, image, volumes_pending=True)
    return PodWaiting(reason, waiting.get("message") or "", since, image, volumes_pending=volumes_pending)


def _latest_mount_failure(events: Iterable[Mapping[str, Any]], pod_uid: str | None) -> str | None:
    """The message of the newest FailedMount event of the pod, if any."""
    newest: tuple[str, str] | None = None
    for event in events:
        if event.get("reason") != FAILED_MOUNT or (event.get("involvedObject") or {}).get("uid") != pod_uid:
            continue
        stamp = (
            (event.get("series") or {}).get("lastObservedTime")
            or event.get("lastTimestamp")
            or event.get("eventTime")
            or ""
        )
        if newest is None or stamp >= newest[0]:
            newest = (stamp, event.get("message") or "")
    return None if newest is None else newest[1]


def mount_check_due(pods: Sequence[Mapping[str, Any]], now: datetime, after_seconds: int) -> Mapping[str, Any] | None:
    """The current pod, if its FailedMount events are worth reading: it has waited for its volumes
    `after_seconds` or longer (a kubelet reports a missing Secret or key of a volume only in events)."""
    pod = current_pod(pods)
    waiting = pod_waiting(pod)
    if waiting is None or not waiting.volumes_pending or waiting.since is None:
        return None
    return pod if now >= waiting.since + timedelta(seconds=after_seconds) else None


class StartFailure(enum.StrEnum):
    """Why a run failed before its container started: the execution's error reason."""

    IMAGE_PULL = Reason.IMAGE_PULL_FAILED.value
    CONFIG = Reason.CONFIG_ERROR.value
    UNSCHEDULABLE = Reason.UNSCHEDULABLE.value


FAILS_AT_ONCE: Mapping[str, StartFailure] = {
    "InvalidImageName": StartFailure.IMAGE_PULL,  # the spec is immutable: the reference will never parse
    "ErrImageNeverPull": StartFailure.IMAGE_PULL,  # imagePullPolicy Never and the image is not on the node
}
"""Waiting reasons no retry of the kubelet can heal."""

FAILS_AFTER_GRACE: Mapping[str, StartFailure] = {
    "ErrImagePull": StartFailure.IMAGE_PULL,
    "ImagePullBackOff": StartFailure.IMAGE_PULL,
    "RegistryUnavailable": StartFailure.IMAGE_PULL,
    "SignatureValidationFailed": StartFailure.IMAGE_PULL,
    "CreateContainerConfigError": StartFailure.CONFIG,
    "CreateContainerError": StartFailure.CONFIG,
    FAILED_MOUNT: StartFailure.CONFIG,
    UNSCHEDULABLE: StartFailure.UNSCHEDULABLE,
}
"""Waiting reasons that fail the run once they last past their grace: the kubelet (or the scheduler) keeps
retrying meanwhile, so a registry hiccup, a Secret created a moment late or a node being added still heals."""

MOUNT_RECHECK_SECONDS = 10
"""Least time between two looks at a pod still waiting for its volumes (each reads its FailedMount events)."""

NORMAL_START = frozenset({SCHEDULING, CREATING, "PodInitializing"})
"""Waiting reasons of a pod that is starting normally: never a failure (the run timeout still applies),
shown in status only once starting takes longer than the start grace."""


@dataclass(frozen=True)
class StartVerdict:
    """What `judge_start` concluded about an active run's waiting pod."""

    failure: StartFailure | None = None
    """Set when the run must fail now."""
    shown: bool = False
    """Whether the status shows the waiting reason."""
    look_again_at: datetime | None = None
    """When the verdict may change with the clock alone (a grace ends, or FailedMount events are due a look)."""


def judge_start(
    waiting: PodWaiting | None, now: datetime, grace_seconds: int, unschedulable_grace_seconds: int
) -> StartVerdict:
    """Classify why a run's pod has not started; pure.

    - InvalidImageName, ErrImageNeverPull: the run fails at once (ImagePullFailed).
    - ErrImagePull, ImagePullBackOff, ...: ImagePullFailed once the pod has been scheduled `grace_seconds`.
    - CreateContainerConfigError (a missing Secret or key the container refers to), CreateContainerError,
      FailedMount (a volume, e.g. the credentials Secret, cannot be mounted): ConfigError after the same grace.
    - Unschedulable: Unschedulable once the scheduler has refused the pod for `unschedulable_grace_seconds`
      (longer by default: a cluster autoscaler may be adding a node).
    - ContainerCreating, PodInitializing, Scheduling: normal progress, never a failure; shown once they take
      longer than the grace.
    - Any other waiting reason: shown at once, never a failure by itself (the run timeout ends it).
    """
    if waiting is None:
        return StartVerdict()
    if waiting.reason in FAILS_AT_ONCE:
        return StartVerdict(FAILS_AT_ONCE[waiting.reason], shown=True)
    since = waiting.since or now
    grace = unschedulable_grace_seconds if waiting.reason == UNSCHEDULABLE else grace_seconds
    ends = since + timedelta(seconds=grace)
    if waiting.reason in FAILS_AFTER_GRACE:
        if now >= ends:
            return StartVerdict(FAILS_AFTER_GRACE[waiting.reason], shown=True)
        return StartVerdict(shown=True, look_again_at=ends)
    if waiting.reason in NORMAL_START:
        if now < ends:
            return StartVerdict(look_again_at=ends)
        # still waiting for its volumes: read the pod's FailedMount events again a while later
        again = now + timedelta(seconds=max(grace, MOUNT_RECHECK_SECONDS))
        return StartVerdict(shown=True, look_again_at=again if waiting.volumes_pending else None)
    return StartVerdict(shown=True)


# --- the pod cache ----------------------------------------------------------------------------------


def parse_time(stamp: str | None) -> datetime | None:
    """An RFC 3339 timestamp of the API (None if absent or unreadable)."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
"""The Job controller's labels naming a pod's Job (the older one still set for compatibility)."""


def pod_job(pod: Mapping[str, Any]) -> str | None:
    """The name of the Job that owns `pod`, if a Job does."""
    meta = pod.get("metadata") or {}
    for owner in meta.get("ownerReferences") or []:
        if owner.get("kind") == "Job" and owner.get("apiVersion") == "batch/v1":
            return owner.get("name")  # type: ignore[no-any-return]
    labels = meta.get("labels") or {}
    return next((labels[label] for label in JOB_NAME_LABELS if labels.get(label)), None)


def pod_job_uid(pod: Mapping[str, Any]) -> str | None:
    """The uid of the Job that owns `pod` (None if unknown)."""
    for owner in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "Job" and owner.get("apiVersion") == "batch/v1":
            return owner.get("uid")  # type: ignore[no-any-return]
    return None


KEPT_POD_LABELS = (EXECUTION_LABEL, RUN_LABEL, *JOB_NAME_LABELS)
"""What `observe` and `pod_job` read of a run pod's labels (a pod deleted while the watch was away is handed
on as the store kept it: Controller.relisted)."""


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator keeps of a run's pod: what `observe` and `pod_signature` read, nothing else."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    kept_meta = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp")
    return {
        "metadata": {
            **{key: meta[key] for key in kept_meta if key in meta},
            "labels": {k: v for k, v in (meta.get("labels") or {}).items() if k in KEPT_POD_LABELS},
            "ownerReferences": meta.get("ownerReferences") or [],
        },
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [{"name": c.get("name"), "image": c.get("image")} for c in spec.get("containers") or []],
        },
        "status": {
            key: status[key]
            for key in ("phase", "reason", "message", "conditions", "containerStatuses")
            if key in status
        },
    }


def pod_signature(pod: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What of a pod a reconcile may react to; a pod event that leaves it unchanged needs no reconcile."""
    if pod is None:
        return ()
    status = pod.get("status") or {}
    conditions = tuple(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in status.get("conditions") or []
    )
    containers = tuple(
        (c.get("name"), json.dumps(c.get("state") or {}, sort_keys=True)) for c in status.get("containerStatuses") or []
    )
    meta = pod.get("metadata") or {}
    return (
        status.get("phase"),
        (pod.get("spec") or {}).get("nodeName"),
        bool(meta.get("deletionTimestamp")),
        conditions,
        containers,
    )


def job_signature(job: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a decision reads of a run's Job: its uid, its true conditions (Complete, Failed, ...) and whether
    it is being deleted. A change elsewhere (its active or ready count) needs no reconcile."""
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    conditions = sorted(c.get("type", "") for c in status.get("conditions") or [] if c.get("status") == "True")
    return meta.get("uid"), tuple(conditions), bool(meta.get("deletionTimestamp"))


def pods_account_for(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> bool:
    """Whether `pods` (from the watch cache) show everything a finished Job counted: every pod finished,
    at least as many as the Job's succeeded + failed; otherwise they may lag behind the Job and are listed."""
    counted = int(job.get("status", {}).get("succeeded") or 0) + int(job.get("status", {}).get("failed") or 0)
    finished = [p for p in pods if (p.get("status") or {}).get("phase") in TERMINAL_POD_PHASES]
    return bool(pods) and len(finished) == len(pods) and len(finished) >= counted
