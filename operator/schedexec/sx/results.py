"""An execution's result, read back exactly as the operator kept it.

A small result is in `status.result`. A large one is in a ConfigMap that `status.resultRef` names
(manifests.result_config_map): plain JSON under `result.json`, or gzip under `result.json.gz` in
binaryData (base64 on the wire). Read by hand that takes three commands and checks nothing; here the
ConfigMap is checked as the REST API checks it (`resultref.kept_text`: owned by the execution, inflated no
further than the recorded size, then size and sha256) before anything is printed, so a truncated, replaced
or corrupted ConfigMap is an error naming what differs, never a wrong result nor a gzip bomb in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from schedexec import models, resultref
from schedexec.sx.output import yaml_text

FORMATS = ("json", "yaml", "raw")


class ResultError(Exception):
    """The result cannot be read back as the operator kept it."""


def result_bytes(reference: Mapping[str, Any], config_map: Mapping[str, Any], owner_uid: str) -> bytes:
    """The result's JSON text from its ConfigMap (a document as the API server returns it), checked as the
    REST API checks it (`resultref.kept_text`: owned by the execution `owner_uid`, size, sha256)."""
    try:
        ref = models.ResultRef.model_validate(reference)
    except pydantic.ValidationError as exc:
        raise ResultError(f"status.resultRef is malformed: {_first_problem(exc)}") from None
    try:
        return resultref.kept_text(config_map, ref, owner_uid)
    except resultref.ResultMismatch as exc:
        raise ResultError(str(exc)) from None


def _first_problem(exc: pydantic.ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"


def read_result(status: Mapping[str, Any], read_config_map: Callable[[str], Mapping[str, Any]], owner_uid: str) -> Any:
    """The result of a succeeded execution's status: inline, or from the ConfigMap `read_config_map` returns,
    which must be owned by the execution whose uid is `owner_uid`."""
    reference = status.get("resultRef")
    if not reference:
        return status.get("result")
    if not isinstance(reference, Mapping):
        raise ResultError(f"status.resultRef is malformed: {type(reference).__name__}, not an object")
    raw = result_bytes(reference, read_config_map(str(reference.get("configMap"))), owner_uid)
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ResultError(f"configmap/{reference.get('configMap')}: the result is not JSON: {exc}") from exc


def render(result: Any, output: str) -> str:
    """The result as `-o` asks: json (indented), yaml, or raw (a string as it is, anything else compact JSON,
    as `jq -r`), always ending with a newline."""
    if output == "yaml":
        return yaml_text(result)
    if output == "raw":
        text = result if isinstance(result, str) else json.dumps(result, separators=(",", ":"), ensure_ascii=False)
        return text if text.endswith("\n") else text + "\n"
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"
