"""The operator's API calls: URLs, bodies, credentials, and each answer turned into what the controller
handles (done, Conflict, Gone, a permanent refusal, or a transient error to retry).

These tests serve the API server's answers from a loopback aiohttp server; every cluster, chaos and node
test runs the same calls against a real API server.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kopf
import pytest
from aiohttp import web

from schedexec import kube, leader, manifests, models, reconciler
from schedexec.leader import LeaderElector, Leases
from tests.unit.builders import POD_DEFAULTS
from tests.unit.test_adoption import created, manifest_of
from tests.unit.test_adoption import execution as adoption_execution

Reply = tuple[int, Any]
Answers = dict[tuple[str, str], Reply | list[Reply]]
"""By (method, path): the answer, or the answers in turn."""


def status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message}


EXECUTION = models.ScheduledExecution.model_validate(
    {
        "metadata": {"name": "a", "namespace": "ns", "uid": "uid-a", "resourceVersion": "7", "generation": 1},
        "spec": {"component": {"image": "img"}, "method": "m"},
    }
)


def job(owner: str = "uid-a") -> dict[str, Any]:
    """Run 1's Job of execution ns/a as the operator makes it (named a-r1), owned by execution `owner`."""
    made = manifests.job_manifest(EXECUTION, 1, {}, POD_DEFAULTS, name="a-r1")
    made["metadata"]["ownerReferences"][0]["uid"] = owner
    return made


