"""Your own component, as docs/own-component.md says, command by command, on the real node.

The docs' first command (``eval "$(make -s up)"``) is this tier's session cluster; the test then runs the other
two as a shell would: ``make component`` builds examples/my-component (FROM ghcr.io/schedexec/runner, the runner
built here) and pushes it to the local registry, printing the reference; ``kubectl sx run ... --wait`` runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schedexec_devcluster.registry import COMPONENTS_PATH, REGISTRY_HOST
from tests.node.test_kubectl_sx import sx
from tests.support import REPO, LocalCluster

pytestmark = pytest.mark.node
DOC = REPO / "docs" / "own-component.md"


def test_the_documented_commands_build_push_and_run_your_component(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    text = DOC.read_text()
    assert "IMAGE=$(make -s component DIR=examples/my-component NAME=my-component)" in text
    assert """kubectl sx run greet --image "$IMAGE" --method greet --args '{"name": "newcomer"}' --wait""" in text
    dockerfile = (REPO / "examples" / "my-component" / "Dockerfile").read_text().splitlines()
    assert len(dockerfile) == 3 and dockerfile[0].startswith("FROM ghcr.io/schedexec/runner:")

    venv = Path(sys.executable).parent.parent  # the Makefile's VENV (the checkout's .venv in CI)
    made = subprocess.run(
        ["make", "-s", "component", "DIR=examples/my-component", "NAME=my-component",
         f"CLUSTER_DIR={node_cluster.plane.state_dir}", f"VENV={venv}"],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    image = made.stdout.strip()
    assert image.startswith(f"{REGISTRY_HOST}/{COMPONENTS_PATH}/my-component:"), made.stdout

    done = sx(
        node_cluster, "run", "greet", "-n", node_namespace, "--image", image, "--method", "greet",
        "--args", json.dumps({"name": "newcomer"}), "--wait",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "Hello, newcomer!"}
