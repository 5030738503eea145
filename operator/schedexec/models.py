"""The ScheduledExecution API: the single source of truth for its schema.

Every field carries the description that `kubectl explain` shows; the CRD
under `crds/` is generated from these models by `schedexec.crd` (`make
crds`), and a test fails when the committed CRD drifts from them. Admission
rules that span fields are CEL rules attached here too, so the API server
refuses a bad spec with a message naming the field before the operator ever
sees it. The operator parses objects with these models and writes status
through them, so what it writes always matches what the CRD admits.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from schedexec_runner import contract

GROUP = "schedexec.io"
VERSION = "v1alpha1"
KIND = "ScheduledExecution"
PLURAL = "scheduledexecutions"
SINGULAR = "scheduledexecution"
SHORT_NAMES = ["sx"]
API_VERSION = f"{GROUP}/{VERSION}"

SELECT_MODEL = contract.SELECT_MODEL
GET_META_MODEL = contract.GET_META_MODEL
VERIFY_CREDENTIALS = contract.VERIFY_CREDENTIALS

MAX_TTL_SECONDS = 3650 * 24 * 3600
"""The longest spec.ttlSecondsAfterFinished: ten years (a larger one overflowed the operator's date arithmetic)."""
MESSAGE_LIMIT = 4096
"""The longest message the status keeps (status.error.message, each condition's message); longer ones are cut
with a marker (decisions.clip), so a component's 256 KiB error message cannot bloat the status."""

HISTORY_LIMIT = 10
"""How many runs `status.history` keeps: enough to debug, bounded for etcd. Only these runs keep their Jobs
(and pods, and so their logs) for spec.runRetentionSeconds: at most this many finished pods per execution."""
MAX_RUN_RETENTION_SECONDS = 7 * 24 * 3600
"""The longest spec.runRetentionSeconds: a week (the operator's Job TTL caps it further)."""
DEFAULT_RUN_TIMEOUT_SECONDS = 300
"""One run's deadline when spec.runTimeoutSeconds is unset, capped at spec.timeoutSeconds
(ScheduledExecutionSpec.run_timeout)."""
WAITING_MESSAGE_LIMIT = 1024
"""How much of a kubelet's or scheduler's message the status quotes."""

JSON = Annotated[Any, Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]
JSONObject = Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown keys ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def rule(expression: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL admission rule (x-kubernetes-validations entry)."""
    entry = {"rule": expression, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


class LocalObjectReference(Model):
    name: str = Field(min_length=1, max_length=253, description="Name of the object in the execution's namespace.")


QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""A Kubernetes resource quantity (100m, 64Mi, 1.5, 2e3), the pattern Kubernetes' own OpenAPI schema uses:
a value the API server would refuse at Job creation is refused at admission, naming the field."""

Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY_PATTERN)]


class ResourceRequirements(Model):
    requests: dict[str, Quantity] | None = Field(
        None, max_length=16, description="Minimum resources for a run's container, e.g. {cpu: 100m, memory: 64Mi}."
    )
    limits: dict[str, Quantity] | None = Field(
        None, max_length=16, description="Maximum resources for a run's container, e.g. {memory: 256Mi}."
    )


class ComponentSpec(Model):
    """Where the method runs: the component's own image."""

    image: str = Field(
        min_length=1, max_length=1024, description="Container image of the component (its runner image)."
    )
    command: list[Annotated[str, Field(max_length=4096)]] | None = Field(
        None,
        max_length=64,
        description="Overrides the image's entrypoint; by default the image runs `schedexec-runner`.",
    )
    resources: ResourceRequirements | None = Field(None, description="Resources of each run's container.")
    image_pull_secrets: list[LocalObjectReference] | None = Field(
        None, max_length=16, description="Secrets for pulling the image from a private registry."
    )
    # --- the elastic.io runtime (issue 29; docs/runner-contract.md, "elastic.io components as they are") ---
    runtime: Literal["schedexec", "elasticio"] | None = Field(
        None,
        description="How the image runs the method. schedexec (unset): the image honours the runner contract "
        "(schedexec-runner or docs/runner-contract.md). elasticio: an elastic.io component image, built the "
        "elastic.io way (the component's repository + npm install), run unmodified by its own sailor "
        "(`runService.js <method>`) for verifyCredentials, getMetaModel or selectModel, with the cfg from "
        "spec.args and the credentials Secret; a receiver from the operator's runner image, a sidecar in the "
        "run's pod, turns sailor's result into the run's outcome. Not with spec.component.command.",
    )
    elasticio: ElasticioComponent | None = Field(
        None, description="Where the elastic.io component lies in its image (runtime elasticio only)."
    )

    @model_validator(mode="after")
    def _runtime_rules(self) -> Self:
        """`COMPONENT_RULES` in Python."""
        for violated, field, message in (
            (self.runtime == ELASTICIO and self.command is not None, "command", COMPONENT_RULES[0]["message"]),
            (self.elasticio is not None and self.runtime != ELASTICIO, "elasticio", COMPONENT_RULES[1]["message"]),
        ):
            if violated:
                raise PydanticCustomError("spec_rule", message, {"field": field})
        return self


ELASTICIO = "elasticio"
"""spec.component.runtime of an elastic.io component run by its own sailor."""
ELASTICIO_METHODS = (VERIFY_CREDENTIALS, GET_META_MODEL, SELECT_MODEL)
"""The methods sailor's service entry point runs."""


class ElasticioComponent(Model):
    component_path: str = Field(
        "/home/node",
        min_length=1,
        max_length=1024,
        pattern=r"^/[^\x00]*$",
        description="The component's directory in the image (component.json, node_modules): "
        "ELASTICIO_COMPONENT_PATH; the official node images' /home/node by default.",
    )


COMPONENT_RULES = [
    rule(
        f"!has(self.runtime) || self.runtime != '{ELASTICIO}' || !has(self.command)",
        "spec.component.command is not taken with runtime elasticio: the run's command is sailor's service entry "
        "point (runService.js), started by schedexec's launcher",
        ".command",
    ),
    rule(
        f"!has(self.elasticio) || (has(self.runtime) && self.runtime == '{ELASTICIO}')",
        "spec.component.elasticio needs spec.component.runtime elasticio",
        ".elasticio",
    ),
]
ELASTICIO_METHOD_MESSAGE = (
    f"spec.method must be {', '.join(ELASTICIO_METHODS)} with spec.component.runtime elasticio: the service "
    "methods sailor's runService.js runs"
)


# --- spec.podTemplate: where and how a run's pod runs (issue 27; docs/run-pods.md) ---------------------------

LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
"""A Kubernetes label or annotation key: an optional DNS-subdomain prefix and `/`, then a name (at most 63
characters; the prefix at most 253). No backslash: the same text is a CEL string literal."""
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
RESERVED_KEY_PREFIXES = ("schedexec.io/",)
"""schedexec's label and annotation prefix (the run labels, the args annotation)."""
RESERVED_KEYS = ("job-name", "controller-uid", "app.kubernetes.io/managed-by")
"""Keys the Job controller (job-name, controller-uid) or schedexec (managed-by) puts on a run's pod."""
KUBERNETES_NAMESPACES = ("kubernetes.io", "k8s.io")
"""Kubernetes' reserved label and annotation namespaces: a key whose prefix is one of them or a subdomain of one
(kubernetes.io/, batch.kubernetes.io/, node.kubernetes.io/, container.apparmor.security.beta.kubernetes.io/,
seccomp.security.alpha.kubernetes.io/) is Kubernetes' own, and some of them tell the kubelet how to run the pod (an
AppArmor or seccomp profile: `container.apparmor.security.beta.kubernetes.io/run: unconfined`). A template may not
set them, but for KUBERNETES_PREFIXES_ALLOWED."""
KUBERNETES_KEY_PATTERN = "^([^/]*[.])?(" + "|".join(n.replace(".", "[.]") for n in KUBERNETES_NAMESPACES) + ")/"
"""A key in KUBERNETES_NAMESPACES (no backslash: the same text is a CEL string literal)."""
KUBERNETES_PREFIXES_ALLOWED = ("app.kubernetes.io/", "cluster-autoscaler.kubernetes.io/")
"""The exceptions: Kubernetes' recommended labels (app.kubernetes.io/name, part-of, ...; managed-by aside) and the
cluster autoscaler's hints about a pod (safe-to-evict): they describe the pod, they change nothing in how it runs."""
RESERVED_ENV_PREFIX = "SCHEDEXEC_"
RESERVED_ENV_NAMES = ("HOME",)
"""Variables the runner contract owns (SCHEDEXEC_*; HOME, the writable emptyDir)."""
SECRETS_THROUGH_CREDENTIALS = "Secrets reach a run only through spec.credentialsSecretRef"

MAX_TEMPLATE_MAP = 32
"""Most entries of each of podTemplate's maps (labels, annotations, nodeSelector)."""
MAX_ANNOTATION_VALUE = 4096
"""Longest value of a template annotation: 32 of them leave most of the pod's 256 KiB of annotations to the
args (contract.MAX_ARGS_BYTES)."""


def reserved_key(key: str) -> bool:
    """Whether a template may not use label or annotation key `key` (the second CEL rule of `_map_key_rules`)."""
    kubernetes = re.match(KUBERNETES_KEY_PATTERN, key) is not None and not key.startswith(KUBERNETES_PREFIXES_ALLOWED)
    return key.startswith(RESERVED_KEY_PREFIXES) or key in RESERVED_KEYS or kubernetes


def key_problem(key: str, *, reserved: bool = True) -> int | None:
    """Which of the CEL rules of `_map_key_rules` `key` breaks (0: not a key, 1: reserved), or None. Without
    `reserved`, only the first (nodeSelector's keys are node labels, Kubernetes' own among them)."""
    prefix, slash, name = key.rpartition("/")
    lengths = len(prefix) <= 253 and len(name) <= 63 if slash else len(key) <= 63
    if len(key) > 317 or not lengths or re.fullmatch(LABEL_KEY_PATTERN, key) is None:
        return 0
    if reserved and reserved_key(key):
        return 1
    return None


def validations(rules: list[dict[str, str]]) -> dict[str, Any]:
    """`rules` as a schema's x-kubernetes-validations (for json_schema_extra)."""
    return {"x-kubernetes-validations": rules}


def _map_key_rules(what: str) -> list[dict[str, str]]:
    """The CEL rules on a template map's keys (mirrored by `key_problem`): a valid key, not a reserved one (the
    second rule is left out for nodeSelector, whose keys are node labels: kubernetes.io/arch,
    topology.kubernetes.io/zone)."""
    prefixes = " || ".join(f"k.startsWith('{p}')" for p in RESERVED_KEY_PREFIXES)
    reserved = ", ".join(f"'{k}'" for k in RESERVED_KEYS)
    allowed = " || ".join(f"k.startsWith('{p}')" for p in KUBERNETES_PREFIXES_ALLOWED)
    kubernetes = " or ".join(f"{n}/, *.{n}/" for n in KUBERNETES_NAMESPACES)
    rules = [
        rule(
            f"self.all(k, size(k) <= 317 && k.matches('{LABEL_KEY_PATTERN}')"
            " && (k.indexOf('/') < 0 ? size(k) <= 63 : k.indexOf('/') <= 253 && size(k) - k.indexOf('/') <= 64))",
            f"every key of spec.podTemplate.{what} must be a valid Kubernetes label or annotation key "
            "(an optional DNS-subdomain prefix and '/', then at most 63 characters)",
        ),
        rule(
            f"self.all(k, !({prefixes} || k in [{reserved}] || k.matches('{KUBERNETES_KEY_PATTERN}') && !({allowed})))",
            f"spec.podTemplate.{what} may not use the prefixes {', '.join(RESERVED_KEY_PREFIXES)}, {kubernetes} "
            f"(Kubernetes' reserved namespaces, but {' and '.join(KUBERNETES_PREFIXES_ALLOWED)}) or the keys "
            f"{', '.join(RESERVED_KEYS)}: they are schedexec's run labels and args annotation, the Job "
            "controller's and Kubernetes' own, and some set how the kubelet runs the pod (an AppArmor or seccomp "
            "profile)",
        ),
    ]
    return rules[:1] if what == "nodeSelector" else rules


def _keyed(what: str, description: str) -> Any:
    """The Field of a template map keyed by label/annotation keys (checked by CEL and by `_keys_allowed`)."""
    return Field(
        None,
        max_length=MAX_TEMPLATE_MAP,
        description=description,
        json_schema_extra=validations(_map_key_rules(what)),
    )


LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]


KEYED_MAPS = {"labels": "metadata.labels", "annotations": "metadata.annotations", "node_selector": "nodeSelector"}
"""Each template map keyed by label keys: its path under spec.podTemplate."""


