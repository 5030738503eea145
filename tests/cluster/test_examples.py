"""The three examples under examples/, end to end against real HTTP services on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import REPO, LocalCluster, Operator

sys.path.insert(0, str(REPO / "examples"))
import remote_services

pytestmark = pytest.mark.cluster
EXAMPLES = REPO / "examples"


@pytest.fixture
def remote() -> Iterator[str]:
    server = remote_services.serve(remote_services.Remote(api_key="demo-key", polls=2, limit=2))
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def run_example(cluster: LocalCluster, namespace: str, path: Path, url: str, **overrides: Any) -> dict[str, Any]:
    """Apply an example manifest as written, pointed at this test's remote services."""
    text = path.read_text().replace("http://127.0.0.1:18765", url)
    body = yaml.safe_load(text)
    body["spec"]["args"].update(overrides)
    cluster.apply({**body, "metadata": {**body["metadata"], "namespace": namespace}})
    return cluster.wait_finished(namespace, body["metadata"]["name"], timeout=120)["status"]  # type: ignore[no-any-return]


@pytest.fixture
def shop(cluster: LocalCluster, namespace: str) -> str:
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "shop/credentials.yaml"))
    return namespace


def test_shop_select_model_lists_the_categories(
    cluster: LocalCluster, operator: Operator, shop: str, remote: str
) -> None:
    status = run_example(cluster, shop, EXAMPLES / "shop/select-model.yaml", remote)
    assert status["phase"] == "Succeeded"
    assert status["result"] == {"books": "Books", "music": "Music", "garden": "Garden"}


def test_shop_get_meta_model_describes_the_category(
    cluster: LocalCluster, operator: Operator, shop: str, remote: str
) -> None:
    status = run_example(cluster, shop, EXAMPLES / "shop/get-meta-model.yaml", remote)
    assert status["result"]["out"]["properties"]["isbn"] == {"type": "string"}
    assert "limit" in status["result"]["in"]["properties"]


def test_shop_verify_credentials(cluster: LocalCluster, operator: Operator, shop: str, remote: str) -> None:
    status = run_example(cluster, shop, EXAMPLES / "shop/verify-credentials.yaml", remote)
    assert status["result"] == {"verified": True, "account": "demo-shop"}
    cluster.kubectl("patch", "secret", "shop-credentials", "-n", shop, "-p", '{"stringData": {"apiKey": "wrong"}}')
    manifest = yaml.safe_load((EXAMPLES / "shop/verify-credentials.yaml").read_text())
    manifest["metadata"] = {"name": "shop-verify-wrong", "namespace": shop}
    manifest["spec"]["args"]["shopUrl"] = remote
    cluster.apply(manifest)
    refused = cluster.wait_finished(shop, "shop-verify-wrong")["status"]
    assert refused["phase"] == "Succeeded"
    assert refused["result"]["verified"] is False and "401" in refused["result"]["reason"]


def test_sandbox_detonation_polls_until_complete(
    cluster: LocalCluster, operator: Operator, namespace: str, remote: str
) -> None:
    status = run_example(cluster, namespace, EXAMPLES / "sandbox/detonate.yaml", remote, pollSeconds=1)
    assert status["phase"] == "Succeeded"
    assert status["result"] == {"jobId": "det-1", "verdict": "benign", "score": 3}
    assert [r["outcome"] for r in status["history"]] == ["Scheduled", "Scheduled", "Done"]


def test_sandbox_timeout_keeps_the_remote_job_id(
    cluster: LocalCluster, operator: Operator, namespace: str, remote: str
) -> None:
    manifest = yaml.safe_load((EXAMPLES / "sandbox/detonate.yaml").read_text())
    manifest["metadata"] = {"name": "slow-sandbox", "namespace": namespace}
    manifest["spec"].update(timeoutSeconds=5, runTimeoutSeconds=5)
    manifest["spec"]["args"].update(sandboxUrl=remote, pollSeconds=60)
    cluster.apply(manifest)
    status = cluster.wait_finished(namespace, "slow-sandbox")["status"]
    assert status["phase"] == "TimedOut"
    assert status["partialResult"] == {"jobId": "det-1", "status": "running"}


def test_rate_limited_fetch_backs_off_exponentially(
    cluster: LocalCluster, operator: Operator, namespace: str, remote: str
) -> None:
    status = run_example(cluster, namespace, EXAMPLES / "ratelimited/fetch.yaml", remote, baseDelaySeconds=1)
    assert status["phase"] == "Succeeded"
    assert status["result"]["attempts"] == 3 and status["result"]["data"] == "the answer"
    waits = [(b["startedAt"], a["finishedAt"]) for a, b in zip(status["history"], status["history"][1:], strict=False)]
    gaps = [(_t(start) - _t(end)) for start, end in waits]
    assert gaps[1] >= 2 * 0.9 and gaps[0] >= 1 * 0.9, f"backoff 1s then 2s, saw {gaps}"


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
