"""Results kept outside the status: read the ConfigMap `status.resultRef` names, check it, hand back its text.

The operator keeps a result over SCHEDEXEC_INLINE_RESULT_BYTES in a
ConfigMap owned by the execution (`manifests.result_config_map`): plain JSON
under `result.json` in `.data`, or gzip under `result.json.gz` in
`.binaryData`, with its size and sha256 in the reference. The API answers
it only if it is exactly what the operator recorded: the ConfigMap must be
owned by this execution, and the text must have the recorded size and
sha256 (decompression stops past the size, so no archive can grow beyond
it). Anything else is a 502 that says what did not match; the text itself
is never parsed, only passed on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from typing import Any

from schedexec import manifests, models
from schedexec.api.errors import ApiError
from schedexec.api.kubeclient import Client


def reference(body: dict[str, Any]) -> models.ResultRef | None:
    """The execution's `status.resultRef`, if its result is kept outside the status."""
    ref = (body.get("status") or {}).get("resultRef")
    return None if ref is None else models.ResultRef.model_validate(ref)


async def kept_result(client: Client, body: dict[str, Any], ref: models.ResultRef) -> bytes:
    """The result's JSON text as `ref` describes it, or 502."""
    namespace, uid = body["metadata"]["namespace"], body["metadata"]["uid"]
    config_map = await client.get_config_map(namespace, ref.config_map)
    if config_map is None:
        raise _bad(f"the ConfigMap {ref.config_map} that holds the result is gone")
    owners = {o.get("uid") for o in config_map.get("metadata", {}).get("ownerReferences") or []}
    if uid not in owners:
        raise _bad(f"the ConfigMap {ref.config_map} is not owned by this execution")
    raw = _unpack(config_map, ref)
    if len(raw) != ref.bytes or hashlib.sha256(raw).hexdigest() != ref.sha256:
        raise _bad(
            f"the result in ConfigMap {ref.config_map} does not match its record "
            f"({ref.bytes} bytes, sha256 {ref.sha256}): it was changed or damaged"
        )
    return raw


def _unpack(config_map: dict[str, Any], ref: models.ResultRef) -> bytes:
    if ref.key == manifests.RESULT_KEY:
        text = (config_map.get("data") or {}).get(ref.key)
        if not isinstance(text, str):
            raise _bad(f"the ConfigMap {ref.config_map} has no key {ref.key}")
        return text.encode("utf-8")
    if ref.key == manifests.RESULT_GZ_KEY:
        packed = (config_map.get("binaryData") or {}).get(ref.key)
        try:
            inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip
            return inflate.decompress(base64.b64decode(packed or "", validate=True), ref.bytes + 1)
        except (binascii.Error, zlib.error, ValueError):
            raise _bad(f"the ConfigMap {ref.config_map} holds no readable {ref.key}") from None
    raise _bad(f"unknown result key {ref.key}")


def _bad(detail: str) -> ApiError:
    return ApiError(502, "Bad Gateway", detail)
