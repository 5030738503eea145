"""Credentials sent in elastic.io `fields`, kept out of the execution: the sealed spec and its Secret.

elastic.io's `fields` carry credentials, and a spec's args are readable by
anyone who may read the execution, its Job or its pod. A request sent
`confidential` (`elastic.confidential` decides which) is `seal`ed: its args go
into a Secret the API creates after the execution (an ownerReference to the
execution's uid, so the garbage collector deletes it with the execution,
and no Secret outlives a crash before it), under a name nobody can predict,
named by the execution's `credentialsSecretRef`; the args keep only a
salted digest of it, which the runner checks before it gives the args back
to the component (schedexec_runner.main.unseal): a Secret someone else
planted under that name is refused, not used. A run whose pod starts before
the Secret exists waits: the kubelet retries the mount. Only a caller
allowed to create Secrets in the namespace may send one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schedexec import models
from schedexec.api.documents import CREATED_BY
from schedexec_runner import contract

CONFIG_SECRET_PREFIX = "schedexec-config-"


@dataclass(frozen=True)
class Sealed:
    """A confidential request's spec with its args kept out, and the Secret content that holds them."""

    spec: models.ScheduledExecutionSpec
    secret: str
    """The Secret's name, which the spec's credentialsSecretRef names."""
    content: bytes
    """The value of its contract.CONFIG_KEY: the args and a salt, as JSON."""


def seal(spec: models.ScheduledExecutionSpec, secret: str, salt: str) -> Sealed:
    """`spec` whose args live in the Secret `secret`: the args only name the content's SHA-256, which tells
    nothing about them (the salt is random, or an HMAC only the API can compute)."""
    content = json.dumps({"salt": salt, "args": spec.args}, sort_keys=True, ensure_ascii=False).encode()
    sealed = spec.model_copy(
        update={
            "args": {contract.CONFIG_DIGEST: hashlib.sha256(content).hexdigest()},
            "credentials_secret_ref": models.LocalObjectReference(name=secret),
        }
    )
    return Sealed(sealed, secret, content)


def config_secret(sealed: Sealed, execution: Mapping[str, Any]) -> dict[str, Any]:
    """The Secret holding `sealed`'s args, owned by the created `execution` (deleted with it)."""
    meta = execution["metadata"]
    owner = {"apiVersion": models.API_VERSION, "kind": models.KIND, "name": meta["name"], "uid": meta["uid"]}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {"name": sealed.secret, "labels": {CREATED_BY: "api"}, "ownerReferences": [owner]},
        "data": {contract.CONFIG_KEY: base64.b64encode(sealed.content).decode()},
    }


def random_secret_name() -> str:
    """A name for a sealed Secret that nobody can predict."""
    return f"{CONFIG_SECRET_PREFIX}{secrets.token_hex(16)}"
