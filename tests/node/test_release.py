"""The path of a user of a published release: `make release` to a registry, then the chart from `oci://`.

`make release` pushes the images (with their OCI labels) and the chart to the local registry, as it would to
ghcr.io; the test then installs that chart from `oci://` with helm on the real node (in place of the session's
release, restored afterwards), and an execution runs to Succeeded under the released operator.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from schedexec_devcluster.__main__ import CHART_NAMESPACE, CHART_RELEASE, install_chart
from schedexec_devcluster.binaries import ensure_helm
from schedexec_devcluster.registry import REGISTRY_HOST, Credentials, RegistryLayout, load_credentials
from tests.node.conftest import CHART_JSON_VALUES, CHART_VALUES
from tests.node.support import execution, run, running_operator_pod
from tests.support import REPO, LocalCluster, wait_for

pytestmark = pytest.mark.node
RELEASE_REGISTRY = f"{REGISTRY_HOST}/schedexec/release"
VERSION = "0.2.0-rc.1"


def image_labels(reference: str, user: Credentials, ca: Path) -> dict[str, str]:
    """The labels of a pushed image, read from the registry (manifest, then its config blob)."""
    host, _, rest = reference.partition("/")
    repository, _, tag = rest.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca))
    auth = "Basic " + base64.b64encode(user.creds.encode()).decode()

    def get(path: str, accept: str = "*/*") -> Any:
        request = urllib.request.Request(f"https://{host}/v2/{repository}/{path}")
        request.add_header("Authorization", auth)
        request.add_header("Accept", accept)
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return json.load(response)

    manifest = get(f"manifests/{tag}", "application/vnd.oci.image.manifest.v1+json")
    labels: dict[str, str] = get(f"blobs/{manifest['config']['digest']}")["config"]["Labels"]
    return labels


def test_a_release_installs_from_oci_and_runs(node_cluster: LocalCluster, node_namespace: str, tmp_path: Path) -> None:
    state_dir = node_cluster.plane.state_dir
    venv = Path(sys.executable).parent.parent
    made = subprocess.run(
        ["make", "-s", "release", f"REGISTRY={RELEASE_REGISTRY}", f"VERSION={VERSION}",
         f"CLUSTER_DIR={state_dir}", f"VENV={venv}"],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    chart = f"oci://{RELEASE_REGISTRY}/charts/schedexec"
    assert made.stdout.split() == [
        *(f"{RELEASE_REGISTRY}/{name}:{VERSION}" for name in ("runner", "operator")),
        *(f"{RELEASE_REGISTRY}/example-{name}:{VERSION}" for name in ("shop", "sandbox", "ratelimited")),
        f"{chart}:{VERSION}",
    ]
    users, ca = load_credentials(state_dir), RegistryLayout(state_dir).cert_dir / "ca.crt"
    revision = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    labels = image_labels(f"{RELEASE_REGISTRY}/operator:{VERSION}", users["pull"], ca)
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.revision"] == revision.strip()
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")

    # A user: log in to the registry, install the chart from oci:// (here in place of the session's release).
    helm = str(ensure_helm())
    config = ["--registry-config", str(tmp_path / "registry.json")]
    login = [helm, "registry", "login", REGISTRY_HOST, "--username", users["pull"].username, "--password-stdin"]
    done = subprocess.run(
        [*login, "--ca-file", str(ca), *config], input=users["pull"].password, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    try:
        done = subprocess.run(
            [helm, "upgrade", "--install", CHART_RELEASE, chart, "--version", VERSION, "--ca-file", str(ca), *config,
             "--kubeconfig", str(node_cluster.kubeconfig), "--namespace", CHART_NAMESPACE,
             *(arg for value in CHART_VALUES for arg in ("--set", value)),
             *(arg for value in CHART_JSON_VALUES for arg in ("--set-json", value)),
             "--wait", "--timeout", "180s"],
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        released = f"{RELEASE_REGISTRY}/operator:{VERSION}"

        def released_operator() -> Any:
            pod = running_operator_pod(node_cluster)
            return pod if pod.spec.containers[0].image == released else None

        pod = wait_for("the released operator's pod", released_operator, timeout=120)
        assert pod.status.container_statuses[0].image_id.startswith(f"{RELEASE_REGISTRY}/operator@sha256:")
        status = run(node_cluster, execution("after-release", node_namespace, method="files"))
        assert status["phase"] == "Succeeded", status
    finally:
        install_chart(node_cluster.plane, CHART_VALUES, CHART_JSON_VALUES)  # the session's release, for the next tests
