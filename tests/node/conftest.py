"""Fixtures for the `node` tier: a real node (containerd + kubelet), the chart installed on it.

One cluster per session in a temporary directory: the control plane, a
real node that pulls the images built from this repository's Dockerfiles
from the local registry (over TLS, authenticated; registry.py), and the Helm chart (the operator, and the REST API as a
Deployment of its own serving TLS from a Secret) as pods. Nothing here
runs the operator or a component as a local process: what the tests
observe was done by containers on a kubelet.

The tier needs root (containerd, kubelet, the pod bridge). Where it cannot
start it FAILS under CI=true and is skipped with the exact reason
elsewhere: it never passes without running.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import pytest

from schedexec_devcluster import binaries
from schedexec_devcluster.__main__ import install_chart, node_setup
from schedexec_devcluster.certs import NODE_IP
from schedexec_devcluster.controlplane import ControlPlane
from schedexec_devcluster.node import NodeError
from schedexec_devcluster.registry import local_reference
from tests.node.support import API_TLS_SECRET, TEST_IMAGE, create_api_tls_secret
from tests.support import REPO, LocalCluster, new_namespace

sys.path.insert(0, str(REPO / "examples"))
import remote_services

API_COMPONENTS = {
    "shop": {"image": local_reference("ghcr.io/schedexec/example-shop:{revision}"), "default_revision": "0.1.0"},
    "test": {"image": TEST_IMAGE},
}
START_FAILURE_GRACE_SECONDS = 5
"""The chart's operator.startFailureGraceSeconds in this tier (default 30 s), so fail-fast tests end in seconds."""

CHART_VALUES = (
    "api.enabled=true",
    f"api.tls.secretName={API_TLS_SECRET}",
    "operator.minIntervalSeconds=1",
    f"operator.startFailureGraceSeconds={START_FAILURE_GRACE_SECONDS}",
    "operator.logLevel=debug",
)
"""The chart's values in this tier (`--set`); CHART_JSON_VALUES are `--set-json` ones."""
CHART_JSON_VALUES = (f"api.components={json.dumps(API_COMPONENTS)}",)


def _unavailable(reason: str) -> None:
    message = f"the real node cannot be started here: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if os.geteuid() != 0:
        _unavailable("it needs root (containerd, kubelet and the pod bridge)")
    try:
        found = binaries.ensure_binaries(build=True)
        setup = node_setup()
    except (binaries.BinariesUnavailable, NodeError, RuntimeError) as exc:
        _unavailable(str(exc))
    plane = ControlPlane(tmp_path_factory.mktemp("node-cluster"), binaries=found, node=setup, owner=os.getpid())
    try:
        plane.up()
    except NodeError as exc:  # the host refused: not root enough, a module or a package missing
        _unavailable(str(exc))
    try:
        handle = LocalCluster(plane, found.require(binaries.KUBECTL))
        create_api_tls_secret(handle)
        install_chart(plane, CHART_VALUES, CHART_JSON_VALUES)
        yield handle
    finally:
        plane.down()


@pytest.fixture
def node_namespace(node_cluster: LocalCluster) -> Iterator[str]:
    name = new_namespace(node_cluster, "n")
    yield name
    node_cluster.core.delete_namespace(name)


@pytest.fixture
def remote() -> Iterator[str]:
    """The examples' remote services, on the node's address so that pods reach them."""
    server = remote_services.serve(remote_services.Remote(api_key="demo-key", polls=2, limit=2), host=NODE_IP)
    yield f"http://{NODE_IP}:{server.server_port}"
    server.shutdown()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_host_cleanup's tests first: they start nodes of their own, so they must run before any test brings the
    session's node up (this machine has one node slot), whatever the names of the other modules."""
    first = [item for item in items if item.path.name == "test_host_cleanup.py"]
    items[:] = first + [item for item in items if item not in first]
