"""`kubectl sx result`: a result read back as the operator kept it, checked (schedexec.sx.results)."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from schedexec import manifests
from schedexec.sx.results import ResultError, read_result, render, result_bytes
from tests.unit.builders import execution

OWNER = execution().metadata.uid
"""The uid of the execution `kept` keeps a result for (its ConfigMap's owner)."""

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def kept(result: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap and status the operator writes for `result` (its own builder)."""
    config_map, ref = manifests.result_config_map(execution(), json.dumps(result, separators=(",", ":")))
    return config_map, {"phase": "Succeeded", "resultRef": ref.model_dump(mode="json", by_alias=True)}


@given(json_values)
def test_a_plain_config_map_result_reads_back_equal(result: Any) -> None:
    config_map, status = kept(result)
    assert status["resultRef"]["key"] == manifests.RESULT_KEY
    assert read_result(status, lambda name: config_map, OWNER) == result


@settings(max_examples=5, deadline=None)
@given(st.integers(1_000_001, 1_100_000))
def test_a_gzip_result_over_the_plain_limit_reads_back_equal(size: int) -> None:
    result = "x" * size
    config_map, status = kept(result)
    assert status["resultRef"]["key"] == manifests.RESULT_GZ_KEY
    assert read_result(status, lambda name: config_map, OWNER) == result


def test_an_inline_result_needs_no_config_map() -> None:
    def unexpected(name: str) -> dict[str, Any]:
        raise AssertionError("no ConfigMap is read for an inline result")

    assert read_result({"phase": "Succeeded", "result": {"a": [1]}}, unexpected, OWNER) == {"a": [1]}


def test_a_replaced_result_fails_its_sha256() -> None:
    config_map, status = kept({"verdict": "benign"})
    config_map["data"][manifests.RESULT_KEY] = json.dumps({"verdict": "evil!!"}, separators=(",", ":"))
    with pytest.raises(ResultError, match=r"sha256 .* differs from status.resultRef's"):
        read_result(status, lambda name: config_map, OWNER)


def test_a_truncated_result_fails_its_size() -> None:
    config_map, status = kept("y" * 1_000_100)
    raw = gzip.decompress(base64.b64decode(config_map["binaryData"][manifests.RESULT_GZ_KEY]))
    config_map["binaryData"][manifests.RESULT_GZ_KEY] = base64.b64encode(gzip.compress(raw[:-10])).decode()
    with pytest.raises(ResultError, match=r"holds 1000092 bytes, status\.resultRef says 1000102"):
        result_bytes(status["resultRef"], config_map, OWNER)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda cm: cm.update(binaryData={manifests.RESULT_GZ_KEY: "not base64!"}), "not valid gzip"),
        (lambda cm: cm.update(binaryData={manifests.RESULT_GZ_KEY: base64.b64encode(b"plain").decode()}), "gzip"),
        (lambda cm: cm.update(binaryData={}), "has no binaryData key result.json.gz"),
    ],
)
def test_a_corrupt_gzip_result_is_an_error_not_a_crash(damage: Any, message: str) -> None:
    config_map, status = kept("z" * 1_000_100)
    damage(config_map)
    with pytest.raises(ResultError, match=message):
        read_result(status, lambda name: config_map, OWNER)


def test_an_unknown_key_is_refused() -> None:
    _, status = kept([1])
    status["resultRef"]["key"] = "result.bin"
    with pytest.raises(ResultError, match=r"unknown key 'result.bin'"):
        read_result(status, lambda name: {}, OWNER)


@given(json_values)
def test_every_format_gives_back_the_result(result: Any) -> None:
    assert json.loads(render(result, "json")) == result
    assert yaml.safe_load(render(result, "yaml")) == result
    raw = render(result, "raw")
    assert raw.endswith("\n")
    if not isinstance(result, str):
        assert json.loads(raw) == result


def test_raw_prints_a_string_as_it_is() -> None:
    assert render("line one\nline two", "raw") == "line one\nline two\n"
    assert render({"a": 1}, "raw") == '{"a":1}\n'


def test_a_config_map_another_execution_owns_is_refused() -> None:
    """A ConfigMap of the recorded name that someone else made is not this execution's result."""
    config_map, status = kept({"verdict": "benign"})
    config_map["metadata"]["ownerReferences"] = [{"uid": "uid-mallory"}]
    with pytest.raises(ResultError, match=r"is not owned by this execution"):
        read_result(status, lambda name: config_map, OWNER)


def test_a_gzip_bomb_is_refused_without_inflating_it_whole() -> None:
    config_map, status = kept("z" * 1_000_100)
    bomb = gzip.compress(b" " * 200_000_000, compresslevel=9)
    config_map["binaryData"][manifests.RESULT_GZ_KEY] = base64.b64encode(bomb).decode()
    with pytest.raises(ResultError, match=r"holds more than 1000102 bytes \(inflating stopped there\)"):
        read_result(status, lambda name: config_map, OWNER)


@pytest.mark.parametrize("value", [12345, None, ["x"]], ids=["int", "null", "list"])
def test_a_binary_data_value_that_is_not_a_string_is_an_error_not_a_crash(value: Any) -> None:
    config_map, status = kept("z" * 1_000_100)
    config_map["binaryData"][manifests.RESULT_GZ_KEY] = value
    with pytest.raises(ResultError, match=r"configmap/.* does not match its record"):
        read_result(status, lambda name: config_map, OWNER)


@pytest.mark.parametrize("reference", [{"configMap": "cm", "key": manifests.RESULT_KEY}, "cm"], ids=["partial", "str"])
def test_a_malformed_result_ref_is_an_error_not_a_crash(reference: Any) -> None:
    with pytest.raises(ResultError, match=r"status\.resultRef is malformed"):
        read_result({"phase": "Succeeded", "resultRef": reference}, lambda name: {}, OWNER)
