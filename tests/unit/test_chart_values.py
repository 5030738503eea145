"""The chart's values.schema.json: every value of values.yaml is in it, an unknown or mistyped value is refused by
`helm install/upgrade/template/lint` naming it, and the chart lints clean with every feature on.

A typo such as `api.tls.secretname` used to be ignored silently (the chart rendered with its default, and the API
had no certificate). These tests run helm itself (no cluster): what a user sees is helm's own answer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.chart_support import ALL_ON, CHART, helm_binary, render

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())

PASS_THROUGH = {
    ("operator", "runPodTemplate"),
    ("api", "components", "{}", "pod_template"),
    ("operator", "extraEnv", "[]"),
    ("networkPolicy", "dnsTo", "[]"),
    ("networkPolicy", "metricsFrom", "[]"),
    ("networkPolicy", "apiFrom", "[]"),
    ("api", "httpRoute", "parentRefs", "[]"),
    ("tolerations", "[]"),
    ("affinity",),
    ("monitoring",),
}
"""Kubernetes objects passed through as they are (EnvVar, NetworkPolicyPeer, Toleration, Affinity, a pod template
checked by the operator at start, a Gateway parentRef), which the API server validates; and `monitoring`, whose
schema comes with its templates. Every other object of the schema is closed or a map."""


@pytest.fixture(scope="module")
def helm() -> Path:
    return helm_binary()


def node(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, a `$ref` followed."""
    while "$ref" in schema:
        schema = SCHEMA["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    return schema


def objects(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every object schema under `schema` with its path (`[]`: an array's items)."""
    schema = node(schema)
    if schema.get("type") == "object" or "properties" in schema:
        yield path, schema
        for key, child in schema.get("properties", {}).items():
            yield from objects(child, (*path, key))
        if isinstance(schema.get("additionalProperties"), dict):
            yield from objects(schema["additionalProperties"], (*path, "{}"))
    if "items" in schema:
        yield from objects(schema["items"], (*path, "[]"))
    for alternative in schema.get("oneOf", []) + schema.get("anyOf", []):
        yield from objects(alternative, path)


def value_keys(values: Any, schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every key of `values` that the schema names (not a key of a map such as nodeSelector)."""
    schema = node(schema)
    if not isinstance(values, dict) or "properties" not in schema:
        return
    for key, value in values.items():
        yield (*path, key)
        child = schema["properties"].get(key)
        if child is not None:
            yield from value_keys(value, child, (*path, key))


KEYS = sorted(value_keys(VALUES, SCHEMA))


def test_every_value_of_values_yaml_is_in_the_schema() -> None:
    missing = []
    for path in KEYS:
        parent = SCHEMA
        for key in path[:-1]:
            parent = node(parent)["properties"][key]
        if path[-1] not in node(parent)["properties"]:
            missing.append(".".join(path))
    assert not missing, f"values.yaml keys values.schema.json does not describe: {missing}"
    assert len(KEYS) > 100, "the walk reached every level"


def test_the_schema_names_no_value_values_yaml_lacks() -> None:
    """Each property of the schema's closed objects is a value users find (and its comment) in values.yaml."""
    optional = {("monitoring",), ("api", "tls", "certManager", "issuerRef", "group")}
    kubernetes_shaped = {("operator", "resources"), ("api", "resources"), ("operator", "runResources", "default")}
    stale = []
    for path, schema in objects(SCHEMA):
        if "{}" in path or "[]" in path or path in kubernetes_shaped:
            continue  # ResourceRequirements: its fields are Kubernetes', set or not
        for key in schema.get("properties", {}):
            here: Any = VALUES
            for part in (*path, key):
                here = here.get(part, KeyError) if isinstance(here, dict) else KeyError
            if here is KeyError and (*path, key) not in optional:
                stale.append(".".join((*path, key)))
    assert not stale, f"values.schema.json names values that values.yaml lacks: {stale}"


def test_every_object_of_the_schema_refuses_unknown_keys() -> None:
    """Closed (additionalProperties false), or a map whose values have a schema; never open by omission."""
    open_objects = [
        ".".join(path) or "(root)"
        for path, schema in objects(SCHEMA)
        if path not in PASS_THROUGH and "additionalProperties" not in schema
    ]
    assert not open_objects, f"objects of values.schema.json that accept any key: {open_objects}"
    assert SCHEMA["additionalProperties"] is False
    assert "monitoring" not in SCHEMA.get("required", []), "monitoring's templates come with their own values"


def typo(key: str, position: int, kind: int) -> str:
    """`key` mistyped at `position`: the case of a letter swapped, a letter dropped, or a letter doubled."""
    position %= len(key)
    if kind == 0:
        return key[:position] + key[position].swapcase() + key[position + 1 :]
    if kind == 1 and len(key) > 1:
        return key[:position] + key[position + 1 :]
    return key[:position] + key[position] + key[position:]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(KEYS), position=st.integers(0, 40), kind=st.integers(0, 2))
def test_a_mistyped_value_fails_the_render_naming_it(
    helm: Path, path: tuple[str, ...], position: int, kind: int
) -> None:
    wrong = typo(path[-1], position, kind)
    parent: Any = VALUES
    for key in path[:-1]:
        parent = parent[key]
    if wrong == path[-1] or wrong in parent or not wrong.isalnum():
        return  # not a typo (swapcase of a digit), or another value's name
    assignment = ".".join((*path[:-1], wrong)) + "=" + json.dumps(parent[path[-1]])
    done = render(helm, assignment, check=False)
    assert done.returncode != 0, f"{assignment} was accepted"
    assert f"additional properties '{wrong}' not allowed" in done.stderr, done.stderr
    where = "".join(f"/{key}" for key in path[:-1])
    assert f"at '{where}'" in done.stderr, done.stderr


def test_api_tls_secretname_is_refused() -> None:
    """The issue's example, through `helm install` itself (a client-side dry run needs no cluster)."""
    helm = helm_binary()
    done = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), "--set", "api.tls.secretname=sx-api-tls"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "at '/api/tls': additional properties 'secretname' not allowed" in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("assignment", "where"),
    [
        ('replicas="two"', "/replicas"),
        ("replicas=-1", "/replicas"),
        ('image.pullPolicy="Sometimes"', "/image/pullPolicy"),
        ('api.mode="sidecars"', "/api/mode"),
        ("api.port=70000", "/api/port"),
        ('operator.logLevel="trace"', "/operator/logLevel"),
        ("largeResults.maxBytes=2000000", "/largeResults/maxBytes"),
        ('watchNamespaces=["Team_A"]', "/watchNamespaces/0"),
        ('api.service.type="External"', "/api/service/type"),
        ("api.audiences=[]", "/api/audiences"),
        ('operator.resources={"requests": {"cpu": "lots"}}', "/operator/resources/requests/cpu"),
        ('podDisruptionBudget.maxUnavailable="half"', "/podDisruptionBudget/maxUnavailable"),
        ('api.ingress.path="api"', "/api/ingress/path"),
        ('priorityClassName=["high"]', "/priorityClassName"),
        ('podLabels={"team": 1}', "/podLabels/team"),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_refused_naming_it(helm: Path, assignment: str, where: str) -> None:
    done = render(helm, assignment, check=False)
    assert done.returncode != 0, f"{assignment} was accepted"
    assert f"at '{where}'" in done.stderr, done.stderr


@pytest.mark.parametrize("values", [[], ALL_ON], ids=["defaults", "every-feature-on"])
def test_helm_lint_strict_passes(helm: Path, values: list[str]) -> None:
    command = [str(helm), "lint", "--strict", str(CHART)]
    for value in values:
        command += ["--set-json", value]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout
