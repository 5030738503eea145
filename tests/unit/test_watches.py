"""The execution, Job and pod streams: what reaches the controller, under whose credentials, with which selector.

watches.py uses Kopf's internal watch stream; these tests break on import or on behaviour if a Kopf
release moves it. The streams against a real API server (lists, reconnects, 410 relists, an API server
restart) are exercised by every cluster and chaos test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import auth, watching

from schedexec import handlers, runs, watches

JOB = {"metadata": {"namespace": "ns", "name": "e-r1", "uid": "j1"}}


def test_objects_reach_the_handler_markers_and_bookmarks_do_not() -> None:
    seen: list[tuple[str | None, Mapping[str, Any]]] = []
    for event in [
        watching.Bookmark.LISTED,
        {"type": None, "object": JOB},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
        {"type": "DELETED", "object": JOB},
    ]:
        watches.handle_event(
            event, lambda kind, body: seen.append((kind, body)), lambda keys: seen.append(("LISTED", {})), set()
        )
    assert seen == [("LISTED", {}), (None, JOB), ("DELETED", JOB)]


def test_a_stream_requests_with_the_operators_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    vault = watches.Vault()
    asked: list[tuple[Any, str | None, Any]] = []

    async def infinite_watch(
        *, settings: kopf.OperatorSettings, resource: Any, namespace: str | None
    ) -> AsyncIterator[Any]:
        asked.append((resource, namespace, auth.vault_var.get()))
        yield watching.Bookmark.LISTED
        yield {"type": "ADDED", "object": JOB}

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)
    seen: list[str | None] = []
    listed: list[frozenset[str]] = []
    stream = watches.stream(
        kopf.OperatorSettings(),
        vault,
        watches.PODS,
        "ns",
        lambda kind, _: seen.append(kind),
        listed.append,
    )
    asyncio.run(stream)
    assert asked == [(watches.PODS, "ns", vault)]
    assert seen == ["ADDED"] and listed == [frozenset()]


def test_every_list_reports_the_keys_it_listed_and_watch_events_do_not_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first list, a watch event, a relist after 410 Gone without e-r1, and an empty relist: each list
    reports exactly its own items, so the controller can drop what vanished during a gap."""
    other = {"metadata": {"namespace": "ns", "name": "e-r2", "uid": "j2"}}

    async def infinite_watch(*, settings: Any, resource: Any, namespace: str | None) -> AsyncIterator[Any]:
        for event in [
            {"type": None, "object": JOB},
            watching.Bookmark.LISTED,
            {"type": "ADDED", "object": other},
            {"type": None, "object": other},
            watching.Bookmark.LISTED,
            watching.Bookmark.LISTED,
        ]:
            yield event

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)
    listed: list[frozenset[str]] = []
    asyncio.run(
        watches.stream(kopf.OperatorSettings(), watches.Vault(), watches.JOBS, "ns", lambda *_: None, listed.append)
    )
    assert listed == [frozenset({"ns/e-r1"}), frozenset({"ns/e-r2"}), frozenset()]


@pytest.mark.parametrize(("namespaces", "count"), [([], 3), (["a", "b"], 6)])
def test_one_stream_per_kind_and_namespace(namespaces: list[str], count: int) -> None:
    coroutines = watches.streams(
        kopf.OperatorSettings(), watches.Vault(), namespaces, print, print, print, print, print
    )
    assert len(coroutines) == count
    for coroutine in coroutines:
        coroutine.close()


def test_jobs_and_pods_are_selected_on_the_api_server() -> None:
    settings = handlers.configure(kopf.OperatorSettings())
    selector = f"app.kubernetes.io/managed-by={runs.MANAGED_BY}"
    assert settings.watching.label_selectors.collect(watches.JOBS) == [selector]
    assert settings.watching.label_selectors.collect(watches.PODS) == [selector]


def test_listed_is_told_once_every_stream_has_listed_and_never_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Six streams (executions, Jobs and pods of namespaces a and b); the pods of b list only after the Jobs
    of a have relisted (410 Gone): `listed` comes right after the last first list, and no relist calls it
    again."""
    gate = asyncio.Event()
    log: list[str] = []
    relists: list[tuple[str, str | None]] = []

    async def infinite_watch(*, settings: Any, resource: Any, namespace: str | None) -> AsyncIterator[Any]:
        where = f"{resource.plural}/{namespace}"
        if where == "pods/b":
            await gate.wait()
        log.append(where)
        yield watching.Bookmark.LISTED
        if where == "jobs/a":
            log.append("jobs/a relisted")
            yield watching.Bookmark.LISTED
            gate.set()
        yield {"type": "ADDED", "object": JOB}
        log.append(f"{where} relisted")
        yield watching.Bookmark.LISTED

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)

    async def scenario() -> None:
        ignore: watches.Handle = lambda kind, body: None  # noqa: E731
        listed = lambda: log.append("told")  # noqa: E731
        await asyncio.gather(
            *watches.streams(
                kopf.OperatorSettings(),
                watches.Vault(),
                ["a", "b"],
                ignore,
                ignore,
                ignore,
                lambda plural, namespace, keys: relists.append((plural, namespace)),
                listed,
            )
        )

    asyncio.run(scenario())
    assert relists.count(("jobs", "a")) == 3 and relists.count(("pods", "b")) == 2, relists
    assert log.count("told") == 1, log
    assert log.index("told") == log.index("pods/b") + 1, log


def test_an_event_the_controller_cannot_take_is_logged_and_the_stream_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = {"metadata": {"namespace": "ns", "name": "bad", "uid": "x"}}

    async def infinite_watch(*, settings: Any, resource: Any, namespace: str | None) -> AsyncIterator[Any]:
        for event in [{"type": None, "object": broken}, {"type": None, "object": JOB}, watching.Bookmark.LISTED]:
            yield event

    def handle(kind: str | None, body: Mapping[str, Any]) -> None:
        if body is broken:
            raise ValueError("'Dancing' is not a valid Phase")
        seen.append(body)

    monkeypatch.setattr(watching, "infinite_watch", infinite_watch)
    seen: list[Mapping[str, Any]] = []
    listed: list[frozenset[str]] = []
    asyncio.run(watches.stream(kopf.OperatorSettings(), watches.Vault(), watches.JOBS, "ns", handle, listed.append))
    assert seen == [JOB] and listed == [frozenset({"ns/bad", "ns/e-r1"})]
    assert "could not be handled: None ns/bad" in caplog.text
