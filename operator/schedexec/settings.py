"""Operator configuration, read once from the environment (SCHEDEXEC_*).

One place for every knob, with its default, bounds and meaning, so the Helm
chart, docs/configuration.md, the bench's settings table and the code cannot disagree
about names or values.

The settings are also the only place a default is written. The pure code
reads its knobs from small frozen dataclasses without defaults
(`decisions.Policy`, `manifests.PodDefaults`), built here by `policy()` and
`pod_defaults()`, field by field. Not the reverse (the dataclasses holding
the defaults and the settings taking them from there): the settings must
declare every knob anyway, with its environment variable, bounds and
description, and most knobs (workers, max_running, metrics_port, ...) are
no field of either dataclass; defaults split between three modules would be
one place no more. So a test that needs a policy takes the operator's
defaults from here too (tests/unit/builders.POLICY), and a value the
operator would not have cannot hide behind a dataclass default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, IPvAnyNetwork, StringConstraints, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schedexec.decisions import Policy
from schedexec.manifests import PodDefaults
from schedexec.models import Quantity, ResourceRequirements, RunPodTemplate
from schedexec_runner import frame


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEDEXEC_")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to serve (JSON list); empty means the whole cluster."
    )
    max_running: int = Field(50, ge=1, description="Runs that may run at once, operator-wide; the rest queue.")
    min_interval_seconds: int = Field(10, ge=0, description="Floor for next_run_in_seconds (XSOAR: 10).")
    overdue_grace_seconds: int = Field(
        60, ge=1, description="Watchdog: a run unfinished this long past its run timeout is stopped (RunOverdue)."
    )
    start_failure_grace_seconds: int = Field(
        30,
        ge=0,
        description="A run whose scheduled pod keeps failing to pull its image, mount a volume or create its "
        "container this long fails (ImagePullFailed, ConfigError); InvalidImageName fails at once.",
    )
    unschedulable_grace_seconds: int = Field(
        120, ge=0, description="A run whose pod the scheduler keeps refusing this long fails (Unschedulable)."
    )
    workers: int = Field(4, ge=1, le=64, description="Executions reconciled concurrently.")
    quarantine_after_failures: int = Field(
        5,
        ge=1,
        le=100,
        description="A reconcile that fails this many times in a row for a reason that does not heal by itself "
        "(not a network or API-server outage) ends the execution Failed with reason InternalError, deleting its "
        "run Job and freeing its slot; past the sequence deadline it ends TimedOut at the first such failure.",
    )
    run_as_user: int = Field(65532, ge=1, description="UID of every run's container (non-root).")
    job_ttl_seconds: int = Field(
        86400,
        ge=3600,
        description="Safety-net TTL of finished Jobs; the operator deletes them itself once it recorded the "
        "outcome. An operator outage longer than this loses the outcomes of runs that finished meanwhile.",
    )
    progress_events: bool = Field(
        False,
        description="Post RunStarted, RunScheduled and Succeeded as Kubernetes Events (two more API writes per "
        "execution); failures, Queued and PollIntervalRaised are always posted, and everything is logged.",
    )
    log_tail_in_status: bool = Field(
        False,
        description="Copy the end of a crashed run's log into status.error and its Event. Off by default: "
        "component output may hold anything, and status and Events are readable by anyone who may read executions.",
    )
    run_retention_seconds: int = Field(
        900,
        ge=0,
        le=7 * 24 * 3600,
        description="How long a finished run's Job and pod are kept once its outcome is recorded, whatever the "
        "outcome, so `kubectl logs -n NS job/NAME` (status.history[].logs) shows its log and traceback; an "
        "execution's spec.runRetentionSeconds overrides it; 0: deleted at once. At most the runs in "
        "status.history (10) keep theirs; a stopped run's pod goes at once. At most job_ttl_seconds.",
    )
    max_result_bytes: int = Field(
        frame.DEFAULT_MAX_RESULT_BYTES,
        ge=0,
        le=1024 * 1024,
        description="Largest result (its outcome envelope's JSON) a run may report; above 4 KiB compressed it "
        "comes through the run's log (needs `get pods/log`); 0 keeps the 4 KiB termination-message limit.",
    )
    inline_result_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=256 * 1024,
        description="Results larger than this (as JSON) are kept in a ConfigMap owned by the execution, named "
        "in status.resultRef, instead of status.result (needs create/get configmaps).",
    )
    run_pod_template: RunPodTemplate | None = Field(
        None,
        description="The default pod template of every run (JSON, the schema of spec.podTemplate), merged under "
        "each execution's: maps and env key by key, other fields the execution's if set (docs/run-pods.md). "
        "Refused at startup for what an execution's template is refused for at admission.",
    )
    default_run_resources: ResourceRequirements | None = Field(
        None,
        description="JSON {requests, limits}: the resources of each run's container where spec.component.resources "
        "leaves a resource unset (merged per resource name, the execution wins; a default request is not added "
        "where the execution sets that resource's limit, a default limit not where it requests more).",
    )
    max_run_resources: dict[str, Quantity] = Field(
        default_factory=dict,
        description="JSON map resource → quantity: the most a run's container may request or be limited to, "
        "defaults included; an execution above it fails before its first run with ResourcesExceedMaximum.",
    )
    elasticio_receiver_image: str = Field(
        "ghcr.io/schedexec/runner:0.1.0",
        min_length=1,
        description="The runner image whose receiver runs beside each run of an elastic.io component "
        "(spec.component.runtime elasticio): it gives sailor its cfg and turns sailor's result into the outcome.",
    )
    liveness_endpoint: str = Field("http://0.0.0.0:8080/healthz", description="Kopf's liveness endpoint.")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Prometheus metrics port; 0 disables.")
    log_format: Literal["full", "plain", "json"] = Field("full", description="Log format; json for log pipelines.")
    log_level: Literal["debug", "info", "warning"] = Field("info", description="Level of schedexec's own logs.")
    leader_election_namespace: str | None = Field(
        None,
        description="Namespace of the leader Lease when several replicas run; unset: this replica always acts.",
    )
    leader_election_lease: str = Field("schedexec-operator", description="Name of the leader Lease.")

    @model_validator(mode="after")
    def _retention_within_job_ttl(self) -> OperatorSettings:
        """A Job kept for its log longer than its own TTL would be gone before the status says."""
        if self.run_retention_seconds > self.job_ttl_seconds:
            raise ValueError(
                f"run_retention_seconds ({self.run_retention_seconds}) must not exceed job_ttl_seconds "
                f"({self.job_ttl_seconds}): the Job controller deletes a finished Job at its TTL"
            )
        return self

    def policy(self) -> Policy:
        """What the decisions read of the settings."""
        return Policy(
            min_interval_seconds=self.min_interval_seconds,
            overdue_grace_seconds=self.overdue_grace_seconds,
            start_failure_grace_seconds=self.start_failure_grace_seconds,
            unschedulable_grace_seconds=self.unschedulable_grace_seconds,
            log_tail_in_status=self.log_tail_in_status,
            run_retention_seconds=self.run_retention_seconds,
            job_ttl_seconds=self.job_ttl_seconds,
            progress_events=self.progress_events,
            inline_result_bytes=self.inline_result_bytes,
            default_run_resources=self.default_run_resources,
            max_run_resources=dict(self.max_run_resources),
        )

    def pod_defaults(self) -> PodDefaults:
        """What every run's Job and pod take from the settings."""
        return PodDefaults(
            run_as_user=self.run_as_user,
            job_ttl_seconds=self.job_ttl_seconds,
            max_result_bytes=self.max_result_bytes,
            run_pod_template=self.run_pod_template,
            default_run_resources=self.default_run_resources,
            elasticio_receiver_image=self.elasticio_receiver_image,
        )


