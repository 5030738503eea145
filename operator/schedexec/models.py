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
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
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
        le=MAX_TTL_SECONDS,
        description=f"Delete the execution this long after it finished (at most {MAX_TTL_SECONDS // 86400} days); "
        "unset keeps it.",
    )
    cancel: bool = Field(
        False,
        description="Set to true to stop the execution without deleting it: the running run is stopped "
        "and the execution ends Cancelled. Cannot be set back to false.",
    )

    @model_validator(mode="after")
    def _cross_field_rules(self) -> Self:
        """The CEL rules that span fields (see `_spec_rules`), for specs built in Python: a bad spec is
        refused here with the API server's own message, and the error's `ctx.field` names the field it
        points at. As in CEL (`has()`), the timeout rule applies when both timeouts are set; the API
        server defaults both, so every stored object is checked."""
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
                both_timeouts and self.run_timeout_seconds > self.timeout_seconds,
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
