"""The Job and pod streams: what reaches the controller, under whose credentials, with which selector.

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
        watches.handle_event(event, lambda kind, body: seen.append((kind, body)))
    assert seen == [(None, JOB), ("DELETED", JOB)]


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
    asyncio.run(watches.stream(kopf.OperatorSettings(), vault, watches.PODS, "ns", lambda kind, _: seen.append(kind)))
    assert asked == [(watches.PODS, "ns", vault)]
    assert seen == ["ADDED"]


@pytest.mark.parametrize(("namespaces", "count"), [([], 2), (["a", "b"], 4)])
def test_one_stream_per_kind_and_namespace(namespaces: list[str], count: int) -> None:
    coroutines = watches.streams(kopf.OperatorSettings(), watches.Vault(), namespaces, print, print)
    assert len(coroutines) == count
    for coroutine in coroutines:
        coroutine.close()


def test_jobs_and_pods_are_selected_on_the_api_server() -> None:
    settings = handlers.configure(kopf.OperatorSettings())
    selector = f"app.kubernetes.io/managed-by={runs.MANAGED_BY}"
    assert settings.watching.label_selectors.collect(watches.JOBS) == [selector]
    assert settings.watching.label_selectors.collect(watches.PODS) == [selector]
