"""What a run looks like to Kubernetes: the Job of one run, the names and labels that find it again, and
the ConfigMap that keeps a large result, and the Secret that keeps an XSOAR integration context.

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
trusted: a Job is adopted only if it is the very Job this operator made for that run (`made_for`: a name is
no secret, and anyone who may create Jobs can give one the execution as its owner), and a ConfigMap found
under a result's name is never reused (the result goes under a name the API server draws, `unclaimed_name`).
Operators before this naming called run `i`'s Job `<name>-r<i>` (`legacy_job_name`); such a Job of a
run in progress when the operator is upgraded is found by that name (`run_job`), never run again.

An XSOAR integration context (schedexec_runner.xsoar_native: tokens an integration caches) is kept between
the runs of a sequence in the Secret `<execution>-<tag>-xsoar-context` (type XSOAR_CONTEXT_TYPE, owned by
the execution, so it goes with it; `xsoar_context_secret`). Every run mounts it read-only and optional at
contract.DEFAULT_XSOAR_CONTEXT_FILE: the run starts from `{}` until a run of the execution left a context.
The operator does not know which images run XSOAR integrations, and a mount that is there from the first
run keeps every run's Job the same shape (`made_for`); the Secret appears only once a context was kept.

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
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from schedexec import models, podtemplate, tracing
from schedexec_runner import contract, elasticio

MANAGED_BY = "schedexec"
EXECUTION_LABEL = "schedexec.io/execution"
RUN_LABEL = "schedexec.io/run"
CONTAINER = "run"
CREDENTIALS_VOLUME = "credentials"
ARGS_VOLUME = "args"
ARGS_ANNOTATION = "schedexec.io/args"
"""Pod-template annotation holding the run's args (compact JSON); the args volume projects it as a file."""
XSOAR_CONTEXT_VOLUME = "xsoar-context"
XSOAR_CONTEXT_TYPE = "schedexec.io/xsoar-context"
"""The type of the Secret that keeps an integration context: the only Secrets the operator may create or
update (the chart's operator-secrets admission policy)."""
XSOAR_CONTEXT_SUFFIX = "xsoar-context"
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
    run_pod_template: models.RunPodTemplate | None
    """The operator's default pod template, merged under each execution's (podtemplate.merge)."""
    default_run_resources: models.ResourceRequirements | None
    """Requests and limits of each run's container where spec.component.resources leaves them unset
    (`run_resources`)."""
    elasticio_receiver_image: str
    """The runner image whose receiver runs beside an elastic.io component (`_elasticio_pod`)."""


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
    traceparent: str | None = None,
) -> dict[str, Any]:
    """The Job that performs run `index` of `execution` with `args` (running `method` instead of
    spec.method if given: a command a previous run scheduled), named `name` (default: `job_name`; a run
    adopted across an upgrade keeps its legacy name, `run_job`). `traceparent`: the run's trace context
    (tracing.run_traceparent), on the Job and its pod as an annotation and in the container's TRACEPARENT."""
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
    pod_spec = _pod_spec(execution, index, defaults, method or execution.spec.method)
    traced = {} if traceparent is None else {tracing.ANNOTATION: traceparent}
    if traceparent is not None:
        pod_spec["containers"][0]["env"].append({"name": tracing.ENV, "value": traceparent})
    template, pod = podtemplate.apply(
        podtemplate.run_template(defaults.run_pod_template, execution),
        {"labels": labels, "annotations": {ARGS_ANNOTATION: args_json(args), **traced}},
        pod_spec,
    )
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name or job_name(meta.name, meta.uid, index),
            "namespace": meta.namespace,
            "labels": labels,
            **({"annotations": traced} if traced else {}),
            "ownerReferences": [owner],
        },
        "spec": {
            "backoffLimit": spec.retries,
            # a replacement pod only once the failed one is fully terminated: an index never runs in two pods at once
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {"rules": [DISRUPTION_FAILS_THE_RUN]},
            "activeDeadlineSeconds": spec.run_timeout,
            "ttlSecondsAfterFinished": defaults.job_ttl_seconds,
            "template": {"metadata": template, "spec": pod},
        },
    }
    _run_resources(manifest, execution, defaults)
    _queued_in_kueue(manifest, execution)
    return manifest


