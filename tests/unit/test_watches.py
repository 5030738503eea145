"""The list/watch streams: what reaches the controller, what a list reports, and what never ends a stream.

The API server's answers come from a scripted stand-in for kube.Api (its `call` and `open`); the streams
against a real API server (lists, reconnects, 410 relists, an API server restart) are exercised by every
cluster and chaos test, and the 1,000-deep execution by tests/cluster/test_poison.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import pytest

from schedexec import kube, manifests, watches
from schedexec_runner import bounds

JOB = {"metadata": {"namespace": "ns", "name": "e-r1", "uid": "j1", "resourceVersion": "5"}}
OTHER = {"metadata": {"namespace": "ns", "name": "e-r2", "uid": "j2", "resourceVersion": "6"}}


class Over(BaseException):
    """The script is over: ends the (otherwise endless) stream under test."""


class Failure(kube.APIError):
    def __init__(self, status: int) -> None:
        super().__init__({"message": f"HTTP {status}"}, status=status, headers={})


def page(items: list[Any], version: str = "10", more: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": version}
    if more:
        meta["continue"] = more
    return {"items": items, "metadata": meta}


def event(kind: str, body: Any) -> bytes:
    return json.dumps({"type": kind, "object": body}).encode()


class Content:
    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    async def iter_any(self) -> AsyncIterator[bytes]:
        for line in self.lines:  # split across chunks as a network would
            yield line[: len(line) // 2]
            yield line[len(line) // 2 :] + b"\n"


class Response:
    def __init__(self, lines: list[bytes]) -> None:
        self.content = Content(lines)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *_: Any) -> None:
        return None


class ScriptedApi:
    """Answers list calls and watch requests in the order scripted; an exception in the script is raised."""

    def __init__(self, lists: list[Any], watches_: list[Any]) -> None:
        self.lists, self.watches = lists, watches_
        self.asked: list[tuple[str, dict[str, str]]] = []

    async def call(self, method: str, url: str, params: Mapping[str, str] | None = None, **_: Any) -> kube.Answer:
        self.asked.append((url, dict(params or {})))
        await asyncio.sleep(0)  # as a request would, let the other streams go on
        return kube.Answer(200, self._next(self.lists))

    async def open(self, method: str, url: str, params: Mapping[str, str] | None = None, **_: Any) -> Response:
        self.asked.append((url, dict(params or {})))
        await asyncio.sleep(0)
        return Response(self._next(self.watches))

    def _next(self, script: list[Any]) -> Any:
        if not script:
            raise Over
        answer = script.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def run(api: ScriptedApi, handle: watches.Handle, listed: watches.Listed, resource: watches.Resource) -> None:
    backoff = watches.Backoff(first=0.001, longest=0.001)
    with pytest.raises(Over):
        asyncio.run(watches.stream(cast(kube.Api, api), resource, "ns", handle, listed, backoff))


def test_listed_and_watched_objects_reach_the_handler_and_bookmarks_move_the_version() -> None:
    api = ScriptedApi(
        [page([JOB], more="next"), page([OTHER], version="11")],
        [
            [event("ADDED", OTHER), event("BOOKMARK", {"metadata": {"resourceVersion": "20"}})],
            [event("DELETED", JOB)],
        ],
    )
    seen: list[tuple[str | None, str]] = []
    listed: list[frozenset[str]] = []
    run(api, lambda kind, body: seen.append((kind, body["metadata"]["name"])), listed.append, watches.JOBS)
    assert seen == [(None, "e-r1"), (None, "e-r2"), ("ADDED", "e-r2"), ("DELETED", "e-r1")]
    assert listed == [frozenset({"ns/e-r1", "ns/e-r2"})]
    params = [asked for _, asked in api.asked]
    assert params[1]["continue"] == "next"
    assert params[2]["resourceVersion"] == "11" and params[3]["resourceVersion"] == "20"
    selector = f"app.kubernetes.io/managed-by={manifests.MANAGED_BY}"
    assert all(asked["labelSelector"] == selector for asked in params)


def test_a_410_gone_lists_again_and_each_list_reports_exactly_its_keys() -> None:
    gone = event("ERROR", {"code": 410, "message": "too old resource version"})
    api = ScriptedApi([page([JOB]), page([OTHER]), page([])], [[gone], [gone]])
    listed: list[frozenset[str]] = []
    run(api, lambda *_: None, listed.append, watches.JOBS)
    assert listed == [frozenset({"ns/e-r1"}), frozenset({"ns/e-r2"}), frozenset()]


def test_a_list_that_fails_midway_reports_nothing_and_the_next_complete_list_does() -> None:
    """Issue 24: a relist after an aborted list reported the aborted list's keys, and the controller took
    everything else for deleted."""
    api = ScriptedApi([page([JOB], more="p2"), Failure(500), page([JOB, OTHER])], [])
    listed: list[frozenset[str]] = []
    run(api, lambda *_: None, listed.append, watches.JOBS)
    assert listed == [frozenset({"ns/e-r1", "ns/e-r2"})]


def test_a_minute_of_api_server_errors_never_ends_a_stream() -> None:
    """Issue 24: 5xx for about a minute during a list escaped Kopf's watch loop and stopped the operator."""
    errors: list[Any] = [Failure(503), Failure(500), Failure(429), TimeoutError(), ConnectionResetError()] * 20
    api = ScriptedApi(
        [*errors, page([JOB]), page([JOB])], [[event("ADDED", OTHER)], Failure(502), [event("MODIFIED", OTHER)]]
    )
    seen: list[str | None] = []
    listed: list[frozenset[str]] = []
    run(api, lambda kind, _: seen.append(kind), listed.append, watches.JOBS)
    assert listed == [frozenset({"ns/e-r1"})] * 2
    assert seen == [None, "ADDED", None, "MODIFIED"]


