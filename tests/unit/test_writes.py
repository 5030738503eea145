"""The reconciler's record of its own writes: what a reconcile reads and what the watch path takes as news,
while only the watch writes the store (issue 26)."""

from __future__ import annotations

from typing import Any

from schedexec.store import CompactBodies
from schedexec.writes import OwnWrites, Seen


def version(rv: str, phase: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "a", "uid": "u", "resourceVersion": rv}, "status": {"phase": phase}}


def watched(*bodies: dict[str, Any]) -> CompactBodies:
    store = CompactBodies()
    for body in bodies:
        store["ns/a"] = body
    return store


def test_a_reconcile_reads_its_own_write_until_the_watch_shows_it() -> None:
    writes, store = OwnWrites(), watched(version("16", "Pending"))
    writes.recorded(version("17", "Running"))
    writes.recorded(version("18", "Succeeded"))
    assert writes.newest("ns/a", store)["status"]["phase"] == "Succeeded"  # type: ignore[index]
    assert writes.echo(version("17", "Running")) is Seen.OWN, "an earlier own write: not news"
    assert writes.newest("ns/a", watched(version("17", "Running")))["status"]["phase"] == "Succeeded"  # type: ignore[index]
    assert writes.echo(version("18", "Succeeded")) is Seen.OWN
    assert "ns/a" not in writes.bodies, "the store has that very version now"
    assert writes.echo(version("18", "Succeeded")) is Seen.NEW, "nothing more awaited"


def test_anothers_change_is_news_and_supersedes_the_record() -> None:
    writes = OwnWrites()
    writes.recorded(version("17", "Running"))
    assert writes.echo(version("19", "Cancelled")) is Seen.NEW
    assert writes.newest("ns/a", watched(version("19", "Cancelled")))["status"]["phase"] == "Cancelled"  # type: ignore[index]


def test_only_the_newest_writes_are_awaited_and_forgetting_drops_all() -> None:
    writes = OwnWrites()
    for rv in range(40):
        writes.recorded(version(str(rv), "Running"))
    assert writes.echo(version("0", "Running")) is Seen.NEW, "older than the 16 awaited"
    assert writes.echo(version("39", "Running")) is Seen.OWN
    writes.recorded(version("40", "Running"))
    writes.forget("ns/a")
    assert writes.newest("ns/a", CompactBodies()) is None
    assert writes.echo(version("40", "Running")) is Seen.NEW


def test_a_job_asked_to_be_deleted_is_deleting_until_the_watch_shows_it_gone() -> None:
    writes = OwnWrites()
    writes.deleting("ns", "a-r1")
    assert writes.is_deleting("ns/a-r1") and not writes.is_deleting("ns/a-r2")
    writes.job_deleted("ns/a-r1")
    assert not writes.is_deleting("ns/a-r1")