async def served(answers: Answers, seen: list[tuple[str, str, Any]]) -> AsyncIterator[kube.Cluster]:
    """A Cluster whose API server answers `answers` by (method, path) and records each request in `seen`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.text()
        seen.append((request.method, request.path_qs, json.loads(body) if body else None))
        answer = answers.get((request.method, request.path), (404, status(404, "not found")))
        code, reply = answer.pop(0) if isinstance(answer, list) else answer
        if isinstance(reply, str):
            return web.Response(status=code, text=reply)
        return web.json_response(reply, status=code)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api = kube.Api(lambda: kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", token="t0"))
    try:
        yield kube.Cluster(api)
    finally:
        await api.close()
        await runner.cleanup()


def run(answers: Answers, call: Callable[[kube.Cluster], Awaitable[Any]]) -> tuple[Any, list[tuple[str, str, Any]]]:
    seen: list[tuple[str, str, Any]] = []

    async def scenario() -> Any:
        async for cluster in served(answers, seen):
            return await call(cluster)

    return asyncio.run(scenario()), seen


def query(url: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)


JOBS = "/apis/batch/v1/namespaces/ns/jobs"
STATUS = f"/apis/{models.API_VERSION}/namespaces/ns/{models.PLURAL}/a/status"


def test_a_created_job_is_new_and_a_409_of_the_operators_own_job_is_the_same_run() -> None:
    new, seen = run({("POST", JOBS): (201, job())}, lambda c: c.create_job(job()))
    assert new is True
    assert seen == [("POST", JOBS, job())]
    adopted, seen = run(
        {("POST", JOBS): (409, status(409, "exists")), ("GET", f"{JOBS}/a-r1"): (200, created(job()))},
        lambda c: c.create_job(job()),
    )
    assert adopted is False
    assert [s[:2] for s in seen] == [("POST", JOBS), ("GET", f"{JOBS}/a-r1")]


def test_a_job_of_that_name_owned_by_another_is_refused_for_good() -> None:
    answers: Answers = {("POST", JOBS): (409, status(409, "exists")), ("GET", f"{JOBS}/a-r1"): (200, job("other"))}
    with pytest.raises(kube.JobNameTaken):
        run(answers, lambda c: c.create_job(job()))


def test_a_job_of_that_name_owned_by_this_execution_but_not_made_by_the_operator_is_refused_for_good() -> None:
    """Anyone who may create Jobs can give one this execution as its owner, under its next run's name: only the
    Job the operator made for that run (as the API server keeps it) is adopted (manifests.made_for)."""
    made = manifest_of(adoption_execution())
    path = f"/apis/batch/v1/namespaces/ns/jobs/{made['metadata']['name']}"
    own = created(made)
    adopted, _ = run(
        {("POST", JOBS): (409, status(409, "exists")), ("GET", path): (200, own)}, lambda c: c.create_job(made)
    )
    assert adopted is False
    planted = created(made)
    planted["spec"]["template"]["spec"]["containers"][0]["image"] = "evil/forger:1"
    answers: Answers = {("POST", JOBS): (409, status(409, "exists")), ("GET", path): (200, planted)}
    with pytest.raises(kube.JobNameTaken) as refused:
        run(answers, lambda c: c.create_job(made))
    assert str(refused.value) == (
        f"Job ns/{made['metadata']['name']} exists and was not made by schedexec for this run "
        "(spec.template.spec.containers[0].image differs): it is not adopted"
    )


@pytest.mark.parametrize("code", [400, 403, 422])
def test_a_job_the_api_server_refuses_ends_with_its_message(code: int) -> None:
    answers: Answers = {("POST", JOBS): (code, status(code, 'exceeded quota: "runs"'))}
    with pytest.raises(kube.JobRejected) as refused:
        run(answers, lambda c: c.create_job(job()))
    assert refused.value.status == code
    assert refused.value.message == 'exceeded quota: "runs"'


@pytest.mark.parametrize("code", [404, 429, 500, 503])
def test_other_failures_of_a_job_creation_are_transient(code: int) -> None:
    with pytest.raises(kube.TRANSIENT):
        run({("POST", JOBS): (code, status(code, "later"))}, lambda c: c.create_job(job()))


def test_a_status_write_sends_metadata_and_status_and_answers_the_new_object() -> None:
    written = {"metadata": {"name": "a", "resourceVersion": "8"}, "status": {"phase": "Running"}}
    answer, seen = run({("PUT", STATUS): (200, written)}, lambda c: c.write_status(EXECUTION, {"phase": "Running"}))
    assert answer == written
    ((method, url, sent),) = seen
    assert (method, url) == ("PUT", STATUS)
    assert sent["metadata"] == {"name": "a", "namespace": "ns", "resourceVersion": "7"}
    assert sent["status"] == {"phase": "Running"} and "spec" not in sent


@pytest.mark.parametrize(("code", "error"), [(409, kube.Conflict), (404, kube.Gone)])
def test_a_status_write_on_a_changed_or_deleted_execution(code: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        run({("PUT", STATUS): (code, status(code, "no"))}, lambda c: c.write_status(EXECUTION, {"phase": "Running"}))


def test_deleting_a_job_that_is_gone_or_replaced_is_done() -> None:
    for code in (200, 404, 409):
        _, seen = run(
            {("DELETE", f"{JOBS}/a-r1"): (code, status(code, ""))}, lambda c: c.delete_job("ns", "a-r1", "j1")
        )
        assert seen == [("DELETE", f"{JOBS}/a-r1", {"propagationPolicy": "Background", "preconditions": {"uid": "j1"}})]


def test_lists_send_their_selector_and_answer_the_items() -> None:
    pods = {"items": [{"metadata": {"name": "p"}}]}
    answer, seen = run({("GET", "/api/v1/namespaces/ns/pods"): (200, pods)}, lambda c: c.run_pods("ns", "j1"))
    assert answer == pods["items"]
    assert query(seen[0][1]) == {"labelSelector": ["batch.kubernetes.io/controller-uid=j1"]}


def test_a_log_is_text_and_a_gone_pod_has_none() -> None:
    url = "/api/v1/namespaces/ns/pods/p/log"
    text, seen = run({("GET", url): (200, "line 1\n{not json")}, lambda c: c.pod_log("ns", "p", "run", 100))
    assert text == "line 1\n{not json"
    assert query(seen[0][1]) == {"container": ["run"], "limitBytes": ["100"]}
    gone, _ = run({}, lambda c: c.pod_log("ns", "p", "run", 100))
    assert gone is None


def test_an_event_that_cannot_be_posted_never_fails_the_reconcile() -> None:
    events = "/api/v1/namespaces/ns/events"
    _, seen = run(
        {("POST", events): (500, status(500, "etcd"))}, lambda c: c.post_event(EXECUTION, "Warning", "R", "m")
    )
    assert seen[0][2]["involvedObject"]["uid"] == "uid-a"


def test_a_forbidden_log_read_says_so() -> None:
    url = "/api/v1/namespaces/ns/pods/p/log"
    with pytest.raises(kube.APIError) as refused:
        run({("GET", url): (403, status(403, "forbidden"))}, lambda c: c.pod_log("ns", "p", "run", 100))
    assert refused.value.status == 403


def logged_in(tokens: list[str], accepted: set[str]) -> tuple[Any, list[str | None]]:
    """A get through an Api whose login hands out `tokens` in turn, against a server that accepts `accepted`:
    (the answer or the error raised, the Authorization header of each request)."""
    headers: list[str | None] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        headers.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization", "").removeprefix("Bearer ") in accepted:
            return web.json_response({"metadata": {"name": "a"}})
        return web.json_response(status(401, "Unauthorized"), status=401)

    async def scenario() -> Any:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        given = iter(tokens)
        port = runner.addresses[0][1]
        api = kube.Api(lambda: kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", token=next(given)))
        try:
            return (await api.call("get", "/api/v1/namespaces/ns/configmaps/a")).body
        except kube.APIError as exc:
            return exc
        finally:
            await api.close()
            await runner.cleanup()

    return asyncio.run(scenario()), headers


def test_requests_carry_the_logins_token() -> None:
    answer, headers = logged_in(["t1"], {"t1"})
    assert answer == {"metadata": {"name": "a"}}
    assert headers == ["Bearer t1"]


def test_a_401_logs_in_again_once_and_repeats_the_request() -> None:
    answer, headers = logged_in(["old", "rotated"], {"rotated"})
    assert answer == {"metadata": {"name": "a"}}
    assert headers == ["Bearer old", "Bearer rotated"]


def test_a_second_401_is_the_callers_to_handle() -> None:
    answer, headers = logged_in(["old", "still-wrong"], {"other"})
    assert isinstance(answer, kube.APIError) and answer.status == 401
    assert answer.message == "Unauthorized" and kube.transient(answer)
    assert headers == ["Bearer old", "Bearer still-wrong"]


def test_the_operator_reaches_kubernetes_through_public_apis_only() -> None:
    """Issue 26: no module of the operator, the REST API or the runner imports a dependency's private module."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    private = re.compile(r"^\s*(from|import)\s+[\w.]*\._|\bkopf\._", re.MULTILINE)
    offenders = [
        str(path.relative_to(root))
        for folder in ("operator", "runner-image")
        for path in (root / folder).rglob("*.py")
        if private.search(path.read_text())
    ]
    assert offenders == []