def _keys_allowed(value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
    """The CEL rules of `_map_key_rules`, with their messages."""
    field = KEYED_MAPS[str(info.field_name)]
    for key in value or {}:
        broken = key_problem(key, reserved=field != "nodeSelector")
        if broken is not None:
            raise PydanticCustomError("spec_rule", _map_key_rules(field)[broken]["message"], {"field": field})
    return value


class PodMetadata(Model):
    labels: dict[str, LabelValue] | None = _keyed(
        "metadata.labels",
        f"Labels added to each run's pod (at most {MAX_TEMPLATE_MAP}). Reserved keys are refused: schedexec's "
        "(schedexec.io/, app.kubernetes.io/managed-by), the Job controller's (job-name, controller-uid) and "
        "Kubernetes' reserved namespaces (kubernetes.io/, k8s.io/ and every *.kubernetes.io/, *.k8s.io/ such as "
        "batch.kubernetes.io/ or container.apparmor.security.beta.kubernetes.io/), but app.kubernetes.io/ (the "
        "recommended labels) and cluster-autoscaler.kubernetes.io/.",
    )
    annotations: dict[str, Annotated[str, Field(max_length=MAX_ANNOTATION_VALUE)]] | None = _keyed(
        "metadata.annotations",
        f"Annotations added to each run's pod (at most {MAX_TEMPLATE_MAP}, values of at most "
        f"{MAX_ANNOTATION_VALUE} characters), e.g. a service mesh's or a cluster autoscaler's. The same keys as "
        "for labels are reserved: schedexec.io/args carries the run's args.",
    )

    _keys = field_validator("labels", "annotations")(_keys_allowed)


class Toleration(Model):
    """A toleration of the run's pod (core/v1 Toleration)."""

    key: str | None = Field(
        None,
        max_length=317,
        # empty, or a key; one trailing `$` (in an alternative `^$|...`, Python's `$` also matches before a "\n",
        # so generated inputs broke the rule the API server applies)
        pattern=f"^({LABEL_KEY_PATTERN[1:-1]})?$",
        description="The taint key it tolerates; empty with operator Exists: every taint.",
    )
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (Kubernetes' default).")
    value: str | None = Field(
        None, max_length=63, pattern=LABEL_VALUE_PATTERN, description="The taint value, with operator Equal."
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="NoSchedule, PreferNoSchedule or NoExecute; empty: every effect."
    )
    toleration_seconds: int | None = Field(
        None, ge=0, le=MAX_TTL_SECONDS, description="With effect NoExecute: how long the pod stays on a tainted node."
    )

    @model_validator(mode="after")
    def _toleration_rules(self) -> Self:
        """TOLERATION_RULES (the CEL rules on each toleration), with their messages."""
        wire = self.model_dump(by_alias=True, exclude_none=True)
        for broken in TOLERATION_RULES:
            if broken.refused(wire):
                raise PydanticCustomError("spec_rule", broken.message, {"field": broken.field})
        return self


class Affinity(Model):
    """Affinity of the run's pod (core/v1 Affinity). Each part is passed on as written; the API server checks
    it when it creates the run's Job, and a Job it refuses fails the execution with reason JobRejected and the
    API server's message."""

    node_affinity: JSONObject | None = Field(None, description="core/v1 NodeAffinity.")
    pod_affinity: JSONObject | None = Field(None, description="core/v1 PodAffinity.")
    pod_anti_affinity: JSONObject | None = Field(None, description="core/v1 PodAntiAffinity.")


class ConfigMapKeySelector(Model):
    name: DnsSubdomain = Field(description="The ConfigMap, in the execution's namespace.")
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="Its key.")
    optional: bool | None = Field(None, description="Start the run even if the ConfigMap or key is missing.")


class ObjectFieldSelector(Model):
    field_path: str = Field(min_length=1, max_length=256, description="A downward-API field, e.g. spec.nodeName.")
    api_version: str | None = Field(None, max_length=64, description="Its schema version (default v1).")


class ResourceFieldSelector(Model):
    resource: str = Field(min_length=1, max_length=64, description="limits.cpu, requests.memory, ...")
    container_name: str | None = Field(None, max_length=63, description="The run's container (run) if set.")
    divisor: Quantity | None = Field(None, description="Unit of the value (default 1).")


class EnvVarSource(Model):
    config_map_key_ref: ConfigMapKeySelector | None = Field(None, description="A key of a ConfigMap.")
    field_ref: ObjectFieldSelector | None = Field(None, description="A field of the run's pod (downward API).")
    resource_field_ref: ResourceFieldSelector | None = Field(None, description="A resource of the run's container.")
    secret_key_ref: JSONObject | None = Field(
        None, description=f"Refused: {SECRETS_THROUGH_CREDENTIALS} (declared only to say so at admission)."
    )


class EnvVar(Model):
    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=ENV_NAME_PATTERN,
        description="The variable's name; SCHEDEXEC_* and HOME are the runner contract's and refused.",
    )
    value: str | None = Field(None, max_length=32768, description="Its value.")
    value_from: EnvVarSource | None = Field(
        None, description="Or where its value comes from: exactly one of configMapKeyRef, fieldRef, resourceFieldRef."
    )


class ConfigMapEnvSource(Model):
    name: DnsSubdomain = Field(description="The ConfigMap, in the execution's namespace.")
    optional: bool | None = Field(None, description="Start the run even if the ConfigMap is missing.")


class EnvFromSource(Model):
    config_map_ref: ConfigMapEnvSource | None = Field(None, description="Every key of a ConfigMap as a variable.")
    prefix: str | None = Field(None, max_length=253, description="Put before each key's name.")
    secret_ref: JSONObject | None = Field(
        None, description=f"Refused: {SECRETS_THROUGH_CREDENTIALS} (declared only to say so at admission)."
    )


class ServiceAccountToken(Model):
    """An audience-bound token of spec.podTemplate.serviceAccountName, projected read-only into the run."""

    audience: str = Field(
        min_length=1,
        max_length=253,
        description="The token's audience: the service that accepts it. Under the chart's operatorJobs policy, not "
        "one of the Kubernetes API server's audiences (admissionPolicy.kubernetesApiAudiences) unless "
        "admissionPolicy.allowRunApiTokens.",
    )
    expiration_seconds: int = Field(
        3600, ge=600, le=86400, description="Its lifetime; the kubelet renews it at 80% of it."
    )


class PodDNSConfigOption(Model):
    name: str = Field(min_length=1, max_length=64, description="A resolver option, e.g. ndots.")
    value: str | None = Field(None, max_length=64, description="Its value.")


class PodDNSConfig(Model):
    nameservers: list[Annotated[str, Field(max_length=45)]] | None = Field(
        None, max_length=3, description="Name server IPs."
    )
    searches: list[Annotated[str, Field(max_length=253)]] | None = Field(
        None, max_length=32, description="DNS search domains."
    )
    options: list[PodDNSConfigOption] | None = Field(None, max_length=16, description="Resolver options.")


class HostAlias(Model):
    ip: str = Field(min_length=1, max_length=45, description="The address.")
    hostnames: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        min_length=1, max_length=16, description="Names /etc/hosts gives it."
    )


SECURITY_MODEL = "(schedexec's security model, docs/security.md)"
SYSTEM_PRIORITY_PREFIX = "system-"
"""Kubernetes' own PriorityClasses (system-node-critical, system-cluster-critical), which a template may not name."""


@dataclass(frozen=True)
class Refusal:
    """A podTemplate rule: its CEL rule and the same check in Python, with one message."""

    field: str
    """The field it points at (camelCase)."""
    cel: str
    """CEL on the template (`self`): true when admitted."""
    refused: Callable[[Mapping[str, Any]], bool]
    """The same on the template's wire form: true when refused."""
    message: str


def _refusal(
    field: str, why: str, cel: str | None = None, refused: Callable[[Mapping[str, Any]], bool] | None = None
) -> Refusal:
    return Refusal(
        field=field,
        cel=cel or f"!has(self.{field})",
        refused=refused or (lambda template: field in template),
        message=f"spec.podTemplate.{field} is refused: {why} {SECURITY_MODEL}",
    )


def _host_namespace(field: str) -> Refusal:
    return _refusal(
        field,
        "a run's pod shares no host namespace",
        f"!has(self.{field}) || !self.{field}",
        lambda template: template.get(field) is True,
    )


