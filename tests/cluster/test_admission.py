"""Bad specs are refused by the API server itself, with a message naming the field."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from schedexec import models
from tests.support import LocalCluster

pytestmark = pytest.mark.cluster

GOOD = {"component": {"image": "ghcr.io/schedexec/test-component:dev"}, "method": "countdown"}


def manifest(namespace: str, spec: dict[str, Any], name: str = "bad") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"method": "countdown"}, "spec.component: Required value"),
        ({"component": {"image": "x"}}, "spec.method: Required value"),
        ({**GOOD, "component": {"image": ""}}, "spec.component.image"),
        ({**GOOD, "method": "has spaces"}, "spec.method"),
        ({**GOOD, "method": "getMetaModel"}, "spec.module is required when method is getMetaModel"),
        ({**GOOD, "method": "selectModel"}, "spec.function (the select-model function) is required"),
        ({**GOOD, "timeoutSeconds": 0}, "spec.timeoutSeconds"),
        ({**GOOD, "timeoutSeconds": 10, "runTimeoutSeconds": 20}, "spec.runTimeoutSeconds must not exceed"),
        ({**GOOD, "retries": 11}, "spec.retries"),
        ({**GOOD, "maxRuns": 0}, "spec.maxRuns"),
        ({**GOOD, "args": [1, 2]}, "spec.args"),
        ({**GOOD, "credentialsSecretRef": {}}, "spec.credentialsSecretRef.name: Required value"),
        ({**GOOD, "ttlSecondsAfterFinished": -1}, "spec.ttlSecondsAfterFinished"),
        (
            {**GOOD, "component": {**GOOD["component"], "resources": {"requests": {"cpu": "lots"}}}},
            "spec.component.resources.requests.cpu",
        ),
        (
            {**GOOD, "component": {**GOOD["component"], "resources": {"limits": {"memory": "1Gb"}}}},
            "spec.component.resources.limits.memory",
        ),
    ],
)
def test_an_invalid_spec_is_refused_by_kubectl_apply(
    cluster: LocalCluster, namespace: str, spec: dict[str, Any], message: str
) -> None:
    refused = cluster.apply(manifest(namespace, spec), check=False)
    assert refused.returncode != 0
    assert message in refused.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "other"}, "spec.method is immutable"),
        ({"args": {"left": 9}}, "spec.args is immutable"),
        ({"component": {"image": "other"}}, "spec.component is immutable"),
        ({"module": "added"}, "spec.module is immutable"),
    ],
)
def test_the_spec_is_immutable_except_cancel(
    cluster: LocalCluster, namespace: str, change: dict[str, Any], message: str
) -> None:
    spec = {**GOOD, "method": "sleep", "args": {"left": 1}}
    cluster.apply(manifest(namespace, spec, name="fixed"))
    refused = cluster.apply(manifest(namespace, {**spec, **change}, name="fixed"), check=False)
    assert refused.returncode != 0 and message in refused.stderr
    cluster.apply(manifest(namespace, {**spec, "cancel": True}, name="fixed"))
    back = cluster.apply(manifest(namespace, {**spec, "cancel": False}, name="fixed"), check=False)
    assert back.returncode != 0 and "spec.cancel cannot be set back to false" in back.stderr
