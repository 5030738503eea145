"""elastic.io's own components, unmodified, run by their own sailor on the real node through the REST API's
elastic.io endpoints (issue 29, part 1; docs/runner-contract.md, "elastic.io components as they are").

The components are elastic.io's public repositories, copied byte for byte into tests/thirdparty (PROVENANCE.md
there names each commit), and built the elastic.io way (the repository + `npm install` of its lockfile's
dependencies, sailor among them) into images FROM a Node base made of Debian's packages
(tests/components/elasticio/*/Dockerfile):

- elasticio/petstore-component-nodejs @ fdffe6bc17e8f7d02ccb17d44a07cea842e7b0d8 (sailor 2.6.27): its
  verifyCredentials and its getStatusModel select model call the Petstore API, whose address is written in the
  component (https://petstore.elastic.io/v2). A fake of it (tests/components/elasticio/fake_petstore.py) serves
  as the HTTPS proxy the component's `request` library honours: the component map's pod template gives the
  component HTTPS_PROXY and NODE_TLS_REJECT_UNAUTHORIZED=0 (the fake's certificate is self-signed), nothing else.
- elasticio/splitter-component @ a83b47445234fc8b9dad6f75f8b339a7ce386e08 (sailor 2.7.7): the reassemble
  action's getMetaModel is computed from the cfg alone; it has no credentials (sailor's verifyCredentials
  then says verified).

Each result is compared with what the same component's own sailor POSTs when run directly on this machine
(tests/components/elasticio/sailor_on_host.py: `runService.js <method>` with the ELASTICIO_* variables and a
tiny HTTP catcher), for the same cfg, against the same fake: the components' dependencies are installed on the
host from the same lockfiles (`npm ci`).

The chart is installed again for this module with the two components in the REST API's component map (the
module's teardown installs the tier's chart again), with its operatorJobs admission policy on: the policy
admits the receiver sidecar from the runner image and nothing else beside the run's container.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schedexec_devcluster.__main__ import install_chart
from schedexec_devcluster.certs import NODE_IP
from schedexec_devcluster.registry import local_reference
from tests.node import conftest
from tests.node.support import API_TLS_SECRET
from tests.node.test_real_node import rest_client
from tests.support import REPO, LocalCluster

sys.path.insert(0, str(REPO / "tests" / "components" / "elasticio"))
from fake_petstore import API_KEY, FakePetstore
from sailor_on_host import sailor_post

pytestmark = pytest.mark.node

THIRDPARTY = REPO / "tests" / "thirdparty"
COMPONENTS = {"petstore": "elasticio-petstore-component-nodejs", "splitter": "elasticio-splitter-component"}
"""REST component id → its repository under tests/thirdparty."""
TLS_OFF = {"NODE_TLS_REJECT_UNAUTHORIZED": "0"}


def chart_values(components: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The node tier's chart values (tests/node/conftest.py), with `components` in the API's component map."""
    values = [
        "api.enabled=true",
        f"api.tls.secretName={API_TLS_SECRET}",
        "operator.minIntervalSeconds=1",
        f"operator.startFailureGraceSeconds={conftest.START_FAILURE_GRACE_SECONDS}",
        "operator.logLevel=debug",
    ]
    return values, [f"api.components={json.dumps({**conftest.API_COMPONENTS, **components})}"]


@pytest.fixture(scope="module")
def petstore() -> Iterator[FakePetstore]:
    fake = FakePetstore(host=NODE_IP)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def elasticio_chart(node_cluster: LocalCluster, petstore: FakePetstore) -> Iterator[None]:
    env = [{"name": "HTTPS_PROXY", "value": petstore.proxy_url}, *({"name": k, "value": v} for k, v in TLS_OFF.items())]
    components = {
        name: {"image": local_reference(f"ghcr.io/schedexec/test-elasticio-{name}:dev"), "runtime": "elasticio"}
        for name in COMPONENTS
    }
    components["petstore"]["pod_template"] = {"env": env}
    install_chart(node_cluster.plane, *chart_values(components))
    yield
    install_chart(node_cluster.plane, *chart_values({}))


