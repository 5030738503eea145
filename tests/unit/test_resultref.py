"""The one reader of a result kept in a ConfigMap (schedexec.resultref), which the REST API and `kubectl sx
result` share: owner, bounded inflate, size and sha256, every refusal a ResultMismatch naming what differs."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedexec import manifests, models
from schedexec.resultref import ResultMismatch, kept_text
from tests.unit.builders import execution

OWNER = execution().metadata.uid


def kept(text: str) -> tuple[dict[str, Any], models.ResultRef]:
    """The ConfigMap and reference the operator writes for `text` (its own builder)."""
    return manifests.result_config_map(execution(), text)


def packed(raw: bytes, cut: int = 0) -> str:
    """`raw` as binaryData holds it, less the last `cut` bytes of its gzip stream."""
    stream = gzip.compress(raw)
    return base64.b64encode(stream[: len(stream) - cut]).decode("ascii")


@pytest.mark.parametrize("size", [10, manifests.PLAIN_RESULT_LIMIT + 10], ids=["plain", "gzip"])
def test_what_the_operator_kept_reads_back_as_it_was(size: int) -> None:
    text = json.dumps("ü" * (size // 2))
    config_map, ref = kept(text)
    assert kept_text(config_map, ref, OWNER) == text.encode("utf-8")


def test_a_gzip_bomb_stops_one_byte_past_the_recorded_size() -> None:
    """A replaced ConfigMap of about 1 MiB that would inflate to 1 GB is refused after ref.bytes + 1 bytes."""
    config_map, ref = kept(json.dumps("x" * (manifests.PLAIN_RESULT_LIMIT + 10)))
    bomb = gzip.compress(b" " * 1_000_000_000, compresslevel=9)
    assert len(bomb) < 1_100_000
    config_map["binaryData"][manifests.RESULT_GZ_KEY] = base64.b64encode(bomb).decode("ascii")
    tracemalloc.start()
    try:
        with pytest.raises(ResultMismatch, match=rf"holds more than {ref.bytes} bytes \(inflating stopped there\)"):
            kept_text(config_map, ref, OWNER)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000, f"inflating took {peak} bytes"


def test_a_changed_result_fails_its_sha256() -> None:
    config_map, ref = kept(json.dumps({"verdict": "benign"}))
    config_map["data"][manifests.RESULT_KEY] = json.dumps({"verdict": "evil!!"})
    with pytest.raises(
        ResultMismatch, match=rf"configmap/{ref.config_map} does not match its record: sha256 [0-9a-f]{{64}} differs"
    ):
        kept_text(config_map, ref, OWNER)


@pytest.mark.parametrize(
    "owners",
    [[{"uid": "uid-mallory"}], [], None, ["u1"], [{"name": "sx1"}]],
    ids=["foreign", "none", "null", "not-objects", "no-uid"],
)
def test_a_config_map_the_execution_does_not_own_is_refused(owners: Any) -> None:
    config_map, ref = kept(json.dumps({"verdict": "benign"}))
    config_map["metadata"]["ownerReferences"] = owners
    with pytest.raises(ResultMismatch, match=rf"configmap/{ref.config_map} is not owned by this execution"):
        kept_text(config_map, ref, OWNER)


@pytest.mark.parametrize("value", [123, ["a"], {"a": 1}, b"bytes"], ids=["int", "list", "dict", "bytes"])
@pytest.mark.parametrize("size", [10, manifests.PLAIN_RESULT_LIMIT + 10], ids=["plain", "gzip"])
def test_a_value_that_is_not_a_string_is_refused_by_type(size: int, value: Any) -> None:
    config_map, ref = kept(json.dumps("x" * size))
    field = "data" if ref.key == manifests.RESULT_KEY else "binaryData"
    config_map[field][ref.key] = value
    with pytest.raises(ResultMismatch, match=rf"its {field} key {ref.key} is {type(value).__name__}, not a string"):
        kept_text(config_map, ref, OWNER)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not base64!", r"not valid gzip \("),
        ("ünïcode", r"not valid gzip \("),
        (base64.b64encode(b"plain").decode(), r"not valid gzip \("),
        (packed(b"x" * 100, cut=4), r"not valid gzip \(the stream ends early\)"),
        ("", r"not valid gzip \(the stream ends early\)"),
    ],
    ids=["not-base64", "not-ascii", "not-gzip", "truncated", "empty"],
)
def test_binary_data_that_is_not_gzip_is_refused(value: str, problem: str) -> None:
    config_map, ref = kept(json.dumps("x" * (manifests.PLAIN_RESULT_LIMIT + 10)))
    config_map["binaryData"][ref.key] = value
    with pytest.raises(ResultMismatch, match=problem):
        kept_text(config_map, ref, OWNER)


def test_an_unknown_key_is_refused_before_anything_is_read() -> None:
    _, ref = kept("1")
    with pytest.raises(ResultMismatch, match=r"unknown key 'result.bin'"):
        kept_text({}, ref.model_copy(update={"key": "result.bin"}), OWNER)


@given(
    st.dictionaries(
        st.sampled_from(["metadata", "data", "binaryData", "immutable"]),
        st.none() | st.integers() | st.text() | st.dictionaries(st.text(), st.text() | st.integers()),
    ),
    st.sampled_from([manifests.RESULT_KEY, manifests.RESULT_GZ_KEY]),
)
def test_any_config_map_is_a_result_or_a_mismatch_never_a_crash(config_map: dict[str, Any], key: str) -> None:
    ref = models.ResultRef(config_map="cm", key=key, bytes=1, sha256="0" * 64)
    with contextlib.suppress(ResultMismatch):
        kept_text(config_map, ref, OWNER)
