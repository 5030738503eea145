"""What a run looks like to Kubernetes: the Job of one run, the names and labels that find it again, and
the ConfigMap that keeps a large result.

Everything the operator creates for a run is built here, pure (execution + run index + args → manifest),
with the restricted security context every run gets, so it is unit-tested without a cluster. Observation
(runs.py), the pod cache and the watches read back only the names and labels defined here.

Names are the execution's name, a tag of its uid and what the object is (`nightly-3f9c2a1b0d-r2`, the Job
of run 2; `nightly-3f9c2a1b0d-result`): readable in `kubectl get jobs`, deterministic (a restarted operator
finds, never duplicates, a run's Job: its creation answers 409 and the Job's owner is this execution), and
never another execution's. The uid tells apart two generations of one name (an execution deleted and
created again while its old Jobs are still being garbage-collected: `kubectl replace --force`) and two
executions whose long names are cut to the same prefix; uids are drawn by the API server, so no user can
choose a name that lands on another execution's Job or ConfigMap. Whatever holds a name already is not
trusted: a Job owned by another uid is never adopted, and a ConfigMap found under a result's name is never
reused (the result goes under a name the API server draws, `unclaimed_name`).
Operators before this naming called run `i`'s Job `<name>-r<i>` (`legacy_job_name`); such a Job of a
run in progress when the operator is upgraded is found by that name (`run_job`), never run again.

The args travel in a pod annotation, projected into the container as a file
by a downwardAPI volume: an environment variable would cap them at 128 KiB
(the kernel's limit for one string), an annotation allows 256 KiB in total,
of which contract.MAX_ARGS_BYTES are for args.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from schedexec import models
from schedexec_runner import contract

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


TAG_LENGTH = 10
"""Hex digits of the uid's tag in a name: 40 bits, so a user who creates executions over and over until one
shares a victim's tag needs about 10^12 tries (the tag is not secret: it protects against accidents and
chosen names, the owner check against the rest)."""


def execution_tag(uid: str) -> str:
    """The part of a name that tells apart executions (and generations of one name): the start of the SHA-256
    of the execution's uid."""
    return hashlib.sha256(uid.encode()).hexdigest()[:TAG_LENGTH]


def owned_name(execution: str, uid: str, what: str) -> str:
    """`<execution>-<tag>-<what>`, the execution's name cut to fit MAX_JOB_NAME (its readable part: the tag,
    not the name, makes it unique, so a cut needs no hash of the name)."""
    tail = f"-{execution_tag(uid)}-{what}"
    return execution[: MAX_JOB_NAME - len(tail)].rstrip("-.") + tail


def job_name(execution: str, uid: str, index: int) -> str:
    """The name of the Job of run `index` of execution `execution` (uid `uid`). Deterministic, so a restarted
    operator finds (never duplicates) a run's Job."""
    return owned_name(execution, uid, f"r{index}")


def legacy_job_name(execution: str, index: int) -> str:
    """The name operators before the uid tag gave run `index`'s Job: kept only to find such a Job of a run in
    progress across an upgrade (`run_job`)."""
    suffix = f"-r{index}"
    return _fit(execution, MAX_JOB_NAME - len(suffix)) + suffix


def run_job(execution: str, uid: str, index: int, jobs: Collection[str]) -> str:
    """The name of run `index`'s Job, given the names of the Jobs the execution owns (`jobs`): the legacy
    name if a Job of that name is among them (created by an operator before an upgrade, then adopted: its
    run is never started twice), else `job_name`."""
    legacy = legacy_job_name(execution, index)
    return legacy if legacy in jobs else job_name(execution, uid, index)


def run_job_names(execution: str, uid: str, index: int) -> tuple[str, str]:
    """Every name run `index`'s Job may have: this operator's, then the legacy one."""
    return job_name(execution, uid, index), legacy_job_name(execution, index)


def _fit(name: str, limit: int) -> str:
    """`name`, or a stable hash-suffixed prefix of it when longer than `limit` (label values; legacy names)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - len(digest) - 1].rstrip('-.')}-{digest}"


@dataclass(frozen=True)
class PodDefaults:
    """Operator-wide settings that shape every run's pod.

    No defaults here: each field is the operator setting of the same name, whose default, bounds and meaning
    `settings.OperatorSettings` holds, and `OperatorSettings.pod_defaults()` builds it."""

    run_as_user: int
    """UID (and GID) of the run's container."""
    job_ttl_seconds: int
    """Safety net only: the operator deletes a run's Job once it recorded the outcome."""
    max_result_bytes: int
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
    name: str | None = None,
) -> dict[str, Any]:
    """The Job that performs run `index` of `execution` with `args` (running `method` instead of
    spec.method if given: a command a previous run scheduled), named `name` (default: `job_name`; a run
    adopted across an upgrade keeps its legacy name, `run_job`)."""
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
            "name": name or job_name(meta.name, meta.uid, index),
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
    name = owned_name(meta.name, meta.uid, "result")
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


def unclaimed_name(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """`manifest` without its name, for the API server to name it (generateName: `<name>-<random>`): where a
    result goes when a ConfigMap holds its name already (reconciler.keep_result: never reused, as the operator
    cannot tell its own from one someone else made)."""
    meta = {k: v for k, v in manifest["metadata"].items() if k != "name"}
    return {**manifest, "metadata": {**meta, "generateName": f"{manifest['metadata']['name']}-"}}
