"""A run's pod template: the operator's default merged with the execution's, and applied to the run's pod.

Platform teams place runs (dedicated nodes, taints, zones), label and annotate them (service meshes, cost
allocation, autoscalers), and give them an environment and a workload identity. `spec.podTemplate` says so per
execution, SCHEDEXEC_RUN_POD_TEMPLATE for every execution (settings.run_pod_template). Both are a
`models.RunPodTemplate`, so the operator's default is refused at startup for what an execution is refused for at
admission.

The merge follows Tekton's default pod template (`MergePodTemplateWithDefault`, tektoncd/pipeline: every field
the TaskRun's own if set, else the default's; env merged by name), with one difference that a platform default
needs: maps (labels, annotations, nodeSelector) are merged key by key, so an execution adding `zone: a` keeps the
default's `pool: batch` (Tekton replaces the whole nodeSelector). docs/run-pods.md has the table.

Applying the merged template only adds to the pod manifests.job_manifest builds: everything that makes a run
safe (the security contexts, no API token unless asked, the runner contract's variables, the run labels and the
args annotation) is written by the operator after the template and cannot be replaced by it; models.RunPodTemplate
refuses what would weaken it (host namespaces, securityContext, volumes, containers, nodeName, Secrets, label and
annotation keys in Kubernetes' reserved namespaces such as an AppArmor or seccomp profile's, a system-* priority).
Pure: unit-tested without a cluster (tests/unit/test_podtemplate.py)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from schedexec import models

SERVICE_ACCOUNT_TOKEN = "SCHEDEXEC_SERVICE_ACCOUNT_TOKEN"
"""Environment variable holding the path of the projected ServiceAccount token (podTemplate.serviceAccountToken)."""
TOKEN_VOLUME = "serviceaccount-token"
TOKEN_DIR = "/var/run/secrets/schedexec.io/serviceaccount"
TOKEN_FILE = "token"
TOKEN_PATH = f"{TOKEN_DIR}/{TOKEN_FILE}"

MERGED_MAPS = (("metadata", "labels"), ("metadata", "annotations"), ("nodeSelector",))
"""Maps merged key by key (the execution's value wins)."""
MERGED_BY_NAME = ("env",)
"""Lists merged by their items' `name` (the execution's item wins, in the default's place)."""

POD_FIELDS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "runtimeClassName",
    "serviceAccountName",
    "dnsPolicy",
    "dnsConfig",
    "hostAliases",
)
"""Template fields copied as they are into the pod's spec."""


def wire(template: models.RunPodTemplate | None) -> dict[str, Any]:
    """`template` as the API server spells it (camelCase, unset fields left out)."""
    return {} if template is None else template.model_dump(by_alias=True, exclude_none=True)


def merge(default: Mapping[str, Any], execution: Mapping[str, Any]) -> dict[str, Any]:
    """The template a run gets (wire form): `execution`'s over the operator's `default` (module docstring)."""
    merged = {**copy.deepcopy(dict(default)), **copy.deepcopy(dict(execution))}
    for path in MERGED_MAPS:
        both = {**_get(default, path), **_get(execution, path)}
        if both:
            _set(merged, path, both)
    for field in MERGED_BY_NAME:
        items = {item["name"]: item for item in default.get(field, [])}
        items.update({item["name"]: item for item in execution.get(field, [])})
        if items:
            merged[field] = copy.deepcopy(list(items.values()))
    if not merged.get("metadata"):
        merged.pop("metadata", None)
    return merged


def _get(template: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node: Any = template
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return dict(node or {})


def _set(template: dict[str, Any], path: tuple[str, ...], value: dict[str, Any]) -> None:
    node = template
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def run_template(default: models.RunPodTemplate | None, execution: models.ScheduledExecution) -> dict[str, Any]:
    """The merged template of `execution`'s runs (wire form; {} when neither sets one)."""
    return merge(wire(default), wire(execution.spec.pod_template))


def apply(
    template: Mapping[str, Any], metadata: Mapping[str, Any], pod: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`metadata` and `pod` (the pod template's, as manifests._pod_spec builds them: one container) with
    `template` added. What the operator sets wins over the template: its labels and annotations, its
    container's env (the runner contract's variables come first, so the template's may refer to them as
    $(SCHEDEXEC_RUN_INDEX)), its security contexts and volumes."""
    meta = copy.deepcopy(dict(metadata))
    spec = copy.deepcopy(dict(pod))
    extra = template.get("metadata", {})
    for part in ("labels", "annotations"):
        if extra.get(part):
            meta[part] = {**extra[part], **meta.get(part, {})}
    spec.update({field: copy.deepcopy(template[field]) for field in POD_FIELDS if field in template})
    spec["automountServiceAccountToken"] = bool(template.get("automountServiceAccountToken", False))
    container = spec["containers"][0]
    if template.get("env"):
        container["env"] = [*container.get("env", []), *copy.deepcopy(template["env"])]
    if template.get("envFrom"):
        container["envFrom"] = copy.deepcopy(template["envFrom"])
    token = template.get("serviceAccountToken")
    if token is not None:
        source = {
            "audience": token["audience"],
            "expirationSeconds": token.get("expirationSeconds", 3600),
            "path": TOKEN_FILE,
        }
        spec["volumes"] = [
            *spec["volumes"],
            {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": source}]}},
        ]
        container["volumeMounts"] = [
            *container["volumeMounts"],
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
        ]
        container["env"] = [*container["env"], {"name": SERVICE_ACCOUNT_TOKEN, "value": TOKEN_PATH}]
    return meta, spec
