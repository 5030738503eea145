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

ALL_ON = [
    "api.enabled=true",
    'api.tls.secretName="sx-api-tls"',
    "api.ingress.enabled=true",
    'api.ingress.className="nginx"',
    'api.ingress.hosts=["api.example.com"]',
    'api.ingress.tls=[{"secretName": "api-example-com", "hosts": ["api.example.com"]}]',
    "api.httpRoute.enabled=true",
    'api.httpRoute.parentRefs=[{"name": "public", "namespace": "gateways"}]',
    'api.httpRoute.hostnames=["api.example.com"]',
    "replicas=2",
    "api.replicas=2",
    "metrics.serviceMonitor.enabled=true",
    'networkPolicy.metricsFrom=[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]',
    'networkPolicy.apiFrom=[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}]',
    'priorityClassName="schedexec-critical"',
    'podLabels={"team": "platform"}',
    'podAnnotations={"example.com/owner": "platform"}',
    'imagePullSecrets=[{"name": "registry"}]',
    "monitoring.prometheusRule.enabled=true",
    "monitoring.dashboard.enabled=true",
    "monitoring.api.serviceMonitor.enabled=true",
]
"""Every optional feature of the chart on (and the API in its own Deployment, the default mode)."""


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
