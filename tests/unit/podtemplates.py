"""Generated pod templates the API server admits (spec.podTemplate, SCHEDEXEC_RUN_POD_TEMPLATE).

The template's schema comes from the committed CRD, walked by `strategies.strategy_for` (lengths, patterns,
enums and free-JSON nodes as the API server stores them). Its CEL rules sit on nested nodes, which the walker
does not see: `admitted` applies them, each as CEL states it (models.TEMPLATE_REFUSALS and the env rules),
by leaving out what a rule would refuse, so every draw is one `kubectl apply` accepts. The label and
annotation keys are drawn from Kubernetes' key grammar (a free string is almost never one), reserved prefixes
included now and then, and left out as the CEL rule refuses them.

The models are deliberately not the filter: a template admitted here and refused by `models.RunPodTemplate` is
a drift between the CRD and the operator that test_podtemplate.py must see.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from schedexec import models
from tests.unit import strategies

RESERVED_PREFIXES = ("schedexec.io/",)
"""models.RESERVED_KEY_PREFIXES, written again: the CEL rule's words, not the model's constant."""
RESERVED_KEYS = ("job-name", "controller-uid", "app.kubernetes.io/managed-by")
KUBERNETES_KEY = re.compile(r"^([^/]*\.)?(kubernetes\.io|k8s\.io)/")
"""Kubernetes' reserved namespaces: kubernetes.io/, k8s.io/ and their subdomains."""
KUBERNETES_ALLOWED = ("app.kubernetes.io/", "cluster-autoscaler.kubernetes.io/")
KUBERNETES_PREFIXES = (
    "kubernetes.io/",
    "k8s.io/",
    "batch.kubernetes.io/",
    "node.kubernetes.io/",
    "container.apparmor.security.beta.kubernetes.io/",
    "seccomp.security.alpha.kubernetes.io/",
    "scheduler.alpha.kubernetes.io/",
    "sigs.k8s.io/",
    *KUBERNETES_ALLOWED,
)
"""Prefixes in Kubernetes' namespaces the key strategy draws now and then (refused, but the allowed two)."""
LABEL_KEY = re.compile(models.LABEL_KEY_PATTERN)


def template_schema() -> dict[str, Any]:
    return strategies.spec_schema()["properties"]["podTemplate"]  # type: ignore[no-any-return]


@functools.cache
def label_keys() -> st.SearchStrategy[str]:
    """Keys in Kubernetes' grammar, now and then under a reserved prefix or one of the reserved keys."""
    name = st.from_regex(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?", fullmatch=True)
    prefix = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\.[a-z0-9]{1,6}){0,2}/", fullmatch=True)
    reserved = st.sampled_from(RESERVED_PREFIXES + KUBERNETES_PREFIXES)
    return st.one_of(
        name,
        st.builds(str.__add__, prefix, name),
        st.builds(str.__add__, reserved, name),
        st.sampled_from(RESERVED_KEYS),
        st.text(max_size=8),
    )


def key_valid(key: str) -> bool:
    """The first CEL rule on a template map's keys (nodeSelector's only one): a label key."""
    prefix, slash, name = key.rpartition("/")
    return (
        len(key) <= 317
        and LABEL_KEY.fullmatch(key) is not None
        and (len(prefix) <= 253 and len(name) <= 63 if slash else len(key) <= 63)
    )


def key_reserved(key: str) -> bool:
    """The second CEL rule on labels' and annotations' keys: schedexec's, the Job controller's, Kubernetes'."""
    kubernetes = KUBERNETES_KEY.match(key) is not None and not key.startswith(KUBERNETES_ALLOWED)
    return key.startswith(RESERVED_PREFIXES) or key in RESERVED_KEYS or kubernetes


def key_admitted(key: str) -> bool:
    """The two CEL rules on the keys of a template's labels and annotations."""
    return key_valid(key) and not key_reserved(key)