def _needs_account(field: str, what: str, cel: str, present: Callable[[Mapping[str, Any]], bool]) -> Refusal:
    return Refusal(
        field=field,
        cel=f"{cel} || has(self.serviceAccountName)",
        refused=lambda template: present(template) and "serviceAccountName" not in template,
        message=f"spec.podTemplate.{field} needs spec.podTemplate.serviceAccountName: {what}",
    )


TEMPLATE_REFUSALS = (
    _host_namespace("hostNetwork"),
    _host_namespace("hostPID"),
    _host_namespace("hostIPC"),
    _refusal(
        "securityContext",
        "a run's security context is the operator's: non-root (run_as_user), read-only root filesystem, no "
        "privilege escalation, every capability dropped, the runtime's seccomp profile",
    ),
    _refusal(
        "volumes",
        "a run's pod mounts only what schedexec gives it (args, credentials, a token): no hostPath or other volume",
    ),
    _refusal("containers", "a run's pod has one container, the component's (spec.component)"),
    _refusal("initContainers", "a run's pod has one container, the component's (spec.component)"),
    _refusal("nodeName", "a run's pod is placed by the scheduler (use nodeSelector, affinity and tolerations)"),
    Refusal(
        field="priorityClassName",
        cel=f"!has(self.priorityClassName) || !self.priorityClassName.startsWith('{SYSTEM_PRIORITY_PREFIX}')",
        refused=lambda t: str(t.get("priorityClassName", "")).startswith(SYSTEM_PRIORITY_PREFIX),
        message=f"spec.podTemplate.priorityClassName {SYSTEM_PRIORITY_PREFIX}* is refused: system-node-critical and "
        "system-cluster-critical are for the cluster's own components (a run at that priority would preempt them "
        f"and be evicted last) {SECURITY_MODEL}",
    ),
    Refusal(
        field="dnsPolicy",
        cel="!has(self.dnsPolicy) || self.dnsPolicy != 'None' || (has(self.dnsConfig)"
        " && has(self.dnsConfig.nameservers) && size(self.dnsConfig.nameservers) > 0)",
        refused=lambda t: t.get("dnsPolicy") == "None" and not (t.get("dnsConfig") or {}).get("nameservers"),
        message="spec.podTemplate.dnsPolicy None needs spec.podTemplate.dnsConfig.nameservers: the pod has no "
        "other name server",
    ),
    _needs_account(
        "serviceAccountToken",
        "whose token it is",
        "!has(self.serviceAccountToken)",
        lambda t: "serviceAccountToken" in t,
    ),
    _needs_account(
        "automountServiceAccountToken",
        "whose token it mounts",
        "!has(self.automountServiceAccountToken) || !self.automountServiceAccountToken",
        lambda t: t.get("automountServiceAccountToken") is True,
    ),
)
"""Every rule on the template as a whole, in CEL (on the CRD) and in Python (RunPodTemplate._template_rules)."""

TOLERATION_RULES = (
    Refusal(
        field="value",
        cel="!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
        refused=lambda t: t.get("operator") == "Exists" and bool(t.get("value")),
        message="spec.podTemplate.tolerations[]: a value needs operator Equal (Exists matches any value)",
    ),
    Refusal(
        field="key",
        cel="(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
        refused=lambda t: not t.get("key") and t.get("operator") != "Exists",
        message="spec.podTemplate.tolerations[]: an empty key (every taint) needs operator Exists",
    ),
    Refusal(
        field="tolerationSeconds",
        cel="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        refused=lambda t: "tolerationSeconds" in t and t.get("effect") != "NoExecute",
        message="spec.podTemplate.tolerations[]: tolerationSeconds needs effect NoExecute",
    ),
)
"""The CEL rules on each toleration (Kubernetes' own checks of a pod's tolerations, at admission instead of at
the run's Job creation), and the same in Python (Toleration._toleration_rules)."""


def _env_rules() -> list[dict[str, str]]:
    reserved = " || ".join(f"self.name == '{n}'" for n in RESERVED_ENV_NAMES)
    return [
        rule(
            f"!self.name.startsWith('{RESERVED_ENV_PREFIX}') && !({reserved})",
            f"spec.podTemplate.env: {RESERVED_ENV_PREFIX}* and {', '.join(RESERVED_ENV_NAMES)} are the runner "
            "contract's variables (docs/runner-contract.md), not a template's",
        ),
        rule(
            "!has(self.valueFrom) || !has(self.valueFrom.secretKeyRef)",
            f"spec.podTemplate.env[].valueFrom.secretKeyRef is refused: {SECRETS_THROUGH_CREDENTIALS}",
        ),
        rule(
            "!has(self.valueFrom) || (!has(self.value) || self.value == '') && ("
            "(has(self.valueFrom.configMapKeyRef) ? 1 : 0) + (has(self.valueFrom.fieldRef) ? 1 : 0)"
            " + (has(self.valueFrom.resourceFieldRef) ? 1 : 0) + (has(self.valueFrom.secretKeyRef) ? 1 : 0) == 1)",
            "spec.podTemplate.env[]: valueFrom takes exactly one of configMapKeyRef, fieldRef, resourceFieldRef, "
            "and no value beside it",
        ),
    ]


def _env_from_rules() -> list[dict[str, str]]:
    return [
        rule(
            "!has(self.secretRef)",
            f"spec.podTemplate.envFrom[].secretRef is refused: {SECRETS_THROUGH_CREDENTIALS}",
        ),
        rule("has(self.configMapRef)", "spec.podTemplate.envFrom[] needs a configMapRef"),
    ]


def _env_problem(env: EnvVar) -> str | None:
    """`_env_rules` in Python: the message of the first rule `env` breaks."""
    messages = [r["message"] for r in _env_rules()]
    source = env.value_from
    if env.name.startswith(RESERVED_ENV_PREFIX) or env.name in RESERVED_ENV_NAMES:
        return messages[0]
    if source is not None and source.secret_key_ref is not None:
        return messages[1]
    if source is not None:
        sources = [source.config_map_key_ref, source.field_ref, source.resource_field_ref, source.secret_key_ref]
        if env.value or sum(s is not None for s in sources) != 1:
            return messages[2]
    return None


def _env_from_problem(env_from: EnvFromSource) -> str | None:
    messages = [r["message"] for r in _env_from_rules()]
    if env_from.secret_ref is not None:
        return messages[0]
    if env_from.config_map_ref is None:
        return messages[1]
    return None


EnvVar.model_config["json_schema_extra"] = validations(_env_rules())
ComponentSpec.model_config["json_schema_extra"] = validations(COMPONENT_RULES)
Toleration.model_config["json_schema_extra"] = validations([rule(r.cel, r.message) for r in TOLERATION_RULES])
EnvFromSource.model_config["json_schema_extra"] = validations(_env_from_rules())

DNS_POLICIES = ("ClusterFirst", "Default", "None")
"""ClusterFirstWithHostNet is left out: it differs from ClusterFirst only for a pod on the host network, which
a run's pod never is."""


