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
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

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

HISTORY_LIMIT = 10
"""How many runs `status.history` keeps: enough to debug, bounded for etcd."""
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


Quantity = Annotated[str, Field(max_length=64)]


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
    timeout_seconds: int = Field(
        600,
        ge=1,
        le=7 * 24 * 3600,
        description="Deadline of the whole sequence, from its start; past it the running run is stopped "
        "and the execution ends TimedOut (XSOAR's timeout_in_seconds).",
    )
    run_timeout_seconds: int = Field(
        300,
        ge=1,
        le=24 * 3600,
        description="Deadline of one run (the Job's activeDeadlineSeconds); a run past it fails.",
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
        description="Delete the execution this long after it finished; unset keeps it.",
    )
    cancel: bool = Field(
        False,
        description="Set to true to stop the execution without deleting it: the running run is stopped "
        "and the execution ends Cancelled. Cannot be set back to false.",
    )


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
    finished_at: datetime | None = Field(None, description="When the operator saw the run end.")
    exit_code: int | None = Field(None, description="Exit code of the run's container, if it exited.")
    reason: str | None = Field(None, description="Error reason of a failed run.")


class RunWaiting(Model):
    """Why the run's pod has not started its container, as Kubernetes reports it."""

    reason: str = Field(
        description="The kubelet's waiting reason (ErrImagePull, ImagePullBackOff, InvalidImageName, "
        "CreateContainerConfigError, ContainerCreating, ...), FailedMount (a volume cannot be mounted), "
        "Unschedulable (the scheduler's), or Scheduling (not on a node yet)."
    )
    message: str = Field("", max_length=WAITING_MESSAGE_LIMIT, description="The kubelet's or scheduler's message.")


class CurrentRun(Model):
    index: int = Field(ge=1, description="1-based index of the run in the sequence.")
    job: str = Field(description="Name of the run's Job.")
    started_at: datetime = Field(description="When the run's Job was created.")
    waiting: RunWaiting | None = Field(
        None,
        description="Set while the run's pod waits to start for a reason worth showing: any problem at once, "
        "normal progress (Scheduling, ContainerCreating) once it takes longer than the start grace.",
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
    started_at: datetime | None = Field(None, description="When the sequence started; the deadline counts from here.")
    completed_at: datetime | None = Field(None, description="When the execution finished.")
    deadline: datetime | None = Field(None, description="startedAt + spec.timeoutSeconds.")
    result: JSON = Field(None, description="The result of the last run (phase Succeeded).")
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
    uid: str = ""
    generation: int = 1
    resource_version: str = ""
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None


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


PRINTER_COLUMNS = [
    {"name": "Method", "type": "string", "jsonPath": ".spec.method"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Runs", "type": "integer", "jsonPath": ".status.runs"},
    {"name": "Reason", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Succeeded")].reason'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
