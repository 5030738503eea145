"""`kubectl sx` on the real node, driven as a user drives it: the tier's kubectl binary finds the installed
`kubectl-sx` on PATH (the .venv's bin, where `make install` puts the console script) and talks to the
chart's operator, whose runs are containers on a kubelet (issue 28's "Done when")."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from schedexec import manifests
from schedexec.sx.specs import RESUBMITTED_FROM
from schedexec_devcluster.registry import local_reference
from tests.node.support import TEST_IMAGE
from tests.support import REPO, LocalCluster, client_token, wait_for

sys.path.insert(0, str(REPO / "tests" / "components"))
import testcomponent

pytestmark = pytest.mark.node
EXAMPLES = REPO / "examples"
LOCAL_URL = "http://127.0.0.1:18765"


def sx(
    cluster: LocalCluster, *args: str, stdin: str | None = None, kubeconfig: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """`kubectl sx ARGS` as a shell runs it: kubectl looks `kubectl-sx` up on PATH, the venv's bin first."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which("kubectl-sx", path=path) is None:
        pytest.fail("kubectl-sx is not on PATH: `make install` installs it into .venv/bin")
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(kubeconfig or cluster.kubeconfig)}
    return subprocess.run(
        [str(cluster.kubectl_path), "sx", *args], input=stdin, capture_output=True, text=True, timeout=timeout, env=env
    )


def created_name(done: subprocess.CompletedProcess[str]) -> str:
    """The generated name from `-o name` (`scheduledexecution.schedexec.io/NAME`)."""
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().rsplit("/", 1)[1]


def example(path: Path, url: str, **args: Any) -> str:
    """An example manifest as written, pointed at this test's remote services, its polls shortened."""
    body = yaml.safe_load(path.read_text().replace(LOCAL_URL, url))
    body["spec"]["args"].update(args)
    # the node pulls the project's images from its registry (registry.local_reference)
    body["spec"]["component"]["image"] = local_reference(body["spec"]["component"]["image"])
    return yaml.safe_dump(body)


@pytest.mark.parametrize(
    ("manifest", "args", "expected"),
    [
        ("shop/select-model.yaml", {}, {"books": "Books", "music": "Music", "garden": "Garden"}),
        ("sandbox/detonate.yaml", {"pollSeconds": 1}, {"jobId": "det-1", "verdict": "benign", "score": 3}),
        ("ratelimited/fetch.yaml", {"baseDelaySeconds": 1}, None),
    ],
)
def test_run_and_wait_of_each_example_prints_its_result_and_exits_0(
    node_cluster: LocalCluster,
    node_namespace: str,
    remote: str,
    manifest: str,
    args: dict[str, Any],
    expected: Any,
) -> None:
    node_cluster.kubectl("apply", "-n", node_namespace, "-f", str(EXAMPLES / "shop/credentials.yaml"))
    text = example(EXAMPLES / manifest, remote, **args)
    done = sx(node_cluster, "run", "-n", node_namespace, "-f", "-", "--wait", stdin=text)
    assert done.returncode == 0, done.stderr
    name = yaml.safe_load(text)["metadata"]["name"]
    assert f"scheduledexecution.schedexec.io/{name} created" in done.stderr
    result = json.loads(done.stdout)
    assert result == node_cluster.execution(node_namespace, name)["status"]["result"]
    if expected is not None:
        assert result == expected
    assert sx(node_cluster, "wait", name, "-n", node_namespace).returncode == 0


