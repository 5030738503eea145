"""`kubectl sx` finds its cluster and namespace as kubectl does (schedexec.sx.cluster.connect), and reports a
refusal as kubectl's one line (api_error_line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from schedexec.sx.cluster import Cluster, ClusterError, NotFound, api_error_line, connect


def kubeconfig(path: Path, current: str = "dev") -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "a", "cluster": {"server": "https://a.example:6443"}},
                    {"name": "b", "cluster": {"server": "https://b.example:6443"}},
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "dev", "context": {"cluster": "a", "user": "u", "namespace": "team-a"}},
                    {"name": "prod", "context": {"cluster": "b", "user": "u"}},
                ],
                "current-context": current,
            }
        )
    )
    return path


@pytest.fixture(autouse=True)
def no_ambient_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_the_current_context_gives_server_and_namespace(tmp_path: Path) -> None:
    cluster = connect(str(kubeconfig(tmp_path / "config")), None, None)
    assert (cluster.host, cluster.namespace) == ("https://a.example:6443", "team-a")


def test_context_and_namespace_flags_win(tmp_path: Path) -> None:
    path = str(kubeconfig(tmp_path / "config"))
    assert connect(path, "prod", None).namespace == "default", "a context without a namespace: default"
    assert connect(path, "prod", None).host == "https://b.example:6443"
    assert connect(path, "dev", "other").namespace == "other"


def test_kubeconfig_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", current="prod")))
    assert connect(None, None, None).host == "https://b.example:6443"


def test_an_unknown_context_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"^error: .*nope") as raised:
        connect(str(kubeconfig(tmp_path / "config")), "nope", None)
    assert "\n" not in str(raised.value)


def test_no_kubeconfig_and_no_pod_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"^error: no cluster to talk to: no kubeconfig"):
        connect(None, "dev", None)
    with pytest.raises(ClusterError, match=r"^error: stat /nowhere/config: no such file or directory$"):
        connect("/nowhere/config", None, None)


@given(st.text(), st.integers(400, 599))
def test_any_refusal_is_one_line(body: str, status: int) -> None:
    line = api_error_line(status, "Reason", body)
    assert line.startswith("Error from server (") and "\n" not in line and "\r" not in line


def test_a_status_document_gives_its_reason_and_message() -> None:
    body = json.dumps({"kind": "Status", "reason": "AlreadyExists", "message": 'x "a" already exists'})
    assert api_error_line(409, "Conflict", body) == 'Error from server (AlreadyExists): x "a" already exists'


def test_a_missing_object_is_not_found_or_none_when_that_is_fine() -> None:
    """NotFound is its own ClusterError: a wait tells an execution that was never there from one deleted."""

    class Missing:
        def __getattr__(self, name: str) -> Any:
            def refuse(*_: Any, **__: Any) -> Any:
                failure = ApiException(status=404, reason="Not Found")
                failure.body = '{"kind": "Status", "reason": "NotFound", "message": "x not found"}'
                raise failure

            return refuse

    cluster = Cluster(client.ApiClient(client.Configuration()), "ns")
    cluster.custom = cluster.batch = Missing()  # type: ignore[assignment]
    with pytest.raises(NotFound, match=r"^Error from server \(NotFound\): x not found$"):
        cluster.get("x")
    assert cluster.job("x") is None
