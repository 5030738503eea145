"""The REST API's execution cache: what a watch event does to what polls see."""

from __future__ import annotations

import json
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from schedexec.api import kubeclient
from schedexec.api.cache import ExecutionCache
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


class Answer:
    """A pykube (requests) response, enough of it for KubeClient."""

    def __init__(self, content: bytes, lines: Iterator[bytes] | None = None) -> None:
        self.content, self.status_code, self.text = content, 200, content.decode()
        self.lines = lines or iter(())

    def iter_lines(self) -> Iterator[bytes]:
        return self.lines

    def __enter__(self) -> Answer:
        return self

    def __exit__(self, *_: object) -> None:
        pass


class FakeHttp:
    """The API server's answers to KubeClient's list and watch of executions: `items` (JSON texts) in pages of
    `limit` with continue tokens, then one watch of `events` (lines), then a watch that never ends."""

    def __init__(self, items: list[str], events: list[bytes]) -> None:
        self.items, self.events, self.pages = items, events, 0
        self.watches = 0

    def get(self, **request: Any) -> Answer:
        params = request.get("params") or {}
        if params.get("watch"):
            self.watches += 1
            if self.watches > 1:
                threading.Event().wait()  # for good: the cache's thread is a daemon
            return Answer(b"", lines=iter(self.events))
        self.pages += 1
        start, limit = int(params.get("continue") or 0), int(params["limit"])
        more = str(start + limit) if start + limit < len(self.items) else ""
        page = ",".join(self.items[start : start + limit])
        return Answer(f'{{"metadata": {{"resourceVersion": "7", "continue": "{more}"}}, "items": [{page}]}}'.encode())

    def raise_for_status(self, response: Answer) -> None:
        assert response.status_code < 400


def started(http: FakeHttp) -> ExecutionCache:
    """The cache, on KubeClient over `http`, running in its own thread (as in the API), once it is ready and
    has taken the first watch."""
    cache = ExecutionCache(KubeClient(http))  # type: ignore[arg-type]
    cache.start()
    assert cache.ready.wait(30), "the cache never became ready"
    deadline = time.monotonic() + 30
    while http.watches < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return cache


def test_the_cache_lists_and_watches_executions_nested_as_deep_as_the_api_server_stores(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listed = [execution_text(f"sx{i}") for i in range(kubeclient.LIST_PAGE + 10)]
    listed.insert(7, execution_text("deep-listed", deep_args()))
    events = [
        f'{{"type": "ADDED", "object": {execution_text("deep-watched", deep_args())}}}'.encode(),
        b'{"type": "ADDED", "object": ' + b"[" * (DEEP * 3) + b"]" * (DEEP * 3) + b"}",  # no API server sends it
        f'{{"type": "MODIFIED", "object": {execution_text("sx0", phase="Succeeded")}}}'.encode(),
    ]
    http = FakeHttp(listed, events)
    cache = started(http)
    assert http.pages == 2, "listed in pages"
    assert len(cache) == len(listed) + 1
    for name in ("deep-listed", "deep-watched"):
        kept = cache.by_name("ns", name)
        assert kept is not None and "spec" not in kept, name
    seen = cache.by_name("ns", "sx0")
    assert seen is not None and seen["status"]["phase"] == "Succeeded", "the watch went on past the poison"
    assert cache.ready.is_set()
    assert "could not be decoded" in caplog.text


def test_forty_executions_with_args_of_1_2_mib_cost_the_cache_little_memory() -> None:
    """The API's memory limit is 256 MiB; whole bodies kept 48 MiB of args alone (more as Python objects)."""
    args = '{"blob": "' + "x" * (1200 * 1024) + '"}'
    http = FakeHttp([execution_text(f"big{i}", args) for i in range(40)], [])
    tracemalloc.start()
    try:
        cache = started(http)
        kept, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == 40
    assert kept < 4 * 1024 * 1024, f"{kept} bytes still held after the list"