class ComponentImage(BaseModel):
    """How the REST API turns a component id and revision into an image."""

    image: str = Field(description="Image reference with {revision}, e.g. ghcr.io/acme/shop:{revision}.")
    default_revision: str = Field("latest", description="The tag used for revision `latest`.")
    runtime: Literal["schedexec", "elasticio"] | None = Field(
        None,
        description="spec.component.runtime of its executions: elasticio for an elastic.io component image run "
        "by its own sailor (the elastic.io endpoints then run it as elastic.io would).",
    )
    component_path: str | None = Field(
        None, description="spec.component.elasticio.componentPath (elasticio only; default /home/node)."
    )
    pod_template: RunPodTemplate | None = Field(
        None,
        description="spec.podTemplate of its executions (the schema of spec.podTemplate): e.g. the proxy "
        "(HTTPS_PROXY) or CA file (NODE_EXTRA_CA_CERTS) a component needs to reach its service.",
    )

    @model_validator(mode="after")
    def _path_needs_elasticio(self) -> ComponentImage:
        if self.component_path is not None and self.runtime != "elasticio":
            raise ValueError("component_path is the path of an elastic.io component: it needs runtime elasticio")
        return self


class ApiSettings(BaseSettings):
    """The REST sidecar (`schedexec api`), from SCHEDEXEC_API_* variables."""

    model_config = SettingsConfigDict(env_prefix="SCHEDEXEC_API_")

    idempotency_key_file: Path | None = Field(
        None,
        description="File holding the secret key (at least 16 bytes, surrounding whitespace ignored) the API "
        "signs Idempotency-Key bindings with: the name and annotation of an execution created for a key are "
        "HMACs under it, so no other user can predict or forge them. Unset: a random key per process (a "
        "warning at startup), and a retry after the API restarts creates a new execution.",
    )
    host: str = Field("0.0.0.0", description="Listen address.")
    port: int = Field(8000, ge=1, le=65535, description="Listen port.")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the API's Prometheus metrics (plain HTTP, no token); 0 disables."
    )
    namespace: str = Field("default", description="Namespace of executions when a request names none.")
    workspaces: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128)],
        Annotated[str, StringConstraints(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")],
    ] = Field(
        default_factory=dict,
        description="JSON map: elastic.io workspace id → namespace. An elastic.io request's "
        "relationships.workspace creates there (an id not in a non-empty map: 404); without a workspace, "
        "or with an empty map, ?namespace= and then `namespace` decide.",
    )
    components: dict[str, ComponentImage] = Field(
        default_factory=dict, description="JSON map: component id → {image, default_revision}."
    )
    insecure: bool = Field(False, description="No authentication or authorization. Development only.")
    tls_cert_file: Path | None = Field(None, description="PEM certificate (chain) the API serves TLS with.")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file.")
    plain_http: bool = Field(
        False, description="Serve plain HTTP instead of TLS (bearer tokens in clear text). Development only."
    )
    audiences: list[str] = Field(
        default_factory=lambda: ["schedexec"],
        min_length=1,
        description="Token audiences the API accepts (JSON list); clients get a token with "
        "`kubectl create token SA --audience schedexec`, which is refused by the Kubernetes API itself.",
    )
    review_ttl_seconds: float = Field(
        30.0,
        gt=0,
        le=300,
        description="How long a TokenReview or SubjectAccessReview answer is reused: a revoked token or a "
        "removed grant stops working within this bound.",
    )
    review_cache_entries: int = Field(
        10_000, ge=100, description="Most review answers remembered per cache (least recently used evicted)."
    )
    reviews_per_second_per_client: float = Field(
        5.0,
        gt=0,
        description="Reviews (TokenReview, SubjectAccessReview) the API sends for one client address, "
        "sustained; past the burst a client is answered 429 with Retry-After. Cached answers cost nothing.",
    )
    review_burst_per_client: int = Field(50, ge=1, description="Reviews one client address may cause at once.")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="Largest accepted request body.")
    default_timeout_seconds: int = Field(600, ge=1, description="timeoutSeconds of executions it creates.")
    default_run_timeout_seconds: int = Field(300, ge=1, description="runTimeoutSeconds of executions it creates.")
    ttl_seconds_after_finished: int = Field(
        3600, ge=0, description="How long finished executions created by the API (and their ids) live."
    )
    access_log: bool = Field(True, description="Log every request (uvicorn's access log).")
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description='Addresses or networks (JSON list, e.g. ["10.0.0.7", "10.8.0.0/16"]) of the proxies whose '
        "X-Forwarded-For and X-Forwarded-Proto the API believes. Empty (the default): none, not even 127.0.0.1, "
        "so a client behind a port-forward or a mesh sidecar cannot name its own address (and with it its "
        "review budget); every client behind a proxy not listed shares the proxy's address.",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="A connection whose request line and headers are not complete this long after it opened "
        "(or after the first byte of its next request) is closed: a client sending its headers slowly holds "
        "no connection longer.",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="A connection whose request body is not complete this long after its headers is closed, "
        "whether the API reads the body or refused the request without it: a client sending its body slowly "
        "holds no connection longer.",
    )
    keep_alive_timeout_seconds: int = Field(
        5, ge=1, le=300, description="An idle connection between two requests is closed after this long."
    )
    max_connections: int = Field(
        100,
        ge=1,
        description="Connections the API serves at once (and requests in progress); a request that arrives "
        "past them is answered 503 and its connection closed. Connections still sending a request count too, "
        "for at most header_timeout_seconds and body_timeout_seconds.",
    )
