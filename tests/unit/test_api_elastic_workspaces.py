"""Where an elastic.io request creates: its workspace's namespace, else ?namespace=, else the default. Pure."""

from __future__ import annotations

import pytest

from schedexec.api.elastic import target_namespace, workspace_namespaces
from schedexec.api.errors import ApiError
from schedexec.settings import ApiSettings

MAPPED = ApiSettings(namespace="default", workspaces={"ws-a": "team-a", "ws-b": "team-b", "ws-d": "default"})
UNMAPPED = ApiSettings(namespace="default")


@pytest.mark.parametrize(
    ("settings", "workspace", "requested", "namespace"),
    [
        (MAPPED, "ws-a", None, "team-a"),
        (MAPPED, "ws-a", "team-a", "team-a"),
        (MAPPED, None, "team-b", "team-b"),
        (MAPPED, None, None, "default"),
        (UNMAPPED, "ws-a", None, "default"),
        (UNMAPPED, "ws-a", "anywhere", "anywhere"),
        (UNMAPPED, None, None, "default"),
    ],
    ids=[
        "workspace",
        "workspace-and-agreeing-parameter",
        "parameter-without-workspace",
        "default-without-either",
        "workspace-ignored-when-none-configured",
        "parameter-when-none-configured",
        "default-when-none-configured",
    ],
)
def test_the_workspace_then_the_parameter_then_the_default_decide(
    settings: ApiSettings, workspace: str | None, requested: str | None, namespace: str
) -> None:
    assert target_namespace(settings, workspace, requested) == namespace


@pytest.mark.parametrize(
    ("workspace", "requested", "status", "detail"),
    [
        ("ws-x", None, 404, "unknown workspace 'ws-x'"),
        ("ws-x", "team-a", 404, "unknown workspace 'ws-x'"),
        ("ws-a", "team-b", 422, "workspace 'ws-a' is not in namespace team-b"),
    ],
    ids=["unknown", "unknown-with-parameter", "contradicting-parameter"],
)
def test_an_unknown_or_contradicted_workspace_is_refused_at_the_workspace(
    workspace: str, requested: str | None, status: int, detail: str
) -> None:
    with pytest.raises(ApiError) as refused:
        target_namespace(MAPPED, workspace, requested)
    assert refused.value.status == status and refused.value.detail.startswith(detail)
    assert refused.value.pointer == "/data/relationships/workspace/data/id"
    assert "team-a" not in refused.value.detail, "a workspace's namespace is not told"


@pytest.mark.parametrize(
    ("settings", "path", "namespaces"),
    [
        (MAPPED, "/v2/components/shop/versions/latest/verify-credential", ("team-a", "team-b")),
        (MAPPED, "/v2/components/shop/versions/2.1/dynamic-metadata", ("team-a", "team-b")),
        (MAPPED, "/v2/components/shop/versions/latest/select-model", ("team-a", "team-b")),
        (MAPPED, "/v2/executions", ()),
        (MAPPED, "/v2/components/shop/versions/latest/other", ()),
        (MAPPED, "/v2/components/shop/latest/verify-credential", ()),
        (UNMAPPED, "/v2/components/shop/versions/latest/verify-credential", ()),
    ],
)
def test_the_guard_is_told_every_other_namespace_an_elastic_request_may_reach(
    settings: ApiSettings, path: str, namespaces: tuple[str, ...]
) -> None:
    """The default namespace is the guard's own; a workspace mapped to it adds nothing."""
    assert workspace_namespaces(settings, path) == namespaces


def test_workspace_namespaces_must_be_namespace_names() -> None:
    with pytest.raises(ValueError, match="workspaces"):
        ApiSettings(workspaces={"ws": "Not_A_Namespace"})