@pytest.fixture(scope="module")
def on_host(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each component's repository with its lockfile's dependencies installed on this machine (`npm ci`)."""
    installed = {}
    for name, repository in COMPONENTS.items():
        target = tmp_path_factory.mktemp("elasticio") / name
        shutil.copytree(THIRDPARTY / repository, target)
        subprocess.run(
            ["npm", "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=target, check=True, capture_output=True
        )
        installed[name] = target
    return installed


@pytest.fixture(scope="module")
def http(node_cluster: LocalCluster, elasticio_chart: None) -> Iterator[tuple[httpx.Client, str]]:
    """A client of the REST API that may create executions (and, to send `fields`, Secrets) in a namespace."""
    namespace = f"eio-{int(time.time())}"
    node_cluster.kubectl("create", "namespace", namespace)
    with rest_client(node_cluster, namespace) as client:
        node_cluster.kubectl("create", "role", "client-secrets", "-n", namespace, "--verb=create", "--resource=secrets")
        node_cluster.kubectl(
            "create", "rolebinding", "client-secrets", "-n", namespace, "--role=client-secrets",
            f"--serviceaccount={namespace}:client",
        )  # fmt: skip
        yield client, namespace
    node_cluster.core.delete_namespace(namespace)


ENDPOINTS = {
    "verifyCredentials": "verify-credential",
    "getMetaModel": "dynamic-metadata",
    "selectModel": "select-model",
}


def through_the_api(
    http: tuple[httpx.Client, str],
    component: str,
    method: str,
    fields: dict[str, Any],
    module: str | None = None,
    function: str | None = None,
) -> httpx.Response:
    """The result answer of elastic.io's documented request for `method` of `component`, once finished."""
    client, namespace = http
    endpoint = ENDPOINTS[method]
    attributes: dict[str, Any] = {"fields": fields}
    if module:
        attributes["module"] = module
    if function:
        attributes["method"] = function
    accepted = client.post(
        f"/v2/components/{component}/versions/latest/{endpoint}",
        params={"namespace": namespace},
        json={"data": {"type": endpoint, "attributes": attributes}},
    )
    assert accepted.status_code == 202, accepted.text
    location, deadline = accepted.headers["Location"], time.monotonic() + 180
    while (polled := client.get(location)).status_code == 200:
        assert time.monotonic() < deadline, f"{component} {method} did not finish"
        time.sleep(0.5)
    assert polled.status_code == 303, polled.text
    return client.get(polled.headers["Location"])


def assert_same(answer: httpx.Response, sailor: dict[str, Any]) -> None:
    """schedexec's answer says what sailor posted: its data as the result, or its error message."""
    if sailor["status"] == "success":
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["attributes"]["result"] == {"data": sailor["data"]}
    else:
        assert answer.status_code == 400, answer.text
        (error,) = answer.json()["errors"]
        assert (error["detail"], error["meta"]["reason"]) == (sailor["data"]["message"], "ComponentError")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"apiKey": API_KEY}, {"verified": True}),
        ({"apiKey": "wrong-key"}, {"verified": True}),  # petstore's verify returns false: sailor counts it verified
        ({}, {"verified": False, "reason": "API key is missing"}),
    ],
)
def test_petstore_verify_credentials_is_sailors(
    http: tuple[httpx.Client, str],
    on_host: dict[str, Path],
    petstore: FakePetstore,
    fields: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    env = {"HTTPS_PROXY": petstore.proxy_url, **TLS_OFF}
    calls = petstore.calls["/v2/user/me"]
    sailor = sailor_post(on_host["petstore"], "verifyCredentials", fields, env=env)
    assert sailor == {"status": "success", "data": expected}
    assert_same(through_the_api(http, "petstore", "verifyCredentials", fields), sailor)
    if fields:
        assert petstore.calls["/v2/user/me"] == calls + 2, "the host's sailor and the run's each asked the API"


def test_petstore_select_model_is_sailors(
    http: tuple[httpx.Client, str], on_host: dict[str, Path], petstore: FakePetstore
) -> None:
    env = {"HTTPS_PROXY": petstore.proxy_url, **TLS_OFF}
    cfg = {"apiKey": API_KEY}
    sailor = sailor_post(on_host["petstore"], "selectModel", cfg, "getPetsByStatus", "getStatusModel", env)
    assert sailor["data"] == {"available": "Available", "pending": "Pending", "sold": "Sold"}
    assert_same(through_the_api(http, "petstore", "selectModel", cfg, "getPetsByStatus", "getStatusModel"), sailor)


def test_petstore_get_meta_model_fails_as_sailor_does(
    http: tuple[httpx.Client, str], on_host: dict[str, Path], petstore: FakePetstore
) -> None:
    env = {"HTTPS_PROXY": petstore.proxy_url, **TLS_OFF}
    sailor = sailor_post(on_host["petstore"], "getMetaModel", {"apiKey": API_KEY}, "getPetsByStatus", env=env)
    assert sailor["status"] == "error", "the petstore component has no getMetaModel: sailor says so"
    assert_same(through_the_api(http, "petstore", "getMetaModel", {"apiKey": API_KEY}, "getPetsByStatus"), sailor)


@pytest.mark.parametrize("cfg", [{"mode": "timeout", "emitAsArray": True}, {"mode": "groupSize&timeout"}])
def test_splitter_get_meta_model_is_sailors(
    http: tuple[httpx.Client, str], on_host: dict[str, Path], cfg: dict[str, Any]
) -> None:
    sailor = sailor_post(on_host["splitter"], "getMetaModel", cfg, "reassemble")
    assert sailor["status"] == "success" and "in" in sailor["data"]
    assert_same(through_the_api(http, "splitter", "getMetaModel", cfg, "reassemble"), sailor)


def test_splitter_verify_credentials_is_sailors(http: tuple[httpx.Client, str], on_host: dict[str, Path]) -> None:
    sailor = sailor_post(on_host["splitter"], "verifyCredentials", {})
    assert sailor == {"status": "success", "data": {"verified": True}}
    assert_same(through_the_api(http, "splitter", "verifyCredentials", {}), sailor)
