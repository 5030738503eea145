"""`kubectl sx` end to end against a scripted cluster: exit codes, errors as kubectl prints them, what goes to
stdout and what to stderr (schedexec.sx.main, .waiting, .cluster's error lines). The real API server is the
node tier's (tests/node/test_kubectl_sx.py)."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schedexec import manifests, models
from schedexec.sx import main as cli
from schedexec.sx import waiting
from schedexec.sx.cluster import ClusterError, NotFound, api_error_line, unreachable_line
from tests.unit.builders import execution

FORBIDDEN = json.dumps(
    {
        "kind": "Status",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'scheduledexecutions.schedexec.io "x" is forbidden: User "bob" cannot get resource '
        '"scheduledexecutions" in API group "schedexec.io" in the namespace "team-a"',
    }
)
NOT_FOUND = json.dumps(
    {"kind": "Status", "reason": "NotFound", "code": 404, "message": 'scheduledexecutions.schedexec.io "x" not found'}
)


GONE = None
"""In a Scripted cluster's documents: the execution is not there (deleted), that GET is NotFound."""


class Scripted:
    """A cluster whose execution goes through the given documents, one per GET (the last one stays)."""

    def __init__(self, *documents: dict[str, Any] | None, config_map: dict[str, Any] | None = None) -> None:
        self.documents, self.created, self.patched = list(documents), [], []
        self.config_map_body = config_map or {}

    def get(self, name: str) -> dict[str, Any]:
        document = (self.documents.pop(0) if len(self.documents) > 1 else self.documents[0]) if self.documents else GONE
        if document is GONE:
            raise NotFound(api_error_line(404, "Not Found", NOT_FOUND))
        return document

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        return {**body, "metadata": {"name": body["metadata"].get("generateName", "") + "abcde", "namespace": "ns"}}

    def cancel(self, name: str) -> dict[str, Any]:
        self.patched.append(name)
        return self.get(name)

    def config_map(self, name: str) -> dict[str, Any]:
        return self.config_map_body

    def events(self, execution: dict[str, Any]) -> list[dict[str, Any]]:
        return []


def doc(phase: str | None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x", "uid": "u"}, "spec": {"method": "m"}, "status": {"phase": phase, **status}}


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "POLL_SECONDS", 0.0)


def sx(cluster: Any, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err, connect=lambda *_: cluster)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("phase", "code", "line"),
    [
        ("Failed", 3, "error: scheduledexecution.schedexec.io/x Failed: ShopUnavailable: the shop answered 503\n"),
        ("TimedOut", 4, "error: scheduledexecution.schedexec.io/x TimedOut: Timeout: past 10s\n"),
        ("Cancelled", 5, "error: scheduledexecution.schedexec.io/x Cancelled: Cancelled: spec.cancel\n"),
    ],
)
def test_wait_exits_with_the_phases_code_and_the_reason_on_stderr(phase: str, code: int, line: str) -> None:
    reason, message = line.split(f"{phase}: ", 1)[1].rstrip("\n").split(": ", 1)
    ended = doc(phase, error={"reason": reason, "message": message})
    got, out, err = sx(Scripted(doc("Running"), doc("Waiting"), ended), "wait", "x")
    assert (got, out) == (code, "")
    assert err.splitlines() == ["sx/x: Running", "sx/x: 0 runs done, Waiting", line.rstrip("\n")]


def test_wait_exits_0_once_succeeded() -> None:
    code, out, err = sx(Scripted(doc(None), doc("Running"), doc("Succeeded")), "wait", "x")
    assert (code, out) == (0, "scheduledexecution.schedexec.io/x Succeeded\n")
    assert err.splitlines() == ["sx/x: Pending", "sx/x: Running"], "progress on stderr, one line per state"


def test_wait_on_an_execution_deleted_before_its_outcome_was_read_says_so() -> None:
    """ttlSecondsAfterFinished 0 (or a few seconds) can delete it between two polls: its outcome is lost, and
    the wait says so instead of a NotFound that reads as if the name were wrong."""
    code, out, err = sx(Scripted(doc("Running"), doc("Waiting"), GONE), "wait", "x", "--logs")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "sx/x: Running",
        "sx/x: 0 runs done, Waiting",
        "error: sx/x was deleted before its outcome was read (its ttlSecondsAfterFinished?)",
    ]


