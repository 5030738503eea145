"""The request bodies the REST API accepts (JSON:API documents), as pydantic models.

FastAPI validates a request against these before any handler runs and
publishes them in the OpenAPI document; unknown keys are refused, so a typo
in a field name answers 422 at that field instead of being ignored. They
describe requests only: `specs` turns them into ScheduledExecution specs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A Kubernetes object name (DNS-1123 label)."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceIdentifier(Body):
    id: str = Field(min_length=1, max_length=253, pattern=NAME, description="Name of the credentials Secret.")
    type: str = Field("credential", max_length=64)


class CredentialRelationship(Body):
    data: ResourceIdentifier


class Relationships(Body):
    credential: CredentialRelationship | None = None


class ComponentAttributes(Body):
    fields: dict[str, Any] = Field(default_factory=dict, description="The configuration (elastic.io cfg).")
    module: str | None = Field(None, min_length=1, max_length=253, description="The action or trigger.")
    method: str | None = Field(None, min_length=1, max_length=253, description="The select-model function.")


class ComponentData(Body):
    type: str = Field(max_length=64)
    attributes: ComponentAttributes = Field(default_factory=ComponentAttributes)
    relationships: Relationships = Field(default_factory=Relationships)


# An elastic.io v2 component request (verify-credential, dynamic-metadata, select-model). No docstrings
# on the models: they would become descriptions in the published OpenAPI document.
class ComponentRequest(Body):
    data: ComponentData


class ExecutionAttributes(Body):
    component: str = Field(min_length=1, max_length=63, description="A component name from the configuration.")
    revision: str = Field("latest", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    method: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z][A-Za-z0-9_.:-]*$")
    module: str | None = Field(None, min_length=1, max_length=253)
    function: str | None = Field(None, min_length=1, max_length=253)
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: int | None = Field(None, alias="timeoutSeconds", ge=1, le=7 * 24 * 3600)
    run_timeout_seconds: int | None = Field(None, alias="runTimeoutSeconds", ge=1, le=24 * 3600)
    credential: str | None = Field(None, min_length=1, max_length=253, pattern=NAME)


class ExecutionData(Body):
    type: Literal["execution"]
    attributes: ExecutionAttributes


# The generic request of `/v2/executions`: any method or polling command.
class ExecutionRequest(Body):
    data: ExecutionData
