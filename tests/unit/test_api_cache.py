"""The REST API's execution cache: what a watch event does to what polls see."""

from __future__ import annotations

from typing import Any

from schedexec.api.cache import ExecutionCache
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