def test_run_wait_on_an_execution_deleted_before_its_first_poll_says_so() -> None:
    cluster = Scripted(GONE)
    code, out, err = sx(cluster, "run", "--image", "i", "--method", "poll", "--wait")
    assert (code, out, len(cluster.created)) == (1, "", 1)
    assert err.splitlines() == [
        "scheduledexecution.schedexec.io/poll-abcde created",
        "error: sx/poll-abcde was deleted before its outcome was read (its ttlSecondsAfterFinished?)",
    ]


def test_wait_on_an_execution_never_seen_is_not_found_as_kubectl_says_it() -> None:
    assert sx(Scripted(GONE), "wait", "x") == (
        1,
        "",
        'Error from server (NotFound): scheduledexecutions.schedexec.io "x" not found\n',
    )


def test_the_waits_own_timeout_has_its_own_code() -> None:
    code, _, err = sx(Scripted(doc("Waiting")), "wait", "x", "--timeout", "0s")
    assert code == 6
    assert err.endswith("error: timed out waiting for scheduledexecution.schedexec.io/x (still Waiting)\n")


@pytest.mark.parametrize(
    ("failure", "line"),
    [
        (
            api_error_line(403, "Forbidden", FORBIDDEN),
            'Error from server (Forbidden): scheduledexecutions.schedexec.io "x" is forbidden: User "bob" cannot get '
            'resource "scheduledexecutions" in API group "schedexec.io" in the namespace "team-a"\n',
        ),
        (
            api_error_line(404, "Not Found", NOT_FOUND),
            'Error from server (NotFound): scheduledexecutions.schedexec.io "x" not found\n',
        ),
        (
            unreachable_line("https://10.0.0.1:6443", ConnectionRefusedError(111, "Connection refused")),
            "Unable to connect to the server https://10.0.0.1:6443: [Errno 111] Connection refused\n",
        ),
        (api_error_line(500, "Internal Server Error", b"<html>\nboom</html>"), "Error from server (Internal Server "
         "Error): <html> boom</html>\n"),
    ],
)  # fmt: skip
def test_errors_are_one_line_as_kubectl_prints_them(failure: str, line: str) -> None:
    class Refusing(Scripted):
        def get(self, name: str) -> dict[str, Any]:
            raise ClusterError(failure)

    for command in (["wait", "x"], ["result", "x"], ["describe", "x"], ["logs", "x"], ["resubmit", "x"]):
        assert sx(Refusing(), *command) == (1, "", line)


def test_no_cluster_is_one_line() -> None:
    def nowhere(*_: Any) -> Any:
        raise ClusterError("error: no cluster to talk to: no kubeconfig")

    out, err = io.StringIO(), io.StringIO()
    assert cli.main(["describe", "x"], out, err, connect=nowhere) == 1
    assert err.getvalue() == "error: no cluster to talk to: no kubeconfig\n"


def test_result_reads_a_config_map_result_and_refuses_a_damaged_one() -> None:
    config_map, ref = manifests.result_config_map(execution(), json.dumps({"rows": list(range(5000))}))
    succeeded = doc("Succeeded", resultRef=ref.model_dump(mode="json", by_alias=True))
    succeeded["metadata"]["uid"] = execution().metadata.uid  # the ConfigMap's owner
    code, out, _ = sx(Scripted(succeeded, config_map=config_map), "result", "x")
    assert (code, json.loads(out)) == (0, {"rows": list(range(5000))})
    config_map["data"][manifests.RESULT_KEY] = config_map["data"][manifests.RESULT_KEY].replace("4999", "4998")
    code, out, err = sx(Scripted(succeeded, config_map=config_map), "result", "x")
    assert (code, out) == (1, "")
    assert err.startswith("error: configmap/") and "sha256" in err and err.count("\n") == 1


def test_result_of_an_unfinished_or_failed_execution_says_so() -> None:
    assert sx(Scripted(doc("Waiting")), "result", "x")[0::2] == (
        1,
        "error: scheduledexecution.schedexec.io/x has no result yet (phase Waiting): kubectl sx wait first\n",
    )
    assert sx(Scripted(doc("Failed", error={"reason": "R", "message": "m"})), "result", "x")[0] == 3