class RunPodTemplate(Model):
    """Where and how a run's pod runs: placement, metadata, environment, identity and DNS (docs/run-pods.md).
    The operator's default template (SCHEDEXEC_RUN_POD_TEMPLATE) is merged under it: maps (labels,
    annotations, nodeSelector) and env key by key, the execution's winning; every other field the execution's
    if set, else the default's. Fields that would break the security model are refused with the reason."""

    metadata: PodMetadata | None = Field(None, description="Labels and annotations of each run's pod.")
    node_selector: dict[str, LabelValue] | None = _keyed(
        "nodeSelector",
        f"Node labels a run's node must have (at most {MAX_TEMPLATE_MAP}), Kubernetes' own included "
        "(kubernetes.io/arch, topology.kubernetes.io/zone).",
    )
    tolerations: list[Toleration] | None = Field(None, max_length=32, description="Taints a run's pod tolerates.")
    affinity: Affinity | None = Field(
        None,
        description="Node affinity, pod affinity and anti-affinity (core/v1 Affinity), passed on as written: the "
        "API server checks them when it creates a run's Job, and a Job it refuses fails the execution with reason "
        "JobRejected and the API server's message.",
    )
    topology_spread_constraints: list[JSONObject] | None = Field(
        None,
        max_length=8,
        description="core/v1 TopologySpreadConstraints, passed on as written (checked by the API server when "
        "it creates a run's Job: a refusal fails the execution with reason JobRejected).",
    )
    priority_class_name: DnsSubdomain | None = Field(
        None,
        description="PriorityClass of each run's pod; system-* (system-node-critical, system-cluster-critical) is "
        "refused: they are for the cluster's own components.",
    )
    runtime_class_name: DnsSubdomain | None = Field(None, description="RuntimeClass of each run's pod (gVisor, Kata).")
    env: list[EnvVar] | None = Field(
        None,
        max_length=64,
        description="Environment variables of the run's container: a value, or a ConfigMap key, a pod field or "
        f"a resource (valueFrom). secretKeyRef is refused: {SECRETS_THROUGH_CREDENTIALS}. SCHEDEXEC_* and HOME "
        "are the runner contract's and refused; the contract's variables win over envFrom too.",
    )
    env_from: list[EnvFromSource] | None = Field(
        None,
        max_length=16,
        description=f"ConfigMaps whose keys become variables (configMapRef, prefix). secretRef is refused: "
        f"{SECRETS_THROUGH_CREDENTIALS}. Naming a ConfigMap in env or envFrom requires being allowed to get it "
        "(the admission policy).",
    )
    service_account_name: DnsSubdomain | None = Field(
        None,
        description="Run as this ServiceAccount (workload identity, e.g. a cloud IAM binding). Its token is still "
        "not mounted unless automountServiceAccountToken or serviceAccountToken asks for it. Naming it requires "
        "being allowed to create its token (serviceaccounts/token; the admission policy).",
    )
    automount_service_account_token: bool | None = Field(
        None,
        description="Mount the ServiceAccount's Kubernetes API token (default false: a run has no API "
        "credentials unless asked). Needs serviceAccountName. The chart's operatorJobs policy refuses true unless "
        "admissionPolicy.allowRunApiTokens (the run's Job fails JobRejected).",
    )
    service_account_token: ServiceAccountToken | None = Field(
        None,
        description="Project an audience-bound token of serviceAccountName read-only into the run; its path is "
        "in SCHEDEXEC_SERVICE_ACCOUNT_TOKEN. Needs serviceAccountName.",
    )
    dns_policy: Literal["ClusterFirst", "Default", "None"] | None = Field(
        None,
        description="ClusterFirst (Kubernetes' default), Default or None (needs dnsConfig.nameservers). "
        "ClusterFirstWithHostNet is not offered: a run's pod is never on the host network.",
    )
    dns_config: PodDNSConfig | None = Field(None, description="Name servers, searches and options of the pod.")
    host_aliases: list[HostAlias] | None = Field(None, max_length=16, description="Entries added to /etc/hosts.")
    # declared only to be refused with the reason (TEMPLATE_REFUSALS): unknown fields would be pruned silently
    host_network: bool | None = Field(None, description="Refused when true: a run's pod shares no host namespace.")
    host_pid: bool | None = Field(
        None, alias="hostPID", description="Refused when true: a run's pod shares no host namespace."
    )
    host_ipc: bool | None = Field(
        None, alias="hostIPC", description="Refused when true: a run's pod shares no host namespace."
    )
    security_context: JSONObject | None = Field(
        None, description="Refused: the run's security context is the operator's (docs/security.md)."
    )
    volumes: list[JSONObject] | None = Field(
        None, max_length=16, description="Refused: a run's pod mounts only what schedexec gives it."
    )
    containers: list[JSONObject] | None = Field(
        None, max_length=16, description="Refused: a run's pod has one container, spec.component's."
    )
    init_containers: list[JSONObject] | None = Field(
        None, max_length=16, description="Refused: a run's pod has one container, spec.component's."
    )
    node_name: str | None = Field(None, max_length=253, description="Refused: a run's pod is placed by the scheduler.")

    @model_validator(mode="after")
    def _template_rules(self) -> Self:
        """TEMPLATE_REFUSALS and the env rules, for templates built in Python (the operator's default, a spec
        read back): refused here with the API server's own message; `ctx.field` names the field."""
        wire = self.model_dump(by_alias=True, exclude_none=True)
        broken = [(r.field, r.message) for r in TEMPLATE_REFUSALS if r.refused(wire)]
        broken += [("env", p) for p in map(_env_problem, self.env or []) if p is not None]
        broken += [("envFrom", p) for p in map(_env_from_problem, self.env_from or []) if p is not None]
        if broken:
            field, message = broken[0]
            raise PydanticCustomError("spec_rule", message, {"field": field})
        return self

    _keys = field_validator("node_selector")(_keys_allowed)


RunPodTemplate.model_config["json_schema_extra"] = validations(
    [rule(r.cel, r.message, f".{r.field}") for r in TEMPLATE_REFUSALS]
)


