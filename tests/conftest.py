"""Fixtures for tests on the real local control plane (marker `cluster`).

Fixtures only (helpers are in tests/support.py). One control plane per test session (etcd, kube-apiserver,
kube-controller-manager and the node agent), started in a temporary
directory and stopped at the end; one namespace per test. If the
control-plane binaries can be neither found nor built, cluster tests FAIL
under CI=true and are skipped with the reason elsewhere: they never pass
without running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from schedexec import crd
from schedexec_devcluster import binaries
from schedexec_devcluster.__main__ import node_agent_process
from schedexec_devcluster.controlplane import ControlPlane
from tests.support import REPO, LocalCluster, Operator, new_namespace


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    try:
        found = binaries.ensure_binaries(build=True)
    except binaries.BinariesUnavailable as exc:
        message = f"the local Kubernetes control plane cannot be started: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    state = tmp_path_factory.mktemp("cluster")
    plane = ControlPlane(state, binaries=found, owner=os.getpid())  # a reaper stops it if this session is killed
    plane.extra_processes.append(node_agent_process(plane))
    plane.up()
    try:
        handle = LocalCluster(plane, found.require(binaries.KUBECTL))
        handle.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))  # the CRD and the admission policy
        established = REPO / "crds" / crd.CRD_FILE
        handle.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(established))
        yield handle
    finally:
        plane.down()


@pytest.fixture
def namespace(cluster: LocalCluster) -> Iterator[str]:
    name = new_namespace(cluster, "t")
    yield name
    cluster.core.delete_namespace(name)


_session_operators: list[Operator] = []
"""The session's shared operator, once a test has asked for it."""


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    handle = Operator(cluster, tmp_path_factory.mktemp("operator"))
    handle.start()
    _session_operators.append(handle)
    yield handle
    _session_operators.remove(handle)
    handle.stop()


@pytest.fixture
def without_session_operator() -> Iterator[None]:
    """For tests that run operators of their own: the shared one (cluster-wide) is stopped meanwhile,
    so that the work they observe is provably done by theirs."""
    paused = [handle for handle in _session_operators if handle.running]
    for handle in paused:
        handle.stop()
    yield
    for handle in paused:
        handle.start()