def test_run_wait_prints_the_creation_on_stderr_and_the_result_on_stdout() -> None:
    cluster = Scripted(doc("Running"), doc("Succeeded", result={"1": "Books"}))
    code, out, err = sx(cluster, "run", "--image", "i", "--method", "m", "--args", '{"a": 1}', "--wait")
    assert (code, json.loads(out)) == (0, {"1": "Books"})
    assert err.startswith("scheduledexecution.schedexec.io/m-abcde created\n")
    assert cluster.created[0]["spec"]["args"] == {"a": 1}


def test_run_without_wait_prints_what_o_asks() -> None:
    assert sx(Scripted(doc(None)), "run", "--image", "i", "--method", "m", "-o", "name") == (
        0,
        "scheduledexecution.schedexec.io/m-abcde\n",
        "",
    )


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["run", "--image", "i"], 2, "error: run needs --image and --method, or -f MANIFEST\n"),
        (["run", "-f", "x.yaml", "--image", "i"], 2, "error: -f and --image cannot be combined"),
        (["run", "--image", "i", "--method", "getMetaModel"], 1, "error: spec.module is required when method is"),
        (["run", "--image", "i", "--method", "m", "--args", "[]"], 1, "error: --args must be a JSON object"),
        (["run", "-f", "/nonexistent.yaml"], 1, "error: cannot read /nonexistent.yaml: No such file or directory\n"),
    ],
)
def test_bad_run_flags_create_nothing(argv: list[str], code: int, message: str) -> None:
    cluster = Scripted(doc(None))
    got, out, err = sx(cluster, *argv)
    assert (got, out) == (code, "") and err.startswith(message)
    assert cluster.created == []


def one_error_line(code: int, out: str, err: str) -> bool:
    return code == 1 and out == "" and err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n")


@pytest.mark.parametrize("argv", [["-f", "{path}"], ["--image", "i", "--method", "m", "--args", "@{path}"]])
@pytest.mark.parametrize("metadata", ["metadata:\n", "metadata: []\n"])
def test_a_manifest_or_args_file_that_is_not_utf8_is_one_error_line(
    tmp_path: Any, argv: list[str], metadata: str
) -> None:
    path = tmp_path / "m.yaml"
    data = f"kind: ScheduledExecution\n{metadata}spec:\n  method: \xff\n".encode("latin-1")
    path.write_bytes(data)
    cluster = Scripted(doc(None))
    code, out, err = sx(cluster, "run", *(arg.format(path=path) for arg in argv))
    assert one_error_line(code, out, err)
    assert err == f"error: {path} is not UTF-8 text (byte {data.index(0xFF)}: invalid start byte)\n"
    assert cluster.created == []


def test_a_manifest_with_empty_metadata_runs_under_a_generated_name(tmp_path: Any) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("kind: ScheduledExecution\napiVersion: schedexec.io/v1alpha1\nmetadata:\nspec:\n  method: poll\n"
                    "  component: {image: i}\n")  # fmt: skip
    cluster = Scripted(doc(None))
    assert sx(cluster, "run", "-f", str(path), "-o", "name") == (0, "scheduledexecution.schedexec.io/poll-abcde\n", "")
    assert cluster.created[0]["metadata"] == {"generateName": "poll-"}


def test_a_manifest_on_stdin_that_is_not_utf8_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"kind: \xfe\n"), encoding="utf-8"))
    expected = "error: stdin is not UTF-8 text (byte 6: invalid start byte)\n"
    assert sx(Scripted(doc(None)), "run", "-f", "-") == (1, "", expected)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
