"""The store's compact execution bodies: what goes in comes out, and no reader can change what is kept."""

from __future__ import annotations

from schedexec.store import CompactBodies


def test_a_kept_body_reads_back_whole_and_a_read_is_a_copy() -> None:
    bodies = CompactBodies()
    body = {"metadata": {"name": "a", "labels": {"x": "ü"}}, "status": {"history": [{"index": 1, "result": None}]}}
    bodies["ns/a"] = body
    assert bodies["ns/a"] == body and "ns/a" in bodies and list(bodies) == ["ns/a"] and len(bodies) == 1
    bodies["ns/a"]["status"]["history"].clear()
    assert bodies["ns/a"] == body
    assert bodies.get("ns/b") is None
    del bodies["ns/a"]
    assert "ns/a" not in bodies and len(bodies) == 0
