"""Results kept outside the status: read the ConfigMap `status.resultRef` names, check it, hand back its text.

The operator keeps a result over SCHEDEXEC_INLINE_RESULT_BYTES in a
ConfigMap owned by the execution (`manifests.result_config_map`). The API
answers it only if it is exactly what the operator recorded, as
`resultref.kept_text` checks it (owner, bounded inflate, size, sha256: the
same check `kubectl sx result` makes). Anything else is a 502 that says what
did not match; the text itself is never parsed, only passed on.
"""

from __future__ import annotations

from typing import Any

from schedexec import models, resultref
from schedexec.api.errors import ApiError
from schedexec.api.kubeclient import Client


def reference(body: dict[str, Any]) -> models.ResultRef | None:
    """The execution's `status.resultRef`, if its result is kept outside the status."""
    ref = (body.get("status") or {}).get("resultRef")
    return None if ref is None else models.ResultRef.model_validate(ref)


async def kept_result(client: Client, body: dict[str, Any], ref: models.ResultRef) -> bytes:
    """The result's JSON text as `ref` describes it (checked by `resultref.kept_text`), or 502."""
    namespace, uid = body["metadata"]["namespace"], body["metadata"]["uid"]
    config_map = await client.get_config_map(namespace, ref.config_map)
    if config_map is None:
        raise _bad(f"the ConfigMap {ref.config_map} that holds the result is gone")
    try:
        return resultref.kept_text(config_map, ref, uid)
    except resultref.ResultMismatch as exc:
        raise _bad(str(exc)) from None


def _bad(detail: str) -> ApiError:
    return ApiError(502, "Bad Gateway", detail)