def test_each_outcome_has_its_exit_code_and_a_failed_run_is_described(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    ns = ["-n", node_namespace, "--image", TEST_IMAGE]
    failed = sx(node_cluster, "run", "failing", *ns, "--method", "fail", "--wait")
    assert failed.returncode == 3, failed.stderr
    assert failed.stderr.strip().endswith(
        "error: scheduledexecution.schedexec.io/failing Failed: ShopUnavailable: the shop answered 503"
    )
    assert failed.stdout == ""
    timed_out = sx(
        node_cluster, "run", *ns, "--method", "countdown", "--args", '{"left": 5, "every": 30}', "--timeout", "6s",
        "--run-timeout", "5s", "--wait",
    )  # fmt: skip
    assert timed_out.returncode == 4, timed_out.stderr
    assert " TimedOut: Timeout" in timed_out.stderr

    described = sx(node_cluster, "describe", "failing", "-n", node_namespace)
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert "Phase:        Failed\n" in text and "Reason:       ShopUnavailable\n" in text
    history = text[text.index("History:") : text.index("Events:")].splitlines()
    row = history[2].split()
    assert row[0] == "1" and row[-4] == "Error" and row[-2:] == ["1", "ShopUnavailable"], row
    assert re.fullmatch(r"(\d+[dhms])+", row[-3]), f"the run's lateness (startedAt - dueAt): {row[-3]}"
    assert "ShopUnavailable" in text[text.index("Events:") :], "the operator's Warning event is shown"


def test_cancel_of_a_waiting_sequence_and_resubmit_with_new_args(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    ns = ["-n", node_namespace]
    name = created_name(
        sx(node_cluster, "run", *ns, "--image", TEST_IMAGE, "--method", "countdown", "--args",
           '{"left": 3, "every": 60}', "-o", "name")
    )  # fmt: skip
    wait_for(
        "the sequence to wait for its next run",
        lambda: (node_cluster.execution(node_namespace, name).get("status") or {}).get("phase") == "Waiting",
        timeout=120,
    )
    still = sx(node_cluster, "wait", name, *ns, "--timeout", "2s")
    assert still.returncode == 6 and "(still Waiting)" in still.stderr
    cancelled = sx(node_cluster, "cancel", name, *ns)
    assert cancelled.returncode == 0 and cancelled.stdout == f"scheduledexecution.schedexec.io/{name} cancelled\n"
    ended = sx(node_cluster, "wait", name, *ns, "--timeout", "60s")
    assert ended.returncode == 5, ended.stderr
    assert f"{name} Cancelled: Cancelled" in ended.stderr

    again = sx(node_cluster, "resubmit", name, *ns, "--args", '{"left": 1, "every": 1}', "--wait", "-o", "name")
    assert again.returncode == 0, again.stderr
    created, result = again.stdout.split("\n", 1)
    assert json.loads(result) == {"seen": [1, 2]}, "the new args ran, not the old ones"
    new = node_cluster.execution(node_namespace, created.rsplit("/", 1)[1])
    assert new["metadata"]["annotations"][RESUBMITTED_FROM] == name
    assert "cancel" not in new["spec"] or new["spec"]["cancel"] is False


def test_a_900_kib_result_is_read_back_intact(node_cluster: LocalCluster, node_namespace: str) -> None:
    done = sx(
        node_cluster, "run", "wide", "-n", node_namespace, "--image", TEST_IMAGE, "--method", "getMetaModel",
        "--module", "wide", "--args", '{"kib": 910}', "--wait",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == testcomponent.wide_schema(910)  # about 901 KiB of JSON
    reference = node_cluster.execution(node_namespace, "wide")["status"]["resultRef"]
    assert reference["bytes"] >= 900 * 1024, "a 900 KiB result, kept in a ConfigMap, not in the status"
    raw = sx(node_cluster, "result", "wide", "-n", node_namespace, "-o", "raw")
    assert raw.returncode == 0, raw.stderr
    text = raw.stdout.removesuffix("\n").encode()
    assert (len(text), hashlib.sha256(text).hexdigest()) == (reference["bytes"], reference["sha256"])

    # a ConfigMap that no longer matches its reference is refused, not printed
    config_map = node_cluster.core.read_namespaced_config_map(reference["configMap"], node_namespace)
    node_cluster.core.delete_namespaced_config_map(reference["configMap"], node_namespace)
    data = json.loads(config_map.data[manifests.RESULT_KEY])
    data["in"]["title"] = "changed"
    owners = node_cluster.core.api_client.sanitize_for_serialization(config_map.metadata.owner_references)
    node_cluster.core.create_namespaced_config_map(
        node_namespace,
        {
            "metadata": {"name": reference["configMap"], "ownerReferences": owners},
            "data": {manifests.RESULT_KEY: json.dumps(data)},
        },
    )
    damaged = sx(node_cluster, "result", "wide", "-n", node_namespace)
    assert (damaged.returncode, damaged.stdout) == (1, "")
    assert "status.resultRef says" in damaged.stderr or "differs from status.resultRef" in damaged.stderr
    # and one that is not the execution's (no owner) is refused before it is read
    node_cluster.core.delete_namespaced_config_map(reference["configMap"], node_namespace)
    node_cluster.core.create_namespaced_config_map(
        node_namespace,
        {"metadata": {"name": reference["configMap"]}, "data": config_map.data},
    )
    foreign = sx(node_cluster, "result", "wide", "-n", node_namespace)
    assert (foreign.returncode, foreign.stdout) == (1, "")
    assert "is not owned by this execution" in foreign.stderr


def test_logs_of_run_2_of_a_polling_sequence_while_it_runs_and_after(
    node_cluster: LocalCluster, node_namespace: str
) -> None:
    ns = ["-n", node_namespace]
    args = json.dumps({"runs": 2, "lines": 8, "pause": 1, "every": 1})
    name = created_name(
        sx(node_cluster, "run", *ns, "--image", TEST_IMAGE, "--method", "chatter", "--args", args, "-o", "name")
    )

    def run_2_current() -> bool:
        status = node_cluster.execution(node_namespace, name).get("status") or {}
        return (status.get("currentRun") or {}).get("index") == 2

    wait_for("run 2 to start", run_2_current, timeout=120)
    followed = sx(node_cluster, "logs", name, *ns, "--run", "2", "-f")
    assert followed.returncode == 0, followed.stderr
    assert [line for line in followed.stdout.splitlines() if line.startswith("run ")] == [
        f"run 2 line {i}" for i in range(8)
    ], "run 2's whole log, followed to its end, and nothing of run 1"
    assert sx(node_cluster, "wait", name, *ns, "--timeout", "60s").returncode == 0
    # the runs' Jobs are kept for spec.runRetentionSeconds (issue 27): run 2's log after it finished too
    kept = sx(node_cluster, "logs", name, *ns, "--run", "2")
    assert kept.returncode == 0, kept.stderr
    assert [line for line in kept.stdout.splitlines() if line.startswith("run ")] == [
        f"run 2 line {i}" for i in range(8)
    ]

    # once a run's Job is gone (deleted after its outcome, or when its retention ends), its log is: said so
    for job in node_cluster.batch.list_namespaced_job(node_namespace).items:
        node_cluster.batch.delete_namespaced_job(job.metadata.name, node_namespace, propagation_policy="Background")
    wait_for("the runs' pods to go", lambda: not node_cluster.core.list_namespaced_pod(node_namespace).items, 60)
    gone = sx(node_cluster, "logs", name, *ns, "--run", "1")
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"error: the log of run 1 of sx/{name} is gone: its Job")
    assert gone.stderr.count("\n") == 1


def test_run_wait_logs_streams_each_runs_log(node_cluster: LocalCluster, node_namespace: str) -> None:
    args = json.dumps({"runs": 2, "lines": 4, "pause": 1, "every": 2})
    done = sx(
        node_cluster, "run", "-n", node_namespace, "--image", TEST_IMAGE, "--method", "chatter", "--args", args,
        "--wait", "--logs",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if " line " in line]
    assert lines == [f"[run {r}] run {r} line {i}" for r in (1, 2) for i in range(4)]
    result = "\n".join(line for line in done.stdout.splitlines() if not line.startswith("[run "))
    assert json.loads(result) == {"runs": 2}, "the result after the logs"


def test_errors_are_one_line_as_kubectl_gives_them(
    node_cluster: LocalCluster, node_namespace: str, tmp_path: Path
) -> None:
    missing = sx(node_cluster, "wait", "nope", "-n", node_namespace)
    assert (missing.returncode, missing.stderr) == (
        1,
        'Error from server (NotFound): scheduledexecutions.schedexec.io "nope" not found\n',
    )
    # a user who may create and get executions, but not patch them
    admin = yaml.safe_load(node_cluster.kubeconfig.read_text())
    token = client_token(node_cluster, node_namespace, audience=None)
    limited = {
        **admin,
        "users": [{"name": "client", "user": {"token": token}}],
        "contexts": [{"name": "client", "context": {"cluster": admin["clusters"][0]["name"], "user": "client"}}],
        "current-context": "client",
    }
    config = tmp_path / "client.kubeconfig"
    config.write_text(yaml.safe_dump(limited))
    name = created_name(
        sx(node_cluster, "run", "-n", node_namespace, "--image", TEST_IMAGE, "--method", "fail", "-o", "name",
           kubeconfig=config)
    )  # fmt: skip
    refused = sx(node_cluster, "cancel", name, "-n", node_namespace, kubeconfig=config)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f'Error from server (Forbidden): scheduledexecutions.schedexec.io "{name}" is forbidden: User '
        f'"system:serviceaccount:{node_namespace}:client" cannot patch resource "scheduledexecutions"'
    )
    assert refused.stderr.count("\n") == 1
    unreachable = {**admin, "clusters": [{**admin["clusters"][0], "cluster": {"server": "https://127.0.0.1:1"}}]}
    config.write_text(yaml.safe_dump(unreachable))
    started = time.monotonic()
    nowhere = sx(node_cluster, "describe", "x", kubeconfig=config)
    assert nowhere.returncode == 1 and nowhere.stderr.startswith("Unable to connect to the server https://127.0.0.1:1")
    assert nowhere.stderr.count("\n") == 1 and time.monotonic() - started < 30