class ScheduledExecutionSpec(Model):
    """What to run, with which inputs, and within which limits. Immutable once created,
    except `cancel`."""

    component: ComponentSpec = Field(description="The component image that runs the method.")
    method: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[A-Za-z][A-Za-z0-9_.:-]*$",
        description=(
            "The method to run: selectModel, getMetaModel, verifyCredentials (elastic.io), "
            "or the name of any command the component registers (polling commands included)."
        ),
    )
    module: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="The action or trigger the method is about; required for getMetaModel.",
    )
    function: str | None = Field(
        None,
        min_length=1,
        max_length=253,
        description="The select-model function to call (the field's `model`); required for selectModel.",
    )
    args: JSONObject = Field(
        default_factory=dict,
        description="Arguments of the first run, a free JSON object (elastic.io's cfg, XSOAR's args). "
        "A run that schedules another gives the next run's args itself. At most "
        f"{contract.MAX_ARGS_BYTES // 1024} KiB as compact JSON: larger args fail the execution with reason "
        "ArgsTooLarge before any run starts (they reach the run through a pod annotation).",
    )
    credentials_secret_ref: LocalObjectReference | None = Field(
        None,
        description="A Secret in the same namespace whose keys are mounted read-only into every run "
        "(one file per key). Its values are never copied into the execution, events or logs.",
    )
    pod_template: RunPodTemplate | None = Field(
        None,
        description="Where and how each run's pod runs: nodeSelector, tolerations, affinity, labels and "
        "annotations, env, a ServiceAccount, DNS (docs/run-pods.md). Merged over the operator's default "
        "template; fields that would break the security model are refused with the reason.",
    )
    timeout_seconds: int = Field(
        600,
        ge=1,
        le=7 * 24 * 3600,
        description="Deadline of the whole sequence, from its start; past it the running run is stopped "
        "and the execution ends TimedOut (XSOAR's timeout_in_seconds).",
    )
    run_timeout_seconds: int | None = Field(
        None,
        ge=1,
        le=24 * 3600,
        description="Deadline of one run (the Job's activeDeadlineSeconds); a run past it fails. "
        f"Unset: {DEFAULT_RUN_TIMEOUT_SECONDS} seconds, or spec.timeoutSeconds if that is shorter. "
        "When set, it must not exceed spec.timeoutSeconds.",
    )
    retries: int = Field(
        1,
        ge=0,
        le=10,
        description="How often a run whose pod died without reporting an outcome is retried "
        "(the Job's backoffLimit). A reported error is never retried.",
    )
    max_runs: int = Field(
        100,
        ge=1,
        le=10000,
        description="Upper bound on runs in one sequence; a run that schedules past it fails the execution.",
    )
    ttl_seconds_after_finished: int | None = Field(
        None,
        ge=0,
        le=MAX_TTL_SECONDS,
        description=f"Delete the execution this long after it finished (at most {MAX_TTL_SECONDS // 86400} days); "
        "unset keeps it.",
    )
    run_retention_seconds: int | None = Field(
        None,
        ge=0,
        le=MAX_RUN_RETENTION_SECONDS,
        description="How long each finished run's Job and pod (and so its log: `kubectl logs -n NS job/NAME`, "
        "named in status.history[].logs) are kept after the run's outcome is recorded, whether it returned a result, "
        "scheduled another run, reported an error or died; "
        f"0 deletes them at once; unset takes the operator's default (SCHEDEXEC_RUN_RETENTION_SECONDS). At most "
        f"{MAX_RUN_RETENTION_SECONDS // 86400} days, and never longer than the operator's Job TTL "
        "(SCHEDEXEC_JOB_TTL_SECONDS). Only the runs in status.history keep theirs, and the execution's deletion "
        "deletes them. A run stopped by a timeout, a cancellation or the watchdog has its pod stopped, and its "
        "log goes with it.",
    )
    cancel: bool = Field(
        False,
        description="Set to true to stop the execution without deleting it: the running run is stopped "
        "and the execution ends Cancelled. Cannot be set back to false.",
    )

    @property
    def run_timeout(self) -> int:
        """One run's deadline in seconds: spec.runTimeoutSeconds if set, else DEFAULT_RUN_TIMEOUT_SECONDS capped
        at the sequence's timeoutSeconds. Computed, not defaulted by the CRD: a server-side default would be
        compared with a shorter timeoutSeconds by the CEL rule and refuse a spec that never named the field."""
        if self.run_timeout_seconds is not None:
            return self.run_timeout_seconds
        return min(DEFAULT_RUN_TIMEOUT_SECONDS, self.timeout_seconds)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        """The CEL rules that span fields (see `_spec_rules`), for specs built in Python: a bad spec is
        refused here with the API server's own message, and the error's `ctx.field` names the field it
        points at. As in CEL (`has()`), the timeout rule applies when both timeouts are set; the API
        server defaults timeoutSeconds, so every stored object that sets runTimeoutSeconds is checked (one that
        leaves it unset runs for `run_timeout`, never longer than timeoutSeconds)."""
        both_timeouts = {"timeout_seconds", "run_timeout_seconds"} <= self.model_fields_set
        broken = (
            (
                self.method == GET_META_MODEL and self.module is None,
                "module",
                "spec.module is required when method is getMetaModel",
            ),
            (
                self.method == SELECT_MODEL and self.function is None,
                "function",
                "spec.function (the select-model function) is required when method is selectModel",
            ),
            (
                self.component.runtime == ELASTICIO and self.method not in ELASTICIO_METHODS,
                "method",
                ELASTICIO_METHOD_MESSAGE,
            ),
            (
                both_timeouts and (self.run_timeout_seconds or 0) > self.timeout_seconds,
                "runTimeoutSeconds",
                "spec.runTimeoutSeconds must not exceed spec.timeoutSeconds",
            ),
        )
        for violated, field, message in broken:
            if violated:
                raise PydanticCustomError("spec_rule", message, {"field": field})
        return self


IMMUTABLE_SPEC_FIELDS = [
    info.alias or name for name, info in ScheduledExecutionSpec.model_fields.items() if name != "cancel"
]


CEL_RESERVED = frozenset(
    {
        *("as", "break", "const", "continue", "else", "for", "function", "if", "import"),
        *("let", "loop", "package", "namespace", "return", "var", "void", "while"),
    }
)


def cel(field: str) -> str:
    """A property name as CEL spells it: reserved words are escaped as __word__."""
    return f"__{field}__" if field in CEL_RESERVED else field


def _spec_rules() -> list[dict[str, str]]:
    """Cross-field rules and immutability (every field but `cancel`)."""
    rules = [
        rule(
            f"self.method != '{GET_META_MODEL}' || has(self.module)",
            "spec.module is required when method is getMetaModel",
            ".module",
        ),
        rule(
            f"self.method != '{SELECT_MODEL}' || has(self.{cel('function')})",
            "spec.function (the select-model function) is required when method is selectModel",
            ".function",
        ),
        rule(
            f"!has(self.component.runtime) || self.component.runtime != '{ELASTICIO}' || self.method in "
            f"[{', '.join(repr(m) for m in ELASTICIO_METHODS)}]",
            ELASTICIO_METHOD_MESSAGE,
            ".method",
        ),
        rule(
            "!has(self.runTimeoutSeconds) || !has(self.timeoutSeconds)"
            " || self.runTimeoutSeconds <= self.timeoutSeconds",
            "spec.runTimeoutSeconds must not exceed spec.timeoutSeconds",
            ".runTimeoutSeconds",
        ),
        rule(
            "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
            "spec.cancel cannot be set back to false",
            ".cancel",
        ),
    ]
    rules += [
        rule(
            f"has(self.{c}) == has(oldSelf.{c}) && (!has(self.{c}) || self.{c} == oldSelf.{c})",
            f"spec.{field} is immutable",
            f".{field}",
        )
        for field in IMMUTABLE_SPEC_FIELDS
        for c in [cel(field)]
    ]
    return rules


def _with_rules(schema: dict[str, Any]) -> None:
    schema["x-kubernetes-validations"] = _spec_rules()


ScheduledExecutionSpec.model_config["json_schema_extra"] = _with_rules


class Phase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    WAITING = "Waiting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CANCELLED = "Cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_PHASES