def _run_resources(manifest: dict[str, Any], execution: models.ScheduledExecution, defaults: PodDefaults) -> None:
    """The run's container with its resources: spec.component.resources over the operator's defaults."""
    resources = run_resources(execution.spec.component.resources, defaults.default_run_resources)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    if resources:
        container["resources"] = resources
    else:
        container.pop("resources", None)


def run_resources(
    own: models.ResourceRequirements | None, default: models.ResourceRequirements | None
) -> dict[str, dict[str, str]]:
    """A run's container resources: the execution's own (spec.component.resources), and the operator's default
    (SCHEDEXEC_DEFAULT_RUN_RESOURCES) for each resource the execution leaves unset, merged per resource name
    (the execution wins). As a LimitRange defaults them: a default request is not added for a resource whose
    limit the execution sets (Kubernetes then requests the limit), and a default limit not for a resource the
    execution requests more of (the Job would be invalid; SCHEDEXEC_MAX_RUN_RESOURCES is the bound)."""
    mine = own or models.ResourceRequirements()
    base = default or models.ResourceRequirements()
    requests, limits = dict(mine.requests or {}), dict(mine.limits or {})
    for name, value in (base.requests or {}).items():
        if name not in requests and name not in limits:
            requests[name] = value
    for name, value in (base.limits or {}).items():
        wanted = quantity_value(requests[name]) if name in requests else None
        limit = quantity_value(value)
        if name not in limits and (wanted is None or limit is None or wanted <= limit):
            limits[name] = value
    return {kind: values for kind, values in (("requests", requests), ("limits", limits)) if values}


def resources_over(
    own: models.ResourceRequirements | None,
    default: models.ResourceRequirements | None,
    maximum: Mapping[str, str],
) -> str | None:
    """Why a run's resources (`run_resources`) exceed the operator's `maximum` (SCHEDEXEC_MAX_RUN_RESOURCES,
    resource name → quantity), naming the field, its value and the maximum; None if they do not."""
    effective = run_resources(own, default)
    set_by_execution = (own or models.ResourceRequirements()).model_dump(exclude_none=True)
    for kind, values in effective.items():
        for name, value in sorted(values.items()):
            bound = maximum.get(name)
            amount, most = quantity_value(value), None if bound is None else quantity_value(bound)
            if amount is None or most is None or amount <= most:
                continue
            where = (
                f"spec.component.resources.{kind}.{name}"
                if name in set_by_execution.get(kind, {})
                else f"{kind}.{name} (the operator's default run resources)"
            )
            return (
                f"{where} is {value}, above the operator's maximum of {bound} for {name} (SCHEDEXEC_MAX_RUN_RESOURCES)"
            )
    return None


def _queued_in_kueue(manifest: dict[str, Any], execution: models.ScheduledExecution) -> None:
    """An execution that names a Kueue LocalQueue (its kueue.x-k8s.io/queue-name label): its run's Job is created
    suspended with that label, so Kueue queues it and starts it (unsuspends it) once it admits it
    (docs/kueue.md). The pod template keeps its own labels: Kueue reads the Job's."""
    queue = execution.queue
    if queue is None:
        return
    meta = manifest["metadata"]
    meta["labels"] = {**meta["labels"], models.KUEUE_QUEUE_LABEL: queue}
    manifest["spec"]["suspend"] = True


def queue_of(job: Mapping[str, Any]) -> str | None:
    """The Kueue LocalQueue a Job is queued in (its kueue.x-k8s.io/queue-name label), if any."""
    return ((job.get("metadata") or {}).get("labels") or {}).get(models.KUEUE_QUEUE_LABEL) or None


def _pod_spec(execution: models.ScheduledExecution, index: int, defaults: PodDefaults, method: str) -> dict[str, Any]:
    """The run's pod: one container, no API credentials, non-root, args and credentials as read-only files
    (before its pod template is applied: podtemplate.apply)."""
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
    context_dir = contract.DEFAULT_XSOAR_CONTEXT_FILE.rpartition("/")[0]
    env[contract.XSOAR_CONTEXT_FILE] = contract.DEFAULT_XSOAR_CONTEXT_FILE
    mounts.append({"name": XSOAR_CONTEXT_VOLUME, "mountPath": context_dir, "readOnly": True})
    context_secret = {"secretName": xsoar_context_name(execution.metadata), "optional": True}
    volumes.append({"name": XSOAR_CONTEXT_VOLUME, "secret": context_secret})
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
    if spec.component.runtime == models.ELASTICIO:
        _elasticio_pod(pod_spec, execution, defaults, method)
    return pod_spec


