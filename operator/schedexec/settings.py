"""Operator configuration, read once from the environment (SCHEDEXEC_*).

One place for every knob, with its default and meaning, so the Helm chart,
the README and the code cannot disagree about names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEDEXEC_")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to serve (JSON list); empty means the whole cluster."
    )
    max_running: int = Field(50, ge=1, description="Runs that may run at once, operator-wide; the rest queue.")
    min_interval_seconds: int = Field(10, ge=0, description="Floor for next_run_in_seconds (XSOAR: 10).")
    workers: int = Field(4, ge=1, le=64, description="Executions reconciled concurrently.")
    run_as_user: int = Field(65532, ge=1, description="UID of every run's container (non-root).")
    job_ttl_seconds: int = Field(
        86400, ge=60, description="Safety-net TTL of finished Jobs; the operator deletes them itself."
    )
    liveness_endpoint: str = Field("http://0.0.0.0:8080/healthz", description="Kopf's liveness endpoint.")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Prometheus metrics port; 0 disables.")
    log_format: Literal["full", "plain", "json"] = Field("full", description="Log format; json for log pipelines.")
    log_level: Literal["debug", "info", "warning"] = Field("info", description="Level of schedexec's own logs.")
    peering: str | None = Field(None, description="Kopf peering object for several replicas; unset runs standalone.")
