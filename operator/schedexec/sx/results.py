"""An execution's result, read back exactly as the operator kept it.

A small result is in `status.result`. A large one is in a ConfigMap that `status.resultRef` names
(manifests.result_config_map): plain JSON under `result.json`, or gzip under `result.json.gz` in
binaryData (base64 on the wire). Read by hand that takes three commands and checks nothing; here the
bytes are decompressed and checked against the reference's size and sha256 before anything is printed,
so a truncated, replaced or corrupted ConfigMap is an error naming what differs, never a wrong result.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from schedexec import manifests
from schedexec.sx.output import yaml_text

FORMATS = ("json", "yaml", "raw")


class ResultError(Exception):
    """The result cannot be read back as the operator kept it."""


def result_bytes(reference: Mapping[str, Any], config_map: Mapping[str, Any]) -> bytes:
    """The result's JSON text from its ConfigMap (a document as the API server returns it), checked."""
    name, key = reference.get("configMap"), reference.get("key")
    if key == manifests.RESULT_KEY:
        text = (config_map.get("data") or {}).get(key)
        if text is None:
            raise ResultError(f"configmap/{name} has no data key {key}")
        raw = str(text).encode("utf-8")
    elif key == manifests.RESULT_GZ_KEY:
        packed = (config_map.get("binaryData") or {}).get(key)
        if packed is None:
            raise ResultError(f"configmap/{name} has no binaryData key {key}")
        try:
            raw = gzip.decompress(base64.b64decode(packed, validate=True))
        except (binascii.Error, OSError, EOFError, zlib.error) as exc:
            raise ResultError(f"configmap/{name} key {key} is not valid gzip: {exc}") from exc
    else:
        raise ResultError(f"status.resultRef names an unknown key {key!r} (expected result.json or result.json.gz)")
    expected_size, expected_digest = reference.get("bytes"), reference.get("sha256")
    if len(raw) != expected_size:
        raise ResultError(
            f"configmap/{name} holds {len(raw)} bytes, status.resultRef says {expected_size}: the result is damaged"
        )
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_digest:
        raise ResultError(
            f"configmap/{name}: sha256 {digest} differs from status.resultRef's {expected_digest}: "
            "the result is damaged or was replaced"
        )
    return raw


def read_result(status: Mapping[str, Any], read_config_map: Callable[[str], Mapping[str, Any]]) -> Any:
    """The result of a succeeded execution's status: inline, or from the ConfigMap `read_config_map` returns."""
    reference = status.get("resultRef")
    if not reference:
        return status.get("result")
    raw = result_bytes(reference, read_config_map(str(reference.get("configMap"))))
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