# --- the elastic.io runtime: the component's own sailor, schedexec's receiver beside it -------------------------

RECEIVER = "receiver"
"""The elasticio runtime's sidecar (schedexec_runner.elasticio)."""
ELASTICIO_VOLUME = "elasticio"
RECEIVER_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
"""The receiver's own: a small Python HTTP server holding at most one result."""


def _elasticio_pod(
    pod_spec: dict[str, Any], execution: models.ScheduledExecution, defaults: PodDefaults, method: str
) -> None:
    """`pod_spec` (the schedexec runtime's pod) made the elasticio runtime's (schedexec_runner.elasticio says
    why this shape): the run's container keeps the component's image and the security context, runs
    `node -e LAUNCHER <method>` with the variables sailor reads, and mounts only HOME and the shared emptyDir;
    the args, the credentials Secret and the contract's variables move to the receiver, a native sidecar
    (restartPolicy Always) from the runner image. ELASTICIO_API_* are placeholders sailor asserts present:
    there is no elastic.io API behind them (a component's updateKeys event fails)."""
    spec = execution.spec
    component = pod_spec["containers"][0]
    shared_dir = elasticio.DEFAULT_DIR
    post_url = f"http://127.0.0.1:{elasticio.DEFAULT_PORT}/"
    path = (spec.component.elasticio or models.ElasticioComponent()).component_path
    sailor_env = {
        "ELASTICIO_POST_RESULT_URL": post_url,
        "ELASTICIO_ACTION_OR_TRIGGER": spec.module,
        "ELASTICIO_GET_MODEL_METHOD": spec.function,
        "ELASTICIO_COMPONENT_PATH": path,
        "ELASTICIO_API_URI": f"{post_url}no-elasticio-api",
        "ELASTICIO_API_USERNAME": "schedexec",
        "ELASTICIO_API_KEY": "none",
        "ELASTICIO_API_REQUEST_RETRY_ATTEMPTS": "3",
        "ELASTICIO_API_REQUEST_RETRY_DELAY": "100",
        elasticio.DIR: shared_dir,
        "HOME": HOME,
    }
    shared = {"name": ELASTICIO_VOLUME, "mountPath": shared_dir}
    receiver = {
        "name": RECEIVER,
        "image": defaults.elasticio_receiver_image,
        "imagePullPolicy": image_pull_policy(defaults.elasticio_receiver_image),
        "command": ["schedexec-elasticio-receiver"],
        "restartPolicy": "Always",
        "terminationMessagePolicy": "File",
        "securityContext": component["securityContext"],
        "resources": RECEIVER_RESOURCES,
        "volumeMounts": [*component["volumeMounts"], shared],
        "env": [*component["env"], {"name": elasticio.DIR, "value": shared_dir}],
    }
    component["command"] = ["node", "-e", elasticio.LAUNCHER, method]
    component["workingDir"] = path
    component["volumeMounts"] = [{"name": "tmp", "mountPath": HOME}, shared]
    component["env"] = [{"name": k, "value": v} for k, v in sailor_env.items() if v is not None]
    # the frame of a large result and the cfg, in memory (the cfg holds credentials: never on the node's disk)
    size = (2 * defaults.max_result_bytes + 2 * contract.MAX_ARGS_BYTES) // 2**20 + 8
    pod_spec["volumes"].append({"name": ELASTICIO_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": f"{size}Mi"}})
    pod_spec["initContainers"] = [receiver]


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


def xsoar_context_name(meta: models.ObjectMeta) -> str:
    """The name of the Secret that keeps the execution's integration context."""
    return owned_name(meta.name, meta.uid, XSOAR_CONTEXT_SUFFIX)


def xsoar_context_secret(execution: models.ScheduledExecution, context: Mapping[str, Any]) -> dict[str, Any]:
    """The Secret that keeps `context` (a run's schedule envelope's) for the next run, owned by the
    execution: its one key is the file the run reads (contract.DEFAULT_XSOAR_CONTEXT_FILE)."""
    meta = execution.metadata
    text = json.dumps(context, separators=(",", ":"), ensure_ascii=False)
    key = contract.DEFAULT_XSOAR_CONTEXT_FILE.rpartition("/")[2]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": XSOAR_CONTEXT_TYPE,
        "metadata": {
            "name": xsoar_context_name(meta),
            "namespace": meta.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, EXECUTION_LABEL: _fit(meta.name, MAX_JOB_NAME)},
            "ownerReferences": [
                {"apiVersion": models.API_VERSION, "kind": models.KIND, "name": meta.name, "uid": meta.uid}
            ],
        },
        "data": {key: base64.b64encode(text.encode("utf-8")).decode("ascii")},
    }


