"""Poison inputs end one execution, never the operator (issue 24): on a real API server, Job controller and
node agent, an execution whose spec.args or run outcome breaks a bound fails with a reason that names it,
while the operator process runs on unshaken and the executions created alongside finish as usual.

The poison is what the API server stores and a component can write, but Python and pydantic choke on: JSON
nested past what they recurse through, strings that are not valid Unicode, a frame pointer that asks for
30 million lines, an error message of 256 KiB. Components write theirs raw, past the runner's own checks
(tests/components/testcomponent.py), as one in another language could.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from schedexec import models
from schedexec_runner import bounds, envelope
from tests.cluster.test_operator import execution
from tests.support import LocalCluster, Operator, wait_for

pytestmark = pytest.mark.cluster

NORMAL = 3
"""Normal executions created next to each poison one (the test operator has MAX_RUNNING = 3 run slots)."""
NORMAL_SECONDS = 45.0
"""How long the normal executions may take, all together: a run takes a few seconds on the node agent."""
POISON_TIMEOUT_SECONDS = 60
"""spec.timeoutSeconds of a poison run: it must end Failed well before, not TimedOut."""
POISON_SECONDS = 40.0
"""How long a poison execution may take to end Failed."""
DEEP_ARGS = 1000
"""How deep the poison spec.args nest: past Python's recursion limit, well within the API server's 10,000."""
RSS_GROWTH_LIMIT = 100 * 1024 * 1024
"""How much the operator's resident memory may grow while it meets a 30M-line frame pointer."""
STATUS_LIMIT = 64 * 1024
"""The largest an execution may be (as JSON) after a 256 KiB error message; etcd's limit is 1.5 MiB."""


def poison(name: str, method: str, **spec: Any) -> dict[str, Any]:
    timeouts = {"timeoutSeconds": POISON_TIMEOUT_SECONDS, "runTimeoutSeconds": POISON_TIMEOUT_SECONDS}
    return execution(name, method, retries=0, **timeouts, **spec)


def create(cluster: LocalCluster, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    created = cluster.custom.create_namespaced_custom_object(
        models.GROUP, models.VERSION, namespace, models.PLURAL, body
    )
    return cast(dict[str, Any], created)


def create_normal(cluster: LocalCluster, namespace: str) -> list[str]:
    """NORMAL selectModel getCategories executions; their names."""
    names = [f"normal-{i}" for i in range(NORMAL)]
    for name in names:
        create(cluster, namespace, execution(name, "selectModel", function="getCategories", module="m"))
    return names


def finished(cluster: LocalCluster, operator: Operator, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """The execution once finished; fails at once, with the operator's last words, if the operator exits."""

    def probe() -> dict[str, Any] | None:
        if not operator.running:
            pytest.fail(f"the operator exited while {name} ran; its log ends:\n{operator.logs()[-3000:]}")
        body = cluster.execution(namespace, name)
        phase = (body.get("status") or {}).get("phase")
        return body if phase and models.Phase(phase).finished else None

    return wait_for(f"execution {namespace}/{name} to finish", probe, timeout)


def assert_normal_succeed(cluster: LocalCluster, operator: Operator, namespace: str, names: list[str]) -> None:
    for name in names:
        body = finished(cluster, operator, namespace, name, NORMAL_SECONDS)
        assert body["status"]["phase"] == "Succeeded", body["status"]
        assert body["status"]["result"] == {"1": "Books", "2": "Music", "module": "m"}


def error(body: dict[str, Any]) -> dict[str, str]:
    return body["status"].get("error") or {}


@contextmanager
def unshaken(operator: Operator) -> Iterator[None]:
    """The operator runs throughout the block: the same process, never restarted, no traceback in its log."""
    assert operator.running and operator.process is not None
    pid, starts, seen = operator.process.pid, operator.starts, len(operator.logs())
    yield
    told = operator.logs()[seen:]
    assert operator.running, f"the operator exited ({operator.process.returncode}); its log ends:\n{told[-3000:]}"
    assert (operator.process.pid, operator.starts) == (pid, starts), "the operator was restarted"
    assert "Traceback" not in told, f"the operator logged a traceback:\n{told[told.index('Traceback') :][:3000]}"


@contextmanager
def deep_json() -> Iterator[None]:
    """Python's json module recurses once per level and stops at the recursion limit (1,000): the test's own
    client needs more to send and read DEEP_ARGS levels. The operator gets no such help."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(DEEP_ARGS * 3)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def nested(levels: int) -> dict[str, Any]:
    """An object `levels` deep: {"a": {"a": ... {} ...}}."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def rss(pid: int) -> int:
    """The resident memory of process `pid`, in bytes (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def test_args_nested_1000_deep_fail_that_execution_only(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    args = nested(DEEP_ARGS)
    assert bounds.depth(args) == DEEP_ARGS
    deep = execution("deep-args", "selectModel", function="getCategories", module="m", args=args)
    with unshaken(operator), deep_json():
        applied = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=json.dumps(deep))
        assert "created (server dry run)" in applied.stdout, "kubectl apply accepts it as well"
        created = create(cluster, namespace, deep)
        assert bounds.depth(created["spec"]["args"]) == DEEP_ARGS, "the API server stores it whole"
        names = create_normal(cluster, namespace)
        assert_normal_succeed(cluster, operator, namespace, names)
        done = finished(cluster, operator, namespace, "deep-args", POISON_SECONDS)
    assert done["status"]["phase"] == "Failed", done["status"]
    assert error(done).get("reason") in {"InvalidSpec", "ArgsTooDeep"}, done["status"]
    assert str(bounds.MAX_JSON_DEPTH) in error(done)["message"], "the message names the depth limit"
    assert not done["status"].get("history"), "no run starts"


def test_a_frame_pointer_of_30m_lines_fails_in_bounded_memory(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    assert operator.process is not None
    before = rss(operator.process.pid)
    with unshaken(operator):
        create(cluster, namespace, poison("pointer", "false-pointer", args={"lines": 30_000_000}))
        names = create_normal(cluster, namespace)
        done = finished(cluster, operator, namespace, "pointer", POISON_SECONDS)
        assert_normal_succeed(cluster, operator, namespace, names)
        grown = rss(operator.process.pid) - before
    assert done["status"]["phase"] == "Failed", done["status"]
    assert error(done).get("reason") == "InvalidEnvelope", done["status"]
    assert grown < RSS_GROWTH_LIMIT, f"the operator's RSS grew by {grown / 2**20:.0f} MiB"


def test_results_with_a_lone_surrogate_or_nested_300_deep_fail_as_invalid_envelopes(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    with unshaken(operator):
        create(cluster, namespace, poison("surrogate", "surrogate"))
        create(cluster, namespace, poison("deep-result", "deep-result", args={"depth": 300}))
        names = create_normal(cluster, namespace)
        surrogate = finished(cluster, operator, namespace, "surrogate", POISON_SECONDS)
        deep = finished(cluster, operator, namespace, "deep-result", POISON_SECONDS)
        assert_normal_succeed(cluster, operator, namespace, names)
    for done in (surrogate, deep):
        assert done["status"]["phase"] == "Failed", done["status"]
        assert error(done).get("reason") == "InvalidEnvelope", done["status"]
        assert "result" not in done["status"] or done["status"]["result"] is None
    assert "Unicode" in error(surrogate)["message"] or "surrogate" in error(surrogate)["message"]
    assert str(bounds.MAX_JSON_DEPTH) in error(deep)["message"], "the message names the depth limit"


def test_an_error_message_of_256_kib_leaves_a_small_status(
    cluster: LocalCluster, operator: Operator, namespace: str
) -> None:
    # the largest error envelope the operator inflates (its message just under 256 KiB), compressed to 1.4 KiB
    with unshaken(operator):
        create(cluster, namespace, poison("long", "long-error", args={"bytes": envelope.MAX_DECOMPRESSED_BYTES}))
        done = finished(cluster, operator, namespace, "long", POISON_SECONDS)
    assert done["status"]["phase"] == "Failed", done["status"]["phase"]
    assert error(done).get("reason") == "ShopUnavailable", "the component's reason is kept"
    assert "Service Unavailable" in error(done)["message"], "so is part of its message"
    size = len(json.dumps(done, separators=(",", ":")))
    assert size < STATUS_LIMIT, f"the execution is {size} bytes as JSON ({size / 1024:.0f} KiB)"
