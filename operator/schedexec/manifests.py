"""What a run looks like to Kubernetes: the Job of one run, the names and labels that find it again, and
the ConfigMap that keeps a large result.

Everything the operator creates for a run is built here, pure (execution + run index + args → manifest),
with the restricted security context every run gets, so it is unit-tested without a cluster. Observation
(runs.py), the pod cache and the watches read back only the names and labels defined here.

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
from collections.abc import Mapping
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