manifests_ = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.just(models.API_VERSION) | yaml_values,
        "kind": st.just(models.KIND) | yaml_values,
        "metadata": yaml_values
        | st.fixed_dictionaries({}, optional={"name": yaml_values, "generateName": yaml_values}),
        "spec": yaml_values | st.just({"component": {"image": "i"}, "method": "poll"}),
    },
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | manifests_.map(lambda m: yaml.safe_dump(m).encode()) | st.text().map(str.encode))
def test_any_file_given_to_run_f_is_an_execution_or_one_error_line(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.yaml"
        path.write_bytes(data)
        for argv in (["-f", str(path)], ["--image", "i", "--method", "m", "--args", f"@{path}"]):
            cluster = Scripted(doc(None))
            code, out, err = sx(cluster, "run", *argv, "-o", "name")
            assert (code, err) == (0, "") or one_error_line(code, out, err), (code, out, err)
            assert (code == 0) == (len(cluster.created) == 1)


def test_cancel_patches_and_says_so() -> None:
    cluster = Scripted(doc("Waiting"))
    assert sx(cluster, "cancel", "x") == (0, "scheduledexecution.schedexec.io/x cancelled\n", "")
    assert cluster.patched == ["x"]


def test_resubmit_with_new_args_creates_a_new_execution(tmp_path: Any) -> None:
    old = {**doc("Cancelled"), "spec": {"component": {"image": "i"}, "method": "m", "args": {"v": 1}, "cancel": True}}
    (tmp_path / "args.json").write_text('{"v": 2}')
    cluster = Scripted(old)
    code, out, _ = sx(cluster, "resubmit", "x", "--args", f"@{tmp_path / 'args.json'}", "-o", "name")
    assert (code, out) == (0, "scheduledexecution.schedexec.io/x-abcde\n")
    assert cluster.created[0]["spec"] == {"component": {"image": "i"}, "method": "m", "args": {"v": 2}}


class WithLogs(Scripted):
    """A run whose Job and pod are there (or gone), with a log."""

    def __init__(self, *documents: dict[str, Any], pods: list[dict[str, Any]], log: list[bytes]) -> None:
        super().__init__(*documents)
        self.pods, self.log_chunks = pods, log

    def jobs_of_run(self, index: int) -> list[dict[str, Any]]:
        return []

    def pods_of_job(self, job: str) -> list[dict[str, Any]]:
        return self.pods

    def job(self, name: str) -> dict[str, Any] | None:
        return {"status": {"conditions": [{"type": "Complete", "status": "True"}]}}

    def log(self, pod: str, *, follow: bool) -> Iterator[bytes]:
        yield from self.log_chunks


STARTED = {
    "metadata": {"name": "p", "creationTimestamp": "2026-12-07T08:00:00Z"},
    "status": {"containerStatuses": [{"name": manifests.CONTAINER, "state": {"running": {}}}]},
}


def test_logs_of_the_current_run_come_from_its_pod() -> None:
    running = doc("Running", currentRun={"index": 2, "job": "x-r2", "startedAt": "2026-12-07T08:00:00Z"})
    cluster = WithLogs(running, pods=[STARTED], log=[b"polling job-42\n", b"still running\n"])
    assert sx(cluster, "logs", "x") == (0, "polling job-42\nstill running\n", "")
    assert sx(cluster, "logs", "x", "-f") == (0, "polling job-42\nstill running\n", "")


def test_logs_of_a_run_whose_pod_is_gone_say_why() -> None:
    done = doc("Succeeded", runs=2, history=[{"index": 1, "outcome": "Scheduled"}, {"index": 2, "outcome": "Done"}])
    code, out, err = sx(WithLogs(done, pods=[], log=[]), "logs", "x", "--run", "1")
    assert (code, out) == (1, "")
    assert err.startswith("error: the log of run 1 of sx/x is gone: its Job is gone (a finished run's Job and pods")
    kept = doc("Succeeded", runs=1, history=[{"index": 1, "outcome": "Done", "logsUntil": "2026-12-07T08:15:00Z"}])
    err = sx(WithLogs(kept, pods=[], log=[]), "logs", "x", "--run", "1")[2]
    assert err.startswith("error: the log of run 1 of sx/x is gone: its Job is gone, kept until 2026-12-07T08:15:00Z")
    code, _, err = sx(WithLogs(done, pods=[], log=[]), "logs", "x", "--run", "3")
    assert (code, err) == (1, "error: run 3 of sx/x has not started (runs so far: 2)\n")


def test_run_wait_logs_prefixes_each_runs_lines() -> None:
    running = doc("Running", currentRun={"index": 1, "job": "x-r1", "startedAt": "2026-12-07T08:00:00Z"})
    cluster = WithLogs(running, doc("Succeeded", result=1), pods=[STARTED], log=[b"one\ntw", b"o\nthree"])
    code, out, _ = sx(cluster, "run", "--image", "i", "--method", "m", "--wait", "--logs")
    assert code == 0
    assert out == "[run 1] one\n[run 1] two\n[run 1] three\n1\n"