def test_a_403_ends_the_stream_so_a_missing_permission_is_seen() -> None:
    api = ScriptedApi([Failure(403)], [])
    with pytest.raises(watches.Fatal, match="may not list or watch jobs in ns"):
        asyncio.run(watches.stream(cast(kube.Api, api), watches.JOBS, "ns", lambda *_: None, lambda _: None))


def deep(levels: int) -> str:
    """JSON nested `levels` deep, written without recursion."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def test_an_execution_nested_a_thousand_deep_is_decoded_and_handed_on_listed_or_watched() -> None:
    """Issue 24: such an object made the watch raise RecursionError, and the operator crash-looped for every
    tenant. The API server accepts nesting up to 10,000 levels; the stream reads all of it."""
    body = '{"metadata": {"namespace": "ns", "name": "deep", "resourceVersion": "7"}, "spec": {"args": %s}}'
    line = '{"type": "MODIFIED", "object": %s}' % (body % deep(9_000))
    api = ScriptedApi([bounds.loads(f'{{"items": [{body % deep(1_000)}], "metadata": {{}}}}')], [[line.encode()]])
    api.watches[0].append(event("ADDED", JOB))
    seen: list[tuple[str | None, str]] = []
    run(api, lambda kind, b: seen.append((kind, b["metadata"]["name"])), lambda _: None, watches.EXECUTIONS)
    assert seen == [(None, "deep"), ("MODIFIED", "deep"), ("ADDED", "e-r1")]


def test_a_line_that_is_not_json_is_skipped_and_the_stream_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    api = ScriptedApi([page([])], [[b'{"type": "ADDED", "object": {"metadata"', event("ADDED", JOB)]])
    seen: list[str] = []
    run(api, lambda kind, body: seen.append(body["metadata"]["name"]), lambda _: None, watches.JOBS)
    assert seen == ["e-r1"]
    assert "could not be decoded (JSONDecodeError)" in caplog.text


def test_an_event_the_controller_cannot_take_is_logged_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"metadata": {"namespace": "ns", "name": "bad", "uid": "x"}, "spec": {"secret": "hunter2"}}

    def handle(kind: str | None, body: Mapping[str, Any]) -> None:
        if body["metadata"]["name"] == "bad":
            raise ValueError("'Dancing' is not a valid Phase")
        seen.append(body["metadata"]["name"])

    seen: list[str] = []
    listed: list[frozenset[str]] = []
    with caplog.at_level(logging.ERROR):
        run(ScriptedApi([page([broken, JOB])], []), handle, listed.append, watches.JOBS)
    assert seen == ["e-r1"] and listed == [frozenset({"ns/bad", "ns/e-r1"})]
    assert "could not be handled: None ns/bad" in caplog.text
    assert "hunter2" not in caplog.text


@pytest.mark.parametrize(("namespaces", "count"), [([], 3), (["a", "b"], 6)])
def test_one_stream_per_kind_and_namespace(namespaces: list[str], count: int) -> None:
    api = cast(kube.Api, ScriptedApi([], []))
    coroutines = watches.streams(api, namespaces, print, print, print, print, print)
    assert len(coroutines) == count
    for coroutine in coroutines:
        coroutine.close()


def test_urls_cluster_wide_and_in_a_namespace() -> None:
    assert watches.EXECUTIONS.url(None) == "/apis/schedexec.io/v1alpha1/scheduledexecutions"
    assert watches.PODS.url("ns") == "/api/v1/namespaces/ns/pods"
    assert watches.JOBS.url(None) == "/apis/batch/v1/jobs"


def test_listed_is_told_once_every_stream_has_listed_and_never_again() -> None:
    """Six streams (executions, Jobs and pods of namespaces a and b), each listing, then relisting after
    410 Gone: `listed` comes once, right after the sixth first list; every list reaches `relisted`."""
    log: list[str] = []
    relists: list[tuple[str, str | None]] = []
    gone = event("ERROR", {"code": 410})
    api = ScriptedApi([page([])] * 12, [[gone]] * 6)

    async def scenario() -> None:
        ignore: watches.Handle = lambda kind, body: None  # noqa: E731

        def relisted(plural: str, namespace: str | None, keys: frozenset[str]) -> None:
            relists.append((plural, namespace))
            log.append(f"{plural}/{namespace}")

        coroutines = watches.streams(
            cast(kube.Api, api), ["a", "b"], ignore, ignore, ignore, relisted, lambda: log.append("told")
        )
        await asyncio.gather(*coroutines)

    with pytest.raises(Over):
        asyncio.run(scenario())
    assert log.count("told") == 1, log
    assert log.index("told") == 6, log
    assert len(relists) == 12


def test_executions_are_listed_in_small_pages_so_one_page_of_large_objects_fits_in_memory() -> None:
    """An execution may be 1.5 MiB: 500 of them in one page would be 750 MiB read whole (found in review)."""
    api = ScriptedApi([page([])], [])
    run(api, lambda *_: None, lambda _: None, watches.EXECUTIONS)
    assert api.asked[0][1]["limit"] == "50" and watches.JOBS.page == 500


def test_a_watch_that_ends_at_once_with_nothing_is_retried_after_a_backoff_not_in_a_tight_loop() -> None:
    api = ScriptedApi([page([])], [[], [], [event("ADDED", JOB)], []])
    backoff = watches.Backoff(first=0.001, longest=0.001)
    seen: list[str | None] = []
    with pytest.raises(Over):
        asyncio.run(
            watches.stream(
                cast(kube.Api, api), watches.JOBS, "ns", lambda k, _: seen.append(k), lambda _: None, backoff
            )
        )
    assert seen == ["ADDED"]
    assert backoff.failures == 1, "two empty watches backed off, the one with an event reset it, one more"


def test_failed_is_told_how_many_times_in_a_row_the_stream_backed_off() -> None:
    """The REST API's cache stops calling itself synced after a few (api/cache.py); a completed list or watch
    starts the count again, and a watch closed at once with nothing counts as one."""
    api = ScriptedApi([Failure(500), Failure(503), page([JOB]), page([JOB])], [Failure(502), []])
    told: list[int] = []
    backoff = watches.Backoff(first=0.001, longest=0.001)
    with pytest.raises(Over):
        asyncio.run(
            watches.stream(
                cast(kube.Api, api), watches.JOBS, "ns", lambda *_: None, lambda _: None, backoff, told.append
            )
        )
    assert told == [1, 2, 1, 1]