FINISHED_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.TIMED_OUT, Phase.CANCELLED})


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(enum.StrEnum):
    """The conditions every execution carries (Kubernetes API conventions: one type, one meaning)."""

    SUCCEEDED = "Succeeded"
    """Unknown while the execution runs (reason Queued, Running or Waiting, or while a run's pod waits to
    start the reason it waits: ImagePullBackOff, Unschedulable, ...); True on success (reason Done);
    False with the error's reason on failure, timeout or cancellation."""
    FINISHED = "Finished"
    """True once the execution reached a final phase (reason: the phase): `kubectl wait --for=condition=Finished`;
    False with reason InProgress before."""
    TIMED_OUT = "TimedOut"
    """True when the sequence passed its deadline (reason Timeout); False with reason WithinDeadline before."""
    # kstatus (sigs.k8s.io/cli-utils: Flux health checks, kubectl-based pipelines) and `kubectl wait
    # --for=condition=Ready`: an execution is in progress until it has its result, then Current or Failed.
    READY = "Ready"
    """Unknown while the execution runs, True when it succeeded (reason Done), False with the error's reason
    when it failed, timed out or was cancelled."""
    RECONCILING = "Reconciling"
    """True while the execution runs (kstatus: InProgress), with the Succeeded condition's reason; False once
    it ended."""
    STALLED = "Stalled"
    """True with the error's reason when the execution failed, timed out or was cancelled (kstatus: Failed);
    False otherwise."""


class EventType(enum.StrEnum):
    """The two Kubernetes Event types."""

    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(enum.StrEnum):
    """Every reason schedexec itself writes: in conditions, `status.error.reason`, `status.history[].reason`
    and Events. A component's own error reason (its `error` envelope) and the Job controller's failure
    reasons (BackoffLimitExceeded, ...) are passed through as they are and are not listed here."""

    # progress: the Succeeded condition while the execution runs (besides the phase names)
    QUEUED = "Queued"
    """Due to start a run, but every run slot of the operator is taken; or the run's Job waits, suspended, for
    Kueue to admit it (condition and Event; the message says which: a run slot, or the LocalQueue)."""
    RUN_ADMITTED = "RunAdmitted"
    """A run's suspended Job was admitted (unsuspended, by Kueue): the run's pod starts now (Event)."""
    IN_PROGRESS = "InProgress"
    """Finished=False, Ready=Unknown, Stalled=False: the execution has not ended."""
    ENDED = "Ended"
    """Reconciling=False: the execution ended; nothing is left to do."""
    WITHIN_DEADLINE = "WithinDeadline"
    """TimedOut=False: the sequence deadline has not passed."""
    # the story of a sequence (Events)
    RUN_STARTED = "RunStarted"
    """A run's Job was created (Event)."""
    RUN_SCHEDULED = "RunScheduled"
    """A run asked for another run (Event)."""
    SUCCEEDED = "Succeeded"
    """The execution returned its result (Event)."""
    DONE = "Done"
    """Succeeded=True: the execution returned its result."""
    POLL_INTERVAL_RAISED = "PollIntervalRaised"
    """A run asked for its next run sooner than the operator's minimum interval; the wait was raised (Event)."""
    # how an execution ends without a result
    TIMEOUT = "Timeout"
    """The sequence exceeded spec.timeoutSeconds."""
    CANCELLED = "Cancelled"
    """spec.cancel was set."""
    MAX_RUNS_EXCEEDED = "MaxRunsExceeded"
    """A run scheduled another run beyond spec.maxRuns."""
    ARGS_TOO_LARGE = "ArgsTooLarge"
    """The next run's args cannot be delivered (contract.MAX_ARGS_BYTES)."""
    RUN_LOST = "RunLost"
    """The current run's Job disappeared before the run reported an outcome."""
    RUN_TIMED_OUT = "RunTimedOut"
    """A run exceeded spec.runTimeoutSeconds (the Job's activeDeadlineSeconds)."""
    RUN_OVERDUE = "RunOverdue"
    """The watchdog stopped a run that nothing ended well past its run timeout."""
    RUN_FAILED = "RunFailed"
    """A run's pod died without reporting an outcome and without a reason from the Job controller."""
    RESULT_TOO_LARGE = "ResultTooLarge"
    """A run's outcome is over the largest the operator accepts (SCHEDEXEC_MAX_RESULT_BYTES)."""
    INVALID_ENVELOPE = "InvalidEnvelope"
    """A run exited 0 with a termination message that is not a valid outcome envelope."""
    IMAGE_PULL_FAILED = "ImagePullFailed"
    """A run's image cannot be pulled (starts.judge_start)."""
    CONFIG_ERROR = "ConfigError"
    """A run's container cannot be set up: a missing Secret, an invalid command, a volume that cannot mount."""
    UNSCHEDULABLE = "Unschedulable"
    """No node accepted a run's pod within the grace."""
    INVALID_SPEC = "InvalidSpec"
    """The stored object does not parse as a ScheduledExecution (e.g. written under an older CRD schema)."""
    RUN_DISRUPTED = "RunDisrupted"
    """A run's pod was disrupted (evicted, preempted, its node lost or drained); not started again."""
    JOB_REJECTED = "JobRejected"
    """The API server refused a run's Job for good (invalid, forbidden, over a ResourceQuota)."""
    JOB_NAME_TAKEN = "JobNameTaken"
    """A Job with the run's name exists and belongs to something else."""
    RESOURCES_EXCEED_MAXIMUM = "ResourcesExceedMaximum"
    """A run's container would request or be limited to more of a resource than the operator's maximum
    (SCHEDEXEC_MAX_RUN_RESOURCES): the execution failed before its first Job was created."""
    INTERNAL_ERROR = "InternalError"
    """The operator failed to reconcile the execution the same way again and again (or past its deadline):
    the execution was stopped instead of being retried forever; the message names the exception's type."""