def unclaimed_name(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """`manifest` without its name, for the API server to name it (generateName: `<name>-<random>`): where a
    result goes when a ConfigMap holds its name already (reconciler.keep_result: never reused, as the operator
    cannot tell its own from one someone else made)."""
    meta = {k: v for k, v in manifest["metadata"].items() if k != "name"}
    return {**manifest, "metadata": {**meta, "generateName": f"{manifest['metadata']['name']}-"}}


# --- adoption: is a Job found under a run's name the one this operator made? -----------------------------------


class _ServerSet:
    """A field whose value the API server or the Job controller chooses (a uid, a timestamp, the status)."""

    def __repr__(self) -> str:
        return "<set by the API server>"


SERVER_SET = _ServerSet()


@dataclass(frozen=True)
class _Each:
    """The defaults of every item of a list."""

    item: Mapping[str, Any]


_Defaults = Mapping[str, Any]
"""What the API server may add to a Job the operator made, where the operator's manifest has no such key: the
default value itself, SERVER_SET (any value), a nested mapping (the defaults within an object whose other
keys the operator sets), or _Each (the defaults of each item of a list)."""

DELETION_FINALIZERS = frozenset({"foregroundDeletion", "orphan"})
"""The finalizers the API server puts on a Job being deleted (no one else's is accepted)."""

QUANTITIES = frozenset({"limits", "requests", "sizeLimit", "divisor"})
"""Fields that are (or hold) resource quantities, which the API server writes in canonical form (1000m → 1)."""


def made_for(job: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """Whether `job`, a Job as the API server answers it, is the Job `expected` (job_manifest: what this
    operator makes for the run) once created: None if it is, else the first difference, named by its path.

    A run's Job name is no secret (anyone who may read the execution can work it out, job_name), and
    anyone who may create Jobs in the namespace can give one an ownerReference to the execution: the API
    server checks an ownerReference only when it blocks the owner's deletion, and only where the
    OwnerReferencesPermissionEnforcement admission plugin is on. So a Job is adopted (a 409 on its creation)
    only if every field the operator sets has the value it sets, and every other field is one the API
    server defaults (with its default value) or fills in itself (uid, timestamps, status, the selector and
    the Job controller's labels of this very Job): any image, command, env, volume, security context, label,
    annotation, owner or added field of someone else's choosing is a Job not made by schedexec for this run,
    never adopted (its pod's outcome would become the execution's result). A Job changed by a mutating
    admission webhook is refused as well: only a crash between a run's creation and the status that names
    it makes the operator adopt, and a refusal then fails the execution with JobNameTaken, saying why."""
    meta = job.get("metadata") or {}
    defaults = _job_defaults(str(meta.get("uid", "")), str(expected["metadata"]["name"]), expected)
    if queue_of(expected) is not None:
        expected = _as_kueue_admits(job, expected)
    return _difference(job, expected, defaults, "")


JOB_CONTROLLER_LABELS = frozenset(
    {"batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name", "controller-uid", "job-name"}
)
"""The labels the Job controller gives a Job's pod template (checked by `_job_defaults`, value and all)."""


KUEUE_NODE_LABELS_REFUSED = frozenset({"kubernetes.io/hostname"})
"""nodeSelector keys Kueue never adds: a ResourceFlavor's nodeLabels pick a group of nodes (a pool, an instance
type, a zone); one that pins a single node is someone's steering of a run onto a host of their choosing."""


def _added_by_kueue(field: str, item: Any) -> bool:
    """Whether Kueue may have added `item` to the pod template's `field` (a key of labels, annotations or
    nodeSelector, or an item of tolerations): what a template may carry, no more (docs/kueue.md). Labels and
    annotations pass models.RunPodTemplate's key rules (no reserved key: schedexec's, the Job controller's,
    Kubernetes' reserved namespaces such as container.apparmor.security.beta.kubernetes.io/); a nodeSelector
    key is a node label but not the host's; a toleration has a key (a key-less Exists tolerates every taint:
    no ResourceFlavor's)."""
    if field == "tolerations":
        return isinstance(item, Mapping) and bool(item.get("key"))
    if field == "nodeSelector":
        return models.key_problem(item, reserved=False) is None and item not in KUEUE_NODE_LABELS_REFUSED
    return models.key_problem(item) is None


def _as_kueue_admits(job: Mapping[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """`expected`, a Job created suspended in a Kueue LocalQueue, with what Kueue legitimately changes on it
    taken from `job`: spec.suspend (false once admitted, true again when preempted), and what admission merges
    into the pod template (podset.Merge of the ResourceFlavor's nodeLabels and tolerations, and an admission
    check's podSetUpdates): further labels, annotations and nodeSelector entries, tolerations and schedulingGates
    after the Job's own, each as `_added_by_kueue` allows. Only additions: a key or item the operator set must
    keep its value (Kueue refuses conflicting updates itself), and nothing else (image, command, env, volumes,
    security) may differ (docs/kueue.md)."""
    admitted: dict[str, Any] = json.loads(json.dumps(expected))
    suspend = (job.get("spec") or {}).get("suspend")
    if isinstance(suspend, bool):
        admitted["spec"]["suspend"] = suspend
    template = ((job.get("spec") or {}).get("template")) or {}
    want = admitted["spec"]["template"]
    for part, key in (("metadata", "labels"), ("metadata", "annotations"), ("spec", "nodeSelector")):
        added = (template.get(part) or {}).get(key)
        if isinstance(added, Mapping):
            own = want[part].get(key) or {}
            extra = {
                k: v
                for k, v in added.items()
                if k not in own and k not in JOB_CONTROLLER_LABELS and _added_by_kueue(key, k)
            }
            if extra:
                want[part][key] = {**own, **extra}
    for key in ("tolerations", "schedulingGates"):
        added = (template.get("spec") or {}).get(key)
        own = want["spec"].get(key) or []
        if isinstance(added, list) and len(added) > len(own):
            appended = [item for item in added[len(own) :] if key != "tolerations" or _added_by_kueue(key, item)]
            want["spec"][key] = [*own, *appended]
    return admitted


def _job_defaults(uid: str, name: str, expected: Mapping[str, Any]) -> _Defaults:
    """What the API server adds to the Job `expected` once created with uid `uid` (Kubernetes' defaulting of
    batch/v1 Jobs and pod templates, and the Job controller's selector and labels)."""
    controller = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    pod = expected["spec"]["template"]["spec"]
    container = pod["containers"][0]
    account = {"serviceAccount": pod["serviceAccountName"]} if "serviceAccountName" in pod else {}
    return {
        "metadata": {
            "uid": SERVER_SET,
            "resourceVersion": SERVER_SET,
            "generation": SERVER_SET,
            "creationTimestamp": SERVER_SET,
            "managedFields": SERVER_SET,
            "deletionTimestamp": SERVER_SET,
            "deletionGracePeriodSeconds": SERVER_SET,
            "finalizers": DELETION_FINALIZERS,
            "labels": controller,
            "annotations": {"batch.kubernetes.io/job-tracking": ""},
        },
        "status": SERVER_SET,
        "spec": {
            "parallelism": 1,
            "completions": 1,
            "completionMode": "NonIndexed",
            "suspend": False,
            "manualSelector": False,
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}},
            "template": {
                "metadata": {"creationTimestamp": None, "labels": controller},
                "spec": {
                    **account,  # the deprecated twin of a serviceAccountName
                    "dnsPolicy": "ClusterFirst",
                    "schedulerName": "default-scheduler",
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {},
                    "containers": _Each(
                        {
                            "terminationMessagePath": "/dev/termination-log",
                            "imagePullPolicy": image_pull_policy(str(container["image"])),
                            "resources": {},
                            "env": _Each(
                                {"valueFrom": {"fieldRef": {"apiVersion": "v1"}, "resourceFieldRef": {"divisor": "0"}}}
                            ),
                        }
                    ),
                    "initContainers": _Each({"terminationMessagePath": "/dev/termination-log"}),
                    "volumes": _Each(
                        {
                            "secret": {"defaultMode": 0o644},
                            "downwardAPI": {"defaultMode": 0o644, "items": _Each({"fieldRef": {"apiVersion": "v1"}})},
                            "projected": {"defaultMode": 0o644},
                        }
                    ),
                },
            },
        },
    }


def image_pull_policy(image: str) -> str:
    """Kubernetes' default imagePullPolicy of `image` (SetDefaults_Container with parsers.ParseImageName):
    Always when its tag is latest, or when it has neither a tag nor a digest (the tag is then latest), else
    IfNotPresent. A tag beside a digest is kept: `shop:latest@sha256:...` is Always."""
    name, _, digest = image.partition("@")
    tag = name.rsplit("/", 1)[-1].partition(":")[2]
    return "Always" if tag == "latest" or not (tag or digest) else "IfNotPresent"


def _difference(actual: Any, expected: Any, defaults: Any, path: str, quantity: bool = False) -> str | None:
    """The first place where `actual` is not `expected` as the API server would keep it (`defaults`: what
    it may add), named by its path; None if there is none."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{path or 'the Job'} is not an object"
        return _object_difference(actual, expected, defaults if isinstance(defaults, Mapping) else {}, path, quantity)
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{path} has other items"
        item = defaults.item if isinstance(defaults, _Each) else None
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            found = _difference(got, want, item, f"{path}[{index}]", quantity)
            if found is not None:
                return found
        return None
    if actual == expected and type(actual) is type(expected):
        return None
    if quantity and isinstance(actual, str) and isinstance(expected, str) and same_quantity(actual, expected):
        return None
    return f"{path} differs"


def _object_difference(
    actual: Mapping[str, Any], expected: Mapping[str, Any], defaults: _Defaults, path: str, quantity: bool
) -> str | None:
    for key, want in expected.items():
        where = _path(path, key)
        if key not in actual:
            if want in ("", {}, []):  # the API server omits empty values
                continue
            return f"{where} is missing"
        found = _difference(actual[key], want, defaults.get(key), where, quantity or key in QUANTITIES)
        if found is not None:
            return found
    for key in sorted(actual.keys() - expected.keys()):
        found = _not_defaulted(actual[key], defaults.get(key, _ABSENT), _path(path, key))
        if found is not None:
            return found
    return None


_ABSENT = object()


def _not_defaulted(value: Any, default: Any, path: str) -> str | None:
    """Where `value`, of a key the operator does not set, is not what the API server puts there (`default`);
    None if it is."""
    if default is SERVER_SET:
        return None
    if isinstance(default, frozenset):
        return None if isinstance(value, list) and set(value) <= default else f"{path} differs"
    if isinstance(default, Mapping) and isinstance(value, Mapping):
        for key in sorted(value):
            found = _not_defaulted(value[key], default.get(key, _ABSENT), _path(path, key))
            if found is not None:
                return found
        return None
    if isinstance(default, _Each) and isinstance(value, list):
        for index, item in enumerate(value):
            found = _not_defaulted(item, default.item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if default is _ABSENT:
        return f"{path} is set, and schedexec does not set it"
    return None if value == default and type(value) is type(default) else f"{path} differs"


def _path(path: str, key: str) -> str:
    """`path` and `key` the way kubectl's JSONPath reads them (`metadata.labels['app.kubernetes.io/name']`)."""
    if key.replace("_", "a").isalnum():
        return f"{path}.{key}" if path else key
    return f"{path}['{key}']"


_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** e for s, e in (("n", -9), ("u", -6), ("m", -3), ("", 0), ("k", 3), ("M", 6))},
    **{s: Decimal(10) ** e for s, e in (("G", 9), ("T", 12), ("P", 15), ("E", 18))},
}
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))((?:[KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$")


def quantity_value(text: str) -> Decimal | None:
    """The number a Kubernetes resource quantity stands for (`500m` → 0.5, `1Ki` → 1024, `2e3` → 2000); None
    if `text` is no quantity."""
    match = _QUANTITY.match(text)
    if match is None:
        return None
    number, suffix = Decimal(match[1]), match[2] or ""
    if suffix[:1] in ("e", "E"):
        return number.scaleb(int(suffix[1:]))
    return number * _SUFFIXES[suffix]


def stored_quantity(value: Decimal) -> Decimal:
    """`value` as the API server keeps it in a ResourceList: rounded up to milli scale (SetDefaults_ResourceList),
    so `100u` of CPU is kept as `1m`."""
    return (value * 1000).to_integral_value(rounding=ROUND_CEILING) / 1000


def same_quantity(actual: str, expected: str) -> bool:
    value, kept = quantity_value(expected), quantity_value(actual)
    return value is not None and kept is not None and stored_quantity(kept) == stored_quantity(value)