# --- fencing (issue 25): a write checks the leader's lease as it is sent ------------------------------------


class MonotonicClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def leading(clock: MonotonicClock) -> LeaderElector:
    """An elector that renewed its lease just now by `clock` (its Leases are never asked here)."""
    elector = LeaderElector(None, "me", clock)  # type: ignore[arg-type]
    elector.leading.set()
    elector._renewed_at = clock.now
    return elector


async def bytes_received(send: Callable[[str], Awaitable[Any]]) -> tuple[Any, int]:
    """What `send(server)` answers or raises, and how many bytes a raw TCP server at `server` received."""
    received: list[int] = []
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(len(await reader.read()))
        writer.close()
        done.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        try:
            outcome: Any = await send(f"http://127.0.0.1:{port}")
        except Exception as exc:
            outcome = exc
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
    return outcome, sum(received)


def test_a_write_whose_lease_runs_out_between_the_check_and_the_send_is_not_sent() -> None:
    """The reconciler checks `may_act`, then the write waits (here: a token refresh taking the rest of the renew
    deadline); by the time its bytes would go out, the lease is no longer held: nothing reaches the API server,
    and the controller hears NotLeading."""
    clock = MonotonicClock()
    elector = leading(clock)

    async def send(server: str) -> Any:
        def slow_login() -> kopf.ConnectionInfo:
            clock.now += leader.RENEW_DEADLINE_SECONDS  # the login (or a connection) took that long
            return kopf.ConnectionInfo(server=server, token="t")

        api = kube.Api(slow_login)
        try:
            assert elector.may_act(), "the check before the write passes"
            return await kube.Cluster(api, fence=elector.fence).create_job(job())
        finally:
            await api.close()

    outcome, received = asyncio.run(bytes_received(send))
    assert isinstance(outcome, kube.NotLeading), outcome
    assert received == 0, "not one byte of the request went out"
    assert not kube.transient(outcome), "not retried as a network error: the controller requeues it"


