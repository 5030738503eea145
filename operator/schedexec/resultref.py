"""A result kept outside the status, read back from its ConfigMap and checked: the one reader.

The operator keeps a result too large for the status in a ConfigMap owned by the execution
(`manifests.result_config_map`): plain JSON under `result.json` in `.data`, or gzip under `result.json.gz`
in `.binaryData` (base64 on the wire), with its size and sha256 in `status.resultRef`. Both readers, the
REST API (`api.results`) and `kubectl sx result` (`sx.results`), hand back its text only if it is exactly
what the operator recorded, and both call `kept_text` so that neither can drop a safeguard:

- the ConfigMap must be owned by the execution (its uid in `ownerReferences`): a ConfigMap of the same name
  made by someone else is refused, not read;
- gzip is inflated at most one byte past the recorded size, so a replaced ConfigMap (1 MiB at most) cannot
  inflate to a gigabyte in the reader's memory;
- the text must have the recorded size and sha256.

Pure: the ConfigMap is a document as the API server returns it; every refusal is `ResultMismatch`, whose
message names the ConfigMap and what differs. The text itself is never parsed here.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Mapping
from typing import Any

from schedexec import manifests, models


class ResultMismatch(ValueError):
    """The ConfigMap does not hold the result `status.resultRef` records; the message says what differs."""


def kept_text(config_map: Mapping[str, Any], ref: models.ResultRef, owner_uid: str) -> bytes:
    """The result's JSON text (UTF-8 bytes) from `config_map`, checked against `ref` and its owner."""
    if ref.key not in (manifests.RESULT_KEY, manifests.RESULT_GZ_KEY):
        raise ResultMismatch(
            f"status.resultRef names an unknown key {ref.key!r} "
            f"(expected {manifests.RESULT_KEY} or {manifests.RESULT_GZ_KEY})"
        )
    where = f"configmap/{ref.config_map}"
    owners = _mapping(config_map.get("metadata")).get("ownerReferences")
    if not isinstance(owners, list) or not any(_mapping(owner).get("uid") == owner_uid for owner in owners):
        raise ResultMismatch(f"{where} is not owned by this execution (uid {owner_uid}): it is not its result")
    raw = _unpacked(config_map, ref, where)
    if len(raw) > ref.bytes:
        raise _mismatch(
            where, f"it holds more than {ref.bytes} bytes (inflating stopped there), status.resultRef says {ref.bytes}"
        )
    if len(raw) != ref.bytes:
        raise _mismatch(where, f"it holds {len(raw)} bytes, status.resultRef says {ref.bytes}")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != ref.sha256:
        raise _mismatch(
            where, f"sha256 {digest} differs from status.resultRef's {ref.sha256}: it was changed or damaged"
        )
    return raw


def _unpacked(config_map: Mapping[str, Any], ref: models.ResultRef, where: str) -> bytes:
    """The bytes under `ref.key`; gzip inflated to at most `ref.bytes + 1` bytes."""
    field = "data" if ref.key == manifests.RESULT_KEY else "binaryData"
    value = _mapping(config_map.get(field)).get(ref.key)
    if value is None:
        raise _mismatch(where, f"it has no {field} key {ref.key}")
    if not isinstance(value, str):
        raise _mismatch(where, f"its {field} key {ref.key} is {type(value).__name__}, not a string")
    if field == "data":
        return value.encode("utf-8")
    try:
        packed = base64.b64decode(value, validate=True)
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
        raw = inflate.decompress(packed, ref.bytes + 1)
    except (ValueError, zlib.error) as exc:  # binascii.Error is a ValueError
        raise _mismatch(where, f"its {field} key {ref.key} is not valid gzip ({exc})") from None
    if len(raw) <= ref.bytes and not inflate.eof:
        raise _mismatch(where, f"its {field} key {ref.key} is not valid gzip (the stream ends early)")
    return raw


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _mismatch(where: str, detail: str) -> ResultMismatch:
    return ResultMismatch(f"{where} does not match its record: {detail}")
