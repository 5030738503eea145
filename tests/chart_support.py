"""The Helm chart as its tests see it: the helm binary, `helm template` with values, the rendered objects.

Shared by tests/unit/test_chart_*.py (rendering needs no cluster) and tests/cluster/test_chart.py (which also
applies what it renders). helm is the pinned one the repository builds (`make binaries`); without it the tests
FAIL under CI=true and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from schedexec_devcluster import binaries

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "schedexec"
RELEASE, NAMESPACE = "sx", "schedexec-system"


def helm_binary() -> Path:
    try:
        return binaries.ensure_helm()
    except binaries.BinariesUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"helm is needed for the chart checks: {exc}")
        pytest.skip(f"helm is needed for the chart checks: {exc}")


def render(
    helm: Path, *values: str, check: bool = True, release: str = RELEASE, namespace: str = NAMESPACE
) -> subprocess.CompletedProcess[str]:
    """`helm template` with each of `values` as a --set-json assignment (KEY=JSON)."""
    command = [
        str(helm),
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--include-crds",
        "--kube-version",
        binaries.KUBERNETES_VERSION,
    ]
    for value in values:
        command += ["--set-json", value]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]
