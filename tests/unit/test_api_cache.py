"""The REST API's execution cache: what a watch event does to what polls see, and the cache fed by the
operator's own list/watch (watches.stream) through KubeClient, on a scripted stand-in for kube.Api."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, cast

import pytest

from schedexec import kube, watches
from schedexec.api.cache import UNSYNCED_AFTER, ExecutionCache
from schedexec.api.documents import DIALECT, ELASTIC_IO, IDEMPOTENCY
from schedexec.api.kubeclient import KubeClient
from schedexec_runner import bounds
from tests.unit.api_fake import FakeKube


def body(version: str, phase: str = "Running", name: str = "sx1", uid: str = "u1") -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": version, "managedFields": [{"big": 1}]}
    return {"metadata": meta, "status": {"phase": phase}}


def test_events_update_both_indexes_and_a_created_object_never_replaces_what_the_watch_showed() -> None:
    cache = ExecutionCache(FakeKube())
    cache.apply("ADDED", body("5", "Pending"))
    cache.apply("MODIFIED", body("7", "Succeeded"))  # the watch, in order
    cache.remember(body("5", "Pending"))  # the create call's answer, arriving after its watch events
    seen = cache.by_uid("u1")
    assert seen is not None and seen["status"]["phase"] == "Succeeded"
    assert cache.by_name("ns", "sx1") == seen and len(cache) == 1
    assert "managedFields" not in seen["metadata"], "what the cache keeps is slimmed"


def test_a_deleted_execution_is_forgotten_but_a_new_one_of_the_same_name_is_kept() -> None:
    cache = ExecutionCache(FakeKube())
    cache.apply("ADDED", body("1"))
    cache.apply("ADDED", body("2", uid="u2"))  # recreated under the same name before the DELETED event
    cache.apply("DELETED", body("3"))
    assert cache.by_uid("u1") is None
    assert cache.by_name("ns", "sx1") == cache.by_uid("u2") is not None


def test_an_object_without_a_uid_is_ignored() -> None:
    cache = ExecutionCache(FakeKube())
    cache.apply("ADDED", {"metadata": {"name": "x", "namespace": "ns"}})
    assert len(cache) == 0


# --- poison executions (issue 24): created with kubectl, the cache reads them, keeps what it serves -----------

DEEP = bounds.API_SERVER_MAX_DEPTH
"""spec.args as deep as the API server stores them."""


def deep_args(levels: int = DEEP) -> str:
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def execution_text(name: str, args: str = "{}", phase: str = "Running") -> str:
    """An execution as the API server sends it, as JSON text (a deep one cannot be written by json.dumps)."""
    meta = {
        "name": name,
        "namespace": "ns",
        "uid": f"uid-{name}",
        "resourceVersion": "1",
        "labels": {DIALECT: ELASTIC_IO, "team": "x" * 60},
        "annotations": {IDEMPOTENCY: "a:b", "kubectl.kubernetes.io/last-applied-configuration": "x" * 10_000},
        "managedFields": [{"manager": "kubectl"}],
    }
    status = {"phase": phase, "runs": 1, "history": [{"run": 1}] * 50}
    return (
        f'{{"apiVersion": "schedexec.io/v1alpha1", "kind": "ScheduledExecution", "metadata": {json.dumps(meta)}, '
        f'"spec": {{"method": "m", "args": {args}}}, "status": {json.dumps(status)}}}'
    )


def test_the_cache_keeps_only_what_the_api_serves() -> None:
    cache = ExecutionCache(FakeKube())
    cache.apply("ADDED", bounds.loads(execution_text("sx1", args='{"blob": "' + "x" * 300_000 + '"}')))
    assert cache.by_uid("uid-sx1") == {
        "metadata": {
            "uid": "uid-sx1",
            "name": "sx1",
            "namespace": "ns",
            "resourceVersion": "1",
            "labels": {DIALECT: ELASTIC_IO},
            "annotations": {IDEMPOTENCY: "a:b"},
        },
        "status": {"phase": "Running", "runs": 1},
    }


def test_an_execution_with_args_as_deep_as_the_api_server_stores_is_kept_without_them() -> None:
    cache = ExecutionCache(FakeKube())
    cache.apply("ADDED", bounds.loads(execution_text("deep", deep_args())))
    kept = cache.by_name("ns", "deep")
    assert kept is not None and "spec" not in kept and kept["status"]["phase"] == "Running"
    json.dumps(kept)  # what a poll answers is built from it


def test_an_execution_whose_status_cannot_be_answered_is_dropped_and_named_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = ExecutionCache(FakeKube())
    cache.apply("ADDED", body("1"))
    poisoned = body("2")
    poisoned["status"]["result"] = bounds.loads(deep_args(300))
    poisoned["status"]["error"] = {"message": "secret-\ud800"}
    cache.apply("MODIFIED", poisoned)
    assert cache.by_uid("u1") is None and cache.by_name("ns", "sx1") is None
    assert "ns/sx1" in caplog.text and "secret" not in caplog.text


class Content:
    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    async def iter_any(self) -> AsyncIterator[bytes]:
        for line in self.lines:
            yield line + b"\n"


class Watch:
    """An aiohttp response of a watch, enough of it for watches.watch_once."""

    def __init__(self, lines: list[bytes]) -> None:
        self.content = Content(lines)

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


Script = list[Any]
"""What the API server answers, in order: a list (the JSON texts of its items) or a watch (its lines), or an
exception to raise."""


class FakeApi:
    """kube.Api as the API server answers the list and watch of executions: each of `lists` served in pages
    of the `limit` asked, with continue tokens; then `watches` in order. Once a script is over, the request
    never ends (a watch bringing nothing) and `waiting` is set."""

    def __init__(self, lists: Script, watches_: Script) -> None:
        self.lists, self.watches = lists, watches_
        self.pages, self.waiting = 0, asyncio.Event()
        self.listing: list[str] = []
        self.before_list: list[Callable[[], None]] = []
        """Called before each list is asked for."""

    async def call(self, method: str, url: str, params: Mapping[str, str] | None = None, **_: Any) -> kube.Answer:
        params = params or {}
        start, limit = int(params.get("continue") or 0), int(params["limit"])
        if not start:
            for told in self.before_list:
                told()
            self.listing = await self._next(self.lists)
        self.pages += 1
        more = str(start + limit) if start + limit < len(self.listing) else ""
        page = ",".join(self.listing[start : start + limit])
        text = f'{{"metadata": {{"resourceVersion": "7", "continue": "{more}"}}, "items": [{page}]}}'
        return kube.Answer(200, bounds.loads(text))

    async def open(self, method: str, url: str, **_: Any) -> Watch:
        return Watch(await self._next(self.watches))

    async def _next(self, script: Script) -> Any:
        if not script:
            self.waiting.set()
            await asyncio.Event().wait()
        answer = script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def failure(status: int = 500) -> kube.APIError:
    return kube.APIError({"message": f"HTTP {status}"}, status=status, headers={})


def following(api: FakeApi) -> ExecutionCache:
    """The cache as the API runs it, on KubeClient over `api`, quick to back off."""
    client = KubeClient(cast(kube.Api, api), watches.Backoff(first=0.001, longest=0.001))
    return ExecutionCache(client)


async def followed(api: FakeApi, cache: ExecutionCache) -> None:
    """Run the cache's stream until `api` has answered everything scripted."""
    task = asyncio.create_task(cache.follow())
    try:
        await asyncio.wait_for(api.waiting.wait(), 30)
    finally:
        task.cancel()
        await asyncio.wait([task])