@pytest.mark.parametrize(
    "write",
    [
        lambda c: c.create_job(job()),
        lambda c: c.delete_job("ns", "a-r1", "j1"),
        lambda c: c.write_status(EXECUTION, {"phase": "Running"}),
        lambda c: reconciler.keep_result(c.api, RESULT, c.fence),
        lambda c: c.post_event(EXECUTION, "Normal", "R", "m"),
        lambda c: c.delete_execution(EXECUTION),
    ],
)
def test_every_write_of_the_operator_is_fenced(write: Callable[[kube.Cluster], Awaitable[Any]]) -> None:
    clock = MonotonicClock()
    elector = leading(clock)
    clock.now += leader.RENEW_DEADLINE_SECONDS

    async def send(server: str) -> Any:
        api = kube.Api(lambda: kopf.ConnectionInfo(server=server, token="t"))
        try:
            return await write(kube.Cluster(api, fence=elector.fence))
        finally:
            await api.close()

    outcome, received = asyncio.run(bytes_received(send))
    assert isinstance(outcome, kube.NotLeading) and received == 0


def test_a_fenced_write_under_a_valid_lease_is_sent_with_a_bounded_timeout_and_reads_are_never_fenced() -> None:
    clock = MonotonicClock()
    elector = leading(clock)
    seen: list[tuple[str, str, Any]] = []
    answers: Answers = {("POST", JOBS): (201, job()), ("GET", f"{JOBS}/a-r1"): (200, job())}

    async def scenario() -> tuple[bool, dict[str, Any] | None]:
        async for cluster in served(answers, seen):
            fenced = kube.Cluster(cluster.api, fence=elector.fence)
            created = await fenced.create_job(job())
            assert fenced.api.fenced_timeout.total == kube.FENCED_TIMEOUT_SECONDS
            clock.now += leader.LEASE_SECONDS  # not leading any more: reads still go out
            return created, await fenced.get_job("ns", "a-r1")
        raise AssertionError("unreachable")

    created, read = asyncio.run(scenario())
    assert created is True and read == job()
    assert [(method, path) for method, path, _ in seen] == [("POST", f"{JOBS}?timeout=4s"), ("GET", f"{JOBS}/a-r1")]


def test_the_lease_calls_themselves_are_not_fenced() -> None:
    """A replica that may not act must still be able to renew or take the lease."""
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"
    seen: list[tuple[str, str, Any]] = []
    answers: Answers = {("GET", lease_path): (200, {"spec": {}}), ("PUT", lease_path): (200, {"spec": {}})}

    async def scenario() -> bool:
        async for cluster in served(answers, seen):
            elector = LeaderElector(Leases(cluster.api, "ns", "l"), "me", MonotonicClock())
            assert not elector.may_act()
            return await elector._try_acquire()
        raise AssertionError("unreachable")

    assert asyncio.run(scenario()) is True
    assert [s[:2] for s in seen] == [("GET", lease_path), ("PUT", lease_path)]


# --- a large result's ConfigMap (reconciler.keep_result) -------------------------------------------------

CONFIG_MAPS = "/api/v1/namespaces/ns/configmaps"
RESULT, _ = manifests.result_config_map(EXECUTION, '{"big": true}')
RESULT_NAME = RESULT["metadata"]["name"]


def test_a_result_config_map_is_created_under_its_name() -> None:
    kept, seen = run({("POST", CONFIG_MAPS): (201, RESULT)}, lambda c: reconciler.keep_result(c.api, RESULT))
    assert kept == RESULT_NAME == f"a-{manifests.execution_tag('uid-a')}-result"
    assert seen == [("POST", CONFIG_MAPS, RESULT)]


def test_a_config_map_already_under_the_results_name_is_left_alone_and_the_result_kept_under_a_drawn_name() -> None:
    """409: the operator's own copy (made before a crash or a conflicting status write) or a ConfigMap someone
    created under the name first (it derives from the execution's uid, which anyone who may read the execution
    sees). The operator may not read ConfigMaps, so it tells neither apart and trusts neither: nothing is read,
    reused or overwritten, and the result goes to a ConfigMap the API server names, which the status names."""
    drawn = manifests.unclaimed_name(RESULT)
    answers: Answers = {
        ("POST", CONFIG_MAPS): [
            (409, status(409, "exists")),
            (201, drawn | {"metadata": drawn["metadata"] | {"name": f"{RESULT_NAME}-x7k2p"}}),
        ],
    }
    kept, seen = run(answers, lambda c: reconciler.keep_result(c.api, RESULT))
    assert kept == f"{RESULT_NAME}-x7k2p"
    assert seen == [("POST", CONFIG_MAPS, RESULT), ("POST", CONFIG_MAPS, drawn)], "no read, no update, no delete"
    assert drawn["data"] == RESULT["data"]
    assert drawn["metadata"]["ownerReferences"] == RESULT["metadata"]["ownerReferences"]