def _keyed(
    draw: st.DrawFn, values: dict[str, Any] | None, admitted: Callable[[str], bool] = key_admitted
) -> dict[str, Any] | None:
    """`values` (drawn from the schema) under keys drawn from `label_keys`, keeping those CEL `admitted`."""
    if values is None:
        return None
    keys = draw(st.lists(label_keys(), max_size=len(values), unique=True))
    return {key: value for key, value in zip(keys, values.values(), strict=False) if admitted(key)}


def _env_admitted(env: dict[str, Any]) -> bool:
    """The env item's CEL rules."""
    name, source = env["name"], env.get("valueFrom")
    if name.startswith("SCHEDEXEC_") or name == "HOME":
        return False
    if source is None:
        return True
    if "secretKeyRef" in source or env.get("value"):
        return False
    return sum(k in source for k in ("configMapKeyRef", "fieldRef", "resourceFieldRef", "secretKeyRef")) == 1


def _toleration_admitted(toleration: dict[str, Any]) -> bool:
    """The toleration's CEL rules."""
    operator, key = toleration.get("operator"), toleration.get("key")
    if operator == "Exists" and toleration.get("value"):
        return False
    if not key and operator != "Exists":
        return False
    return "tolerationSeconds" not in toleration or toleration.get("effect") == "NoExecute"


def _env_from_admitted(env_from: dict[str, Any]) -> bool:
    return "secretRef" not in env_from and "configMapRef" in env_from


@st.composite
def admitted(draw: st.DrawFn) -> dict[str, Any]:
    """A spec.podTemplate the API server admits, as it stores it (wire form)."""
    template: dict[str, Any] = draw(strategies.strategy_for(template_schema()))
    for refused in ("securityContext", "volumes", "containers", "initContainers", "nodeName"):
        template.pop(refused, None)
    for shared in ("hostNetwork", "hostPID", "hostIPC"):
        if template.get(shared):
            template.pop(shared)
    if "metadata" in template:
        meta = template["metadata"]
        for part in ("labels", "annotations"):
            if part in meta:
                meta[part] = _keyed(draw, meta[part])
    if "nodeSelector" in template:
        template["nodeSelector"] = _keyed(draw, template["nodeSelector"], key_valid)
    if "env" in template:
        template["env"] = [env for env in template["env"] if _env_admitted(env)]
    if "tolerations" in template:
        template["tolerations"] = [t for t in template["tolerations"] if _toleration_admitted(t)]
    if "envFrom" in template:
        template["envFrom"] = [env for env in template["envFrom"] if _env_from_admitted(env)]
    if str(template.get("priorityClassName", "")).startswith("system-"):
        template.pop("priorityClassName")
    if template.get("dnsPolicy") == "None" and not (template.get("dnsConfig") or {}).get("nameservers"):
        template.pop("dnsPolicy")
    if "serviceAccountName" not in template:
        template.pop("serviceAccountToken", None)
        if template.get("automountServiceAccountToken"):
            template.pop("automountServiceAccountToken")
    return strategies.apply_defaults(template_schema(), template)  # type: ignore[no-any-return]


GOOD_KEY = "example.com/team"

REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"hostNetwork": True}, "spec.podTemplate.hostNetwork is refused: a run's pod shares no host namespace"),
    ({"hostPID": True}, "spec.podTemplate.hostPID is refused: a run's pod shares no host namespace"),
    ({"hostIPC": True}, "spec.podTemplate.hostIPC is refused: a run's pod shares no host namespace"),
    ({"securityContext": {"runAsUser": 0}}, "spec.podTemplate.securityContext is refused: a run's security context"),
    ({"securityContext": {"privileged": True}}, "spec.podTemplate.securityContext is refused"),
    (
        {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
        "spec.podTemplate.volumes is refused: a run's pod mounts only what schedexec gives it",
    ),
    ({"containers": [{"name": "x", "image": "evil"}]}, "spec.podTemplate.containers is refused"),
    ({"initContainers": [{"name": "x", "image": "evil"}]}, "spec.podTemplate.initContainers is refused"),
    ({"nodeName": "node-1"}, "spec.podTemplate.nodeName is refused: a run's pod is placed by the scheduler"),
    ({"dnsPolicy": "None"}, "spec.podTemplate.dnsPolicy None needs spec.podTemplate.dnsConfig.nameservers"),
    (
        {"serviceAccountToken": {"audience": "vault"}},
        "spec.podTemplate.serviceAccountToken needs spec.podTemplate.serviceAccountName",
    ),
    (
        {"automountServiceAccountToken": True},
        "spec.podTemplate.automountServiceAccountToken needs spec.podTemplate.serviceAccountName",
    ),
    (
        {"env": [{"name": "SCHEDEXEC_ARGS_FILE", "value": "/etc/passwd"}]},
        "spec.podTemplate.env: SCHEDEXEC_* and HOME are the runner contract's variables",
    ),
    ({"env": [{"name": "HOME", "value": "/"}]}, "SCHEDEXEC_* and HOME are the runner contract's variables"),
    (
        {"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]},
        "spec.podTemplate.env[].valueFrom.secretKeyRef is refused: Secrets reach a run only through "
        "spec.credentialsSecretRef",
    ),
    (
        {"env": [{"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]},
        "valueFrom takes exactly one of configMapKeyRef, fieldRef, resourceFieldRef",
    ),
    (
        {"envFrom": [{"secretRef": {"name": "db"}}]},
        "spec.podTemplate.envFrom[].secretRef is refused: Secrets reach a run only through spec.credentialsSecretRef",
    ),
    (
        {"metadata": {"annotations": {"schedexec.io/args": "{}"}}},
        "spec.podTemplate.metadata.annotations may not use the prefixes schedexec.io/",
    ),
    ({"metadata": {"labels": {"job-name": "other"}}}, "spec.podTemplate.metadata.labels may not use the prefixes"),
    (
        {"metadata": {"labels": {"app.kubernetes.io/managed-by": "me"}}},
        "spec.podTemplate.metadata.labels may not use the prefixes",
    ),
    (
        {"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/run": "unconfined"}}},
        "spec.podTemplate.metadata.annotations may not use the prefixes schedexec.io/, kubernetes.io/, "
        "*.kubernetes.io/",
    ),
    (
        {"metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}}},
        "spec.podTemplate.metadata.annotations may not use the prefixes",
    ),
    (
        {"metadata": {"annotations": {"kubernetes.io/egress-bandwidth": "10G"}}},
        "spec.podTemplate.metadata.annotations may not use the prefixes",
    ),
    (
        {"metadata": {"labels": {"batch.kubernetes.io/job-name": "other"}}},
        "spec.podTemplate.metadata.labels may not use the prefixes",
    ),
    ({"metadata": {"labels": {"node.kubernetes.io/role": "x"}}}, "spec.podTemplate.metadata.labels may not use"),
    ({"metadata": {"labels": {"sigs.k8s.io/x": "v"}}}, "spec.podTemplate.metadata.labels may not use the prefixes"),
    ({"metadata": {"labels": {"k8s.io/x": "v"}}}, "spec.podTemplate.metadata.labels may not use the prefixes"),
    ({"nodeSelector": {"bad key!": "x"}}, "every key of spec.podTemplate.nodeSelector must be a valid Kubernetes"),
    (
        {"priorityClassName": "system-node-critical"},
        "spec.podTemplate.priorityClassName system-* is refused: system-node-critical and system-cluster-critical "
        "are for the cluster's own components",
    ),
    ({"priorityClassName": "system-cluster-critical"}, "spec.podTemplate.priorityClassName system-* is refused"),
    (
        {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]},
        "spec.podTemplate.tolerations[]: a value needs operator Equal",
    ),
    ({"tolerations": [{"value": "v"}]}, "spec.podTemplate.tolerations[]: an empty key (every taint) needs operator"),
    (
        {"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]},
        "spec.podTemplate.tolerations[]: tolerationSeconds needs effect NoExecute",
    ),
]
"""Templates refused at `kubectl apply` and by models.RunPodTemplate alike, and (part of) the message both give;
tests/unit/test_podtemplate.py asks the model, tests/cluster/test_pod_template.py the API server."""