def watched(kind: str, text: str) -> bytes:
    return f'{{"type": "{kind}", "object": {text}}}'.encode()


def test_the_cache_lists_and_watches_executions_nested_as_deep_as_the_api_server_stores(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listed = [execution_text(f"sx{i}") for i in range(watches.EXECUTIONS.page + 10)]
    listed.insert(7, execution_text("deep-listed", deep_args()))
    events = [
        watched("ADDED", execution_text("deep-watched", deep_args())),
        b'{"type": "ADDED", "object": ' + b"[" * (DEEP * 3) + b"]" * (DEEP * 3) + b"}",  # no API server sends it
        watched("MODIFIED", execution_text("sx0", phase="Succeeded")),
    ]
    api = FakeApi([listed], [events])
    cache = following(api)
    asyncio.run(followed(api, cache))
    assert api.pages == 2, "listed in pages"
    assert len(cache) == len(listed) + 1
    for name in ("deep-listed", "deep-watched"):
        kept = cache.by_name("ns", name)
        assert kept is not None and "spec" not in kept, name
    seen = cache.by_name("ns", "sx0")
    assert seen is not None and seen["status"]["phase"] == "Succeeded", "the watch went on past the poison"
    assert cache.ready.is_set()
    assert "could not be decoded" in caplog.text


def test_a_relist_drops_an_execution_deleted_while_the_watch_was_away() -> None:
    """No DELETED event comes for it: the list that follows a 410 Gone is the only news (an informer's
    Replace). One recreated under its name while away is the new one."""
    gone = watched("ERROR", '{"code": 410, "message": "too old resource version"}')
    renewed = execution_text("sx3").replace('"uid-sx3"', '"uid-sx3-again"')
    api = FakeApi(
        [[execution_text(f"sx{i}") for i in range(4)], [execution_text("sx1"), renewed]],
        [[watched("MODIFIED", execution_text("sx2", phase="Succeeded")), gone]],
    )
    cache = following(api)
    asyncio.run(followed(api, cache))
    assert cache.by_name("ns", "sx1") is not None and cache.by_uid("uid-sx1") is not None
    assert cache.by_name("ns", "sx0") is None and cache.by_uid("uid-sx0") is None
    assert cache.by_name("ns", "sx2") is None and cache.by_uid("uid-sx2") is None
    assert cache.by_uid("uid-sx3") is None and cache.by_name("ns", "sx3") == cache.by_uid("uid-sx3-again")
    assert len(cache) == 2


def test_the_cache_is_ready_once_listed_unready_while_its_stream_keeps_failing_and_ready_again_once_listed() -> None:
    """/readyz answers from `ready`: the chart's probe takes an API whose cache cannot be trusted out of service."""
    failures = [failure() for _ in range(UNSYNCED_AFTER - 1)]
    api = FakeApi([[execution_text("sx0")], *failures, [execution_text("sx0")]], [failure()])
    cache = following(api)
    readiness: list[bool] = []
    api.before_list.append(lambda: readiness.append(cache.ready.is_set()))
    asyncio.run(followed(api, cache))
    # the first list; after the watch failed and after each list that failed, until the last failure in a row
    assert readiness == [False] + [True] * (UNSYNCED_AFTER - 1) + [False]
    assert cache.ready.is_set() and cache.by_name("ns", "sx0") is not None


def test_a_cache_that_may_not_list_executions_stays_unready_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    cache = following(FakeApi([failure(403)], []))
    asyncio.run(asyncio.wait_for(cache.follow(), 30))
    assert not cache.ready.is_set()
    assert "may not list or watch scheduledexecutions" in caplog.text


def test_forty_executions_with_args_of_1_2_mib_cost_the_cache_little_memory() -> None:
    """The API's memory limit is 256 MiB; whole bodies kept 48 MiB of args alone (more as Python objects)."""
    args = '{"blob": "' + "x" * (1200 * 1024) + '"}'
    api = FakeApi([[execution_text(f"big{i}", args) for i in range(40)]], [])
    cache = following(api)
    tracemalloc.start()
    try:
        asyncio.run(followed(api, cache))
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == 40
    assert kept < 4 * 1024 * 1024, f"{kept} bytes still held after the list"
