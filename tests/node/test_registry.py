"""The real node pulls from a real registry: TLS with the cluster's CA, htpasswd, credentials per repository.

What users rely on: the node pulls every project image from the registry (none imported but the pod sandbox),
a private image runs with ``spec.component.imagePullSecrets`` and, without them, fails fast as
``ImagePullFailed`` naming the registry's refusal (a 401, which containerd words "pull access denied ...
authorization failed"), not after the run's timeout.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from schedexec_devcluster.__main__ import REPO_ROOT
from schedexec_devcluster.controlplane import REGISTRY
from schedexec_devcluster.images import PAUSE_IMAGE, ensure_images, push_images
from schedexec_devcluster.node import NodeLayout, ctr
from schedexec_devcluster.registry import (
    PRIVATE_PATH,
    REGISTRY_HOST,
    RegistryLayout,
    docker_config_json,
    load_credentials,
)
from tests.node.support import TEST_IMAGE, execution, run, running_operator_pod
from tests.support import LocalCluster

pytestmark = pytest.mark.node
SOURCE_IMAGE = "ghcr.io/schedexec/test-component:dev"


def test_the_node_pulled_the_project_images_from_the_registry(node_cluster: LocalCluster, node_namespace: str) -> None:
    status = run(node_cluster, execution("pulled", node_namespace, method="files"))
    assert status["phase"] == "Succeeded", status
    pod = running_operator_pod(node_cluster)
    (operator,) = pod.status.container_statuses
    assert operator.image_id.startswith(f"{REGISTRY_HOST}/schedexec/operator@sha256:"), operator.image_id
    node = node_cluster.plane.node
    assert node is not None
    listed = subprocess.run(
        ctr(node.binaries, NodeLayout(node_cluster.plane.state_dir), "images", "ls", "-q"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert TEST_IMAGE in listed
    named = {name.split("@")[0] for name in listed if not name.startswith("sha256:")}
    imported = {name for name in named if not name.startswith(f"{REGISTRY_HOST}/")}
    assert imported == {PAUSE_IMAGE}, "only the pod sandbox image is imported; every other image was pulled"


def test_a_private_image_needs_its_pull_secret(node_cluster: LocalCluster, node_namespace: str) -> None:
    state_dir = node_cluster.plane.state_dir
    users = load_credentials(state_dir)
    tag = uuid.uuid4().hex[:8]  # a reference never pulled before: the node's image cache cannot answer for it
    private = f"{REGISTRY_HOST}/{PRIVATE_PATH}/test-component:{tag}"
    pushed = push_images(
        REPO_ROOT, lambda _: private, users["push"].creds, RegistryLayout(state_dir).cert_dir, only={SOURCE_IMAGE}
    )
    assert pushed == [private]

    # Without the Secret: the node has no credentials for this repository, the registry answers 401.
    body = execution("no-pull-secret", node_namespace, method="files", runTimeoutSeconds=600)
    body["spec"]["component"]["image"] = private
    started = time.monotonic()
    status = run(node_cluster, body)
    assert status["phase"] == "Failed", status
    assert status["error"]["reason"] == "ImagePullFailed"
    message = status["error"]["message"]
    assert private in message
    # containerd words the registry's 401 (no credentials sent) as "pull access denied ... authorization failed"
    assert "pull access denied" in message and "authorization" in message, message
    access = node_cluster.plane.layout.log_file(REGISTRY).read_text().splitlines()
    manifest = f"/v2/{PRIVATE_PATH}/test-component/manifests/{tag} "
    pulls = [line for line in access if manifest in line and '"containerd/' in line]  # the access log's lines
    assert pulls and all('" 401 ' in line for line in pulls), pulls
    assert time.monotonic() - started < 60, "after the start-failure grace (5 s here), not after runTimeoutSeconds"

    # With it: the pull user's credentials, as a user's registry Secret gives them.
    node_cluster.core.create_namespaced_secret(
        node_namespace,
        {
            "metadata": {"name": "registry"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": docker_config_json(users["pull"])},
        },
    )
    body = execution("with-pull-secret", node_namespace, method="files")
    body["spec"]["component"]["image"] = private
    body["spec"]["component"]["imagePullSecrets"] = [{"name": "registry"}]
    status = run(node_cluster, body)
    assert status["phase"] == "Succeeded", status


def test_the_built_archives_load_as_kind_loads_them(node_cluster: LocalCluster) -> None:
    """docs/kind.md's `make kind-load`: kind's `load image-archive` pipes the archive into
    `ctr --namespace=k8s.io images import -` on its node; the same command, on this node's containerd."""
    node = node_cluster.plane.node
    assert node is not None
    (runner,) = [image for image in ensure_images(REPO_ROOT) if image.name == "ghcr.io/schedexec/runner:0.1.0"]
    layout = NodeLayout(node_cluster.plane.state_dir)
    with runner.archive.open("rb") as archive:
        subprocess.run(ctr(node.binaries, layout, "images", "import", "-"), stdin=archive, check=True, timeout=300)
    listed = subprocess.run(
        ctr(node.binaries, layout, "images", "ls", "-q"), capture_output=True, text=True, check=True
    ).stdout.split()
    assert runner.name in listed
    subprocess.run(ctr(node.binaries, layout, "images", "rm", runner.name), check=True, timeout=60)
