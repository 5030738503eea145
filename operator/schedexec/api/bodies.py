"""The request bodies the REST API accepts (JSON:API documents), as pydantic models.

FastAPI validates a request against these before any handler runs and
publishes them in the OpenAPI document; unknown keys are refused, so a typo
in a field name answers 422 at that field instead of being ignored. They
describe requests only: `specs` turns them into ScheduledExecution specs.

The elastic.io component requests carry `data.relationships` as elastic.io
documents them: `workspace` (required there, optional here: it chooses the
namespace, see `elastic.target_namespace`), `credential` (the credentials
Secret) and `vpn_agent` (accepted and ignored: a run reaches what its
namespace's network reaches). Any other relationship is refused with a
message naming the ones these endpoints take.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A Kubernetes object name (DNS-1123 label)."""
OPAQUE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
"""An id schedexec only compares (an elastic.io workspace or VPN agent id: 24 hex digits there)."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CredentialIdentifier(Body):
    id: str = Field(min_length=1, max_length=253, pattern=NAME, description="Name of the credentials Secret.")
    type: Literal["credential"] = "credential"


class CredentialRelationship(Body):
    data: CredentialIdentifier | None = Field(description="The credentials Secret; null for none.")

    @model_validator(mode="before")
    @classmethod
    def _without_data(cls, value: Any) -> Any:
        """elastic.io's docs of 2018 sent the identifier itself (`{"type": "credential", "id": ...}`): accepted."""
        if isinstance(value, dict) and "data" not in value and "id" in value:
            return {"data": value}
        return value


class WorkspaceIdentifier(Body):
    id: str = Field(min_length=1, max_length=128, pattern=OPAQUE_ID, description="An elastic.io workspace id.")
    type: Literal["workspace"]


class WorkspaceRelationship(Body):
    data: WorkspaceIdentifier | None = Field(
        description="Creates in the workspace's namespace (SCHEDEXEC_API_WORKSPACES); ignored if none are "
        "configured; null for none."
    )


class VpnAgentIdentifier(Body):
    id: str = Field(min_length=1, max_length=128, pattern=OPAQUE_ID)
    type: Literal["vpn-agent"]


class VpnAgentRelationship(Body):
    data: VpnAgentIdentifier | None = Field(
        description="Accepted and ignored: a run reaches what its namespace's network reaches."
    )


class Relationships(Body):
    workspace: WorkspaceRelationship | None = None
    credential: CredentialRelationship | None = None
    vpn_agent: VpnAgentRelationship | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _known_only(cls, data: Any, handler: ModelWrapValidatorHandler[Relationships]) -> Relationships:
        """An undocumented relationship is refused at its own key, naming the ones these endpoints take."""
        unknown = [name for name in data if name not in cls.model_fields] if isinstance(data, dict) else []
        if unknown:
            *others, last = cls.model_fields
            known = f"{', '.join(others)} and {last}"
            raise ValidationError.from_exception_data(
                cls.__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "relationship_not_supported",
                            "data.relationships.{name} is not supported: elastic.io's component endpoints take {known}",
                            {"name": name, "known": known},
                        ),
                        loc=(name,),
                        input=data[name],
                    )
                    for name in unknown
                ],
            )
        return handler(data)


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
