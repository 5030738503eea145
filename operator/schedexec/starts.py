"""Why an active run's pod has not started its container yet, and whether that fails the run.

`pod_waiting` reads the Job's current pod (and, for a pod stuck before its volumes are mounted, the pod's
FailedMount events) into a `PodWaiting`; `judge_start` classifies it: normal progress, or a failure that
will not heal by waiting (an image that cannot be pulled, a container that cannot be configured, a pod no
node takes); `mount_check_due` says when the FailedMount events are worth reading (a kubelet reports a
missing Secret of a volume only there). All are pure so they are unit-tested without a cluster.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schedexec.manifests import CONTAINER
from schedexec.models import Reason

SCHEDULING = "Scheduling"
"""Waiting reason of a pod that no scheduler has placed yet, and none has refused."""
CREATING = "ContainerCreating"
FAILED_MOUNT = "FailedMount"
UNSCHEDULABLE = "Unschedulable"
"""The scheduler's reason on a pod's PodScheduled=False condition."""


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


def parse_time(stamp: str | None) -> datetime | None:
    """An RFC 3339 timestamp of the API (None if absent or unreadable)."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