class Condition(Model):
    """A condition following the Kubernetes API conventions."""

    type: str = Field(description="Succeeded, Finished or TimedOut.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(min_length=1, description="CamelCase reason for the condition's last change.")
    message: str = Field("", description="Human-readable details.")
    last_transition_time: datetime = Field(description="When status last changed (not reason or message).")
    observed_generation: int | None = Field(None, description="The generation this condition was computed from.")


class ExecutionError(Model):
    reason: str = Field(
        description="CamelCase reason, e.g. ComponentError, Timeout, BackoffLimitExceeded, ImagePullFailed, "
        "ConfigError, Unschedulable, ArgsTooLarge."
    )
    message: str = Field(description="What went wrong, for humans.")


class RunOutcome(enum.StrEnum):
    DONE = "Done"
    SCHEDULED = "Scheduled"
    ERROR = "Error"
    LOST = "Lost"
    """The run's pod died without reporting an outcome, retries exhausted."""
    STOPPED = "Stopped"
    """The run was stopped by a timeout or a cancellation."""
    NOT_STARTED = "NotStarted"
    """The run's pod could not start its container (image, configuration, scheduling); the run was stopped."""


class RunRecord(Model):
    index: int = Field(ge=1, description="1-based index of the run in the sequence.")
    outcome: RunOutcome = Field(description="How the run ended: Done, Scheduled, Error, Lost, Stopped or NotStarted.")
    started_at: datetime | None = Field(None, description="When the run's Job was created.")
    due_at: datetime | None = Field(
        None, description="When the run was due (CurrentRun.dueAt); startedAt - dueAt is its lateness."
    )
    finished_at: datetime | None = Field(None, description="When the operator saw the run end.")
    exit_code: int | None = Field(None, description="Exit code of the run's container, if it exited.")
    reason: str | None = Field(None, description="Error reason of a failed run.")
    method: str | None = Field(None, description="The method or command the run ran, when not spec.method.")
    attempts: int | None = Field(
        None,
        ge=1,
        description="Pods that ran for this run index (the Job controller's count): more than 1 when a pod "
        "died and spec.retries started it again.",
    )
    requested_next_run_in_seconds: int | None = Field(
        None,
        description="The wait the run asked for (nextRunInSeconds) when it was below the operator's minimum "
        "interval and was raised to it.",
    )
    job: str | None = Field(None, description="Name of the run's Job (its pod's log: `kubectl logs -n NS job/JOB`).")
    logs_until: datetime | None = Field(
        None,
        description="Until when the run's Job and pod, and so its log, are kept (spec.runRetentionSeconds after "
        "its outcome was recorded); unset: they were deleted at once (a stopped run, a retention of 0, or a "
        "Job that had disappeared).",
    )
    logs: str | None = Field(
        None, description="The command that shows the run's log while it is kept, e.g. `kubectl logs -n NS job/JOB`."
    )


class RunWaiting(Model):
    """Why the run's pod has not started its container, as Kubernetes reports it."""

    reason: str = Field(
        description="The kubelet's waiting reason (ErrImagePull, ImagePullBackOff, InvalidImageName, "
        "CreateContainerConfigError, ContainerCreating, ...), FailedMount (a volume cannot be mounted), "
        "Unschedulable (the scheduler's), or Scheduling (not on a node yet)."
    )
    message: str = Field("", max_length=WAITING_MESSAGE_LIMIT, description="The kubelet's or scheduler's message.")


class ResultRef(Model):
    """Where a result too large for the status is kept: a ConfigMap owned by the execution."""

    config_map: str = Field(description="Name of the ConfigMap (in the execution's namespace) holding the result.")
    key: str = Field(description="Its key: result.json (plain JSON) or result.json.gz (binaryData, gzip).")
    bytes: int = Field(ge=0, description="Size of the result's JSON in bytes.")
    sha256: str = Field(description="sha256 of the result's JSON, hex.")


class CurrentRun(Model):
    index: int = Field(ge=1, description="1-based index of the run in the sequence.")
    job: str = Field(description="Name of the run's Job.")
    started_at: datetime = Field(description="When the run's Job was created.")
    due_at: datetime | None = Field(
        None,
        description="When the run was due: the sequence's start for run 1, the nextRunAt it waited for after a "
        "schedule. startedAt - dueAt is its lateness (a full slot queue, a slow operator).",
    )
    method: str | None = Field(None, description="The method or command the run runs, when not spec.method.")
    waiting: RunWaiting | None = Field(
        None,
        description="Set while the run's pod waits to start for a reason worth showing: any problem at once, "
        "normal progress (Scheduling, ContainerCreating) once it takes longer than the start grace.",
    )
    queue: str | None = Field(
        None,
        description="The Kueue LocalQueue of the run's Job (the execution's kueue.x-k8s.io/queue-name label when "
        "the run started): its Job was created suspended and starts once Kueue admits it.",
    )
    suspended: bool | None = Field(
        None,
        description="True while the run's Job is suspended (waiting for Kueue to admit it, or preempted by it): "
        "the run is Queued (phase Pending), nothing of it runs, and neither its run timeout nor the watchdog "
        "count; the sequence deadline (spec.timeoutSeconds) still does.",
    )
    admitted_at: datetime | None = Field(
        None,
        description="When the operator first saw the run's suspended Job unsuspended (admitted by Kueue); unset "
        "while it is suspended. The run timeout (the Job's activeDeadlineSeconds, counted by the Job "
        "controller from the Job's last resume) and the operator's watchdog count from here, not from startedAt.",
    )


class ScheduledExecutionStatus(Model):
    """What happened so far; written by the operator only."""

    phase: Phase | None = Field(
        None, description="Pending, Running, Waiting, Succeeded, Failed, TimedOut or Cancelled."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Succeeded, Finished and TimedOut conditions."
    )
    observed_generation: int | None = Field(None, description="The spec generation the status reflects.")
    runs: int = Field(0, ge=0, description="How many runs have finished.")
    current_run: CurrentRun | None = Field(None, description="The run in progress, if any.")
    next_run_at: datetime | None = Field(None, description="When the next run starts (phase Waiting).")
    next_args: JSONObject | None = Field(None, description="Args of the next run, as scheduled by the previous one.")
    next_method: str | None = Field(
        None,
        description="The command the next runs run instead of spec.method, as a previous run scheduled it "
        "(XSOAR's ScheduledCommand.command); stays in force until a schedule names another.",
    )
    items_remaining: int | None = Field(
        None, ge=0, description="While Waiting: how many items the last run said remain (XSOAR's items_remaining)."
    )
    started_at: datetime | None = Field(None, description="When the sequence started; the deadline counts from here.")
    completed_at: datetime | None = Field(None, description="When the execution finished.")
    deadline: datetime | None = Field(
        None,
        description="startedAt + spec.timeoutSeconds, or earlier if a run's schedule set a shorter sequence "
        "timeout (timeoutInSeconds, counted from startedAt).",
    )
    result: JSON = Field(
        None, description="The result of the last run (phase Succeeded), when it is small enough to keep here."
    )
    result_ref: ResultRef | None = Field(
        None, description="Where the result is kept instead, when it is larger than the operator's inline limit."
    )
    partial_result: JSON = Field(
        None, description="The latest partial result of a sequence still polling, or of one that timed out."
    )
    error: ExecutionError | None = Field(None, description="Why the execution failed, timed out or was cancelled.")
    history: list[RunRecord] = Field(
        default_factory=list,
        max_length=HISTORY_LIMIT,
        description=f"The last {HISTORY_LIMIT} runs, oldest first.",
    )


class ObjectMeta(Model):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    """The execution's labels: `kueue.x-k8s.io/queue-name` (KUEUE_QUEUE_LABEL) names the Kueue LocalQueue of its
    runs' Jobs."""
    uid: str = ""
    generation: int = 1
    resource_version: str = ""
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None


KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
"""Kueue's label naming the LocalQueue of a workload: on an execution, every run's Job is created suspended with
this label, and starts once Kueue admits it (docs/kueue.md)."""


class ScheduledExecution(Model):
    """A scheduled execution: one method of one component, run once or as a polling sequence."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta
    spec: ScheduledExecutionSpec
    status: ScheduledExecutionStatus = Field(default_factory=ScheduledExecutionStatus)

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"

    @property
    def queue(self) -> str | None:
        """The Kueue LocalQueue its runs' Jobs are queued in (its kueue.x-k8s.io/queue-name label), if any."""
        return self.metadata.labels.get(KUEUE_QUEUE_LABEL) or None


PRINTER_COLUMNS = [
    {"name": "Method", "type": "string", "jsonPath": ".spec.method"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Runs", "type": "integer", "jsonPath": ".status.runs"},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Succeeded")].reason'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
