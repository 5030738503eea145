"""What the operator keeps of an execution it cannot take whole.

The CRD bounds every field it can, but the free-form JSON of an execution (spec.args, and status.nextArgs,
result and partialResult) cannot be bounded by a schema: CEL sees no depth and no serialised size. The
API server stores JSON nested up to 10,000 levels, up to 1.5 MiB, with strings that are not valid
Unicode; an object created before the bounds, or by a client that bypasses the REST API, reaches the
operator as it is. Every execution body is screened here before the store keeps it (store.py): a field
that breaks a bound is dropped from the kept body, so the cache's memory stays bounded (about
MAX_ARGS_BYTES of args per execution) and nothing deeper in the operator (the store's JSON, pydantic,
the status write) meets it. A problem that stops the execution (args a run cannot receive) marks the
body; the reconciler fails a marked execution that has not finished with that reason, before any Job
exists (Reconciler.refuse). A result or partial result past the bounds is only dropped: the sequence
goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from schedexec import manifests
from schedexec.models import Reason
from schedexec.objects import key_of
from schedexec_runner import bounds, contract

REFUSED = "schedexec.io/refused"
"""Key of the mark in a kept body (never written to the API server): {"reason": ..., "message": ...}."""

log = logging.getLogger("schedexec")

FREE_FORM_STATUS = ("nextArgs", "result", "partialResult")
"""Status fields of free JSON (written by the operator; checked all the same: an older operator, or anyone
allowed to write the status subresource, may have written them)."""


def screen(body: Mapping[str, Any]) -> dict[str, Any]:
    """`body` as the store may keep it: free-form fields that break a bound dropped, and a problem that stops
    the execution recorded under REFUSED. spec.args are kept only until the sequence starts (the first run's
    args are copied into status.nextArgs then, and nothing reads spec.args again): memory for a waiting or
    finished execution does not grow with its args. An execution within every bound that has not started is
    returned as it is (a shallow copy)."""
    kept = dict(body)
    problems: list[tuple[str, str]] = []
    spec, status = kept.get("spec"), kept.get("status")
    started = isinstance(status, Mapping) and status.get("phase") is not None
    if isinstance(spec, Mapping) and "args" in spec:
        problem = None if started else _args_problem(spec["args"])
        if problem is not None:
            problems.append(problem)
        if problem is not None or started:
            kept["spec"] = {**spec, "args": {}}
    if isinstance(status, Mapping):
        dropped: dict[str, None] = {}
        for field in FREE_FORM_STATUS:
            if field in status and (reason := bounds.problem(status[field], f"status.{field}")) is not None:
                dropped[field] = None
                if field == "nextArgs":  # the next run cannot get them: the sequence cannot go on
                    problems.append((Reason.INVALID_ENVELOPE, reason))
                else:  # only shown: the sequence goes on without it
                    log.warning("%s: %s; not kept", key_of(body), reason)
        if dropped:
            kept["status"] = {**status, **dropped}
    if problems:
        reason, message = problems[0]
        kept[REFUSED] = {"reason": str(reason), "message": message}
    return kept


def refusal(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) if `screen` marked `body`, else None."""
    mark = body.get(REFUSED)
    if not isinstance(mark, Mapping):
        return None
    return str(mark.get("reason")), str(mark.get("message"))


def _args_problem(args: Any) -> tuple[str, str] | None:
    """Why spec.args cannot be run: too deep, not valid Unicode, or larger than a run can receive."""
    problem = bounds.problem(args, "spec.args")
    if problem is not None:
        return Reason.INVALID_SPEC, problem
    size = manifests.args_size(args) if isinstance(args, Mapping) else 0
    if size > contract.MAX_ARGS_BYTES:
        return Reason.ARGS_TOO_LARGE, manifests.args_too_large("spec.args are", size)
    return None
