"""From a request to a `models.ScheduledExecutionSpec`: one pure builder per request kind.

The elastic.io component requests (verify-credential, dynamic-metadata,
select-model) and the generic `/v2/executions` request name the same things
differently (`fields` for `args`, `method` for the select-model `function`);
each builder maps its request onto the one spec model, fills in the API's
defaults, and lets the model refuse what the API server would refuse (its
cross-field rules live in `models`, next to the CEL rules they mirror). A
refusal answers 422 pointing at the request's own attribute. Only the
`submit` edge serialises the spec.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from schedexec import manifests, models
from schedexec.api.bodies import ComponentRequest, ExecutionAttributes
from schedexec.api.errors import ApiError, unprocessable
from schedexec.settings import ApiSettings
from schedexec_runner import contract

ATTRIBUTES = "data.attributes"

Names = Mapping[str, str]
"""Spec field (as on the wire) → the request attribute that gives it."""
ELASTIC: Names = {"args": "fields", "module": "module", "function": "method"}
SAME_NAMES = ("args", "module", "function", "timeoutSeconds", "runTimeoutSeconds")
GENERIC: Names = {name: name for name in SAME_NAMES} | {"credentialsSecretRef": "credential"}


def elastic_spec(
    settings: ApiSettings,
    component: str,
    revision: str,
    request: ComponentRequest,
    method: str,
    required: Iterable[str] = (),
) -> models.ScheduledExecutionSpec:
    """The spec of an elastic.io component request for `method`; `required`: the attributes its endpoint needs."""
    attributes = request.data.attributes
    for name in required:
        if not getattr(attributes, name):
            raise unprocessable(f"{ATTRIBUTES}.{name} is required", pointer(name))
    credential = request.data.relationships.credential  # workspace and vpn_agent: `elastic`'s concern
    return _spec(
        settings,
        ELASTIC,
        component=(component, revision),
        method=method,
        module=attributes.module,
        function=attributes.method,
        args=attributes.fields,
        credential=None if credential is None or credential.data is None else credential.data.id,
    )


def execution_spec(settings: ApiSettings, attributes: ExecutionAttributes) -> models.ScheduledExecutionSpec:
    """The spec of a generic request: any method, with its args and timeouts."""
    return _spec(
        settings,
        GENERIC,
        component=(attributes.component, attributes.revision),
        method=attributes.method,
        module=attributes.module,
        function=attributes.function,
        args=attributes.args,
        credential=attributes.credential,
        timeout=attributes.timeout_seconds,
        run_timeout=attributes.run_timeout_seconds,
    )


def component_template(settings: ApiSettings, name: str) -> models.RunPodTemplate | None:
    """The pod template the component map gives component `name`'s executions, if any."""
    image = settings.components.get(name)
    return None if image is None else image.pod_template


def component_spec(settings: ApiSettings, name: str, revision: str) -> models.ComponentSpec:
    """Component `name` at `revision` (`latest`: its default revision) as configured; 404 if it is not."""
    image = settings.components.get(name)
    if image is None:  # the configured components are not listed: they are the operator's to tell
        raise ApiError(404, "Not Found", f"unknown component {name!r}")
    tag = image.default_revision if revision == "latest" else revision
    where = None if image.component_path is None else models.ElasticioComponent(component_path=image.component_path)
    return models.ComponentSpec(image=image.image.format(revision=tag), runtime=image.runtime, elasticio=where)


def _spec(
    settings: ApiSettings,
    names: Names,
    *,
    component: tuple[str, str],
    method: str,
    module: str | None,
    function: str | None,
    args: dict[str, Any],
    credential: str | None,
    timeout: int | None = None,
    run_timeout: int | None = None,
) -> models.ScheduledExecutionSpec:
    """The spec both kinds share, `component` as (name, revision): the API's defaults for what the request
    leaves out. Checked in this order: the args' size, the component, the spec's own rules."""
    deliverable(args, pointer(names["args"]))
    timeout = timeout or settings.default_timeout_seconds
    try:
        return models.ScheduledExecutionSpec(
            component=component_spec(settings, *component),
            pod_template=component_template(settings, component[0]),
            method=method,
            module=module,
            function=function,
            args=args,
            credentials_secret_ref=None if credential is None else models.LocalObjectReference(name=credential),
            timeout_seconds=timeout,
            run_timeout_seconds=run_timeout or min(settings.default_run_timeout_seconds, timeout),
            ttl_seconds_after_finished=settings.ttl_seconds_after_finished,
        )
    except ValidationError as exc:
        raise refused(exc, names) from None


def deliverable(args: dict[str, Any], at: str) -> None:
    """Refuse args a run could not receive (the operator would fail the execution with ArgsTooLarge)."""
    size = manifests.args_size(args)
    if size > contract.MAX_ARGS_BYTES:
        raise unprocessable(manifests.args_too_large("the args are", size), at)


def refused(error: ValidationError, names: Names) -> ApiError:
    """422 for the spec's first problem, in the request's words: `spec.timeoutSeconds` becomes
    `data.attributes.timeoutSeconds`, pointed at when the request gave it."""
    problem = error.errors()[0]
    location = [str(part) for part in problem["loc"]]
    field = str((problem.get("ctx") or {}).get("field") or (location[0] if location else ""))
    detail = problem["msg"] if problem["type"] == "spec_rule" else f"spec.{'.'.join(location)}: {problem['msg']}"
    detail = re.sub(r"spec\.(\w+)", lambda m: f"{ATTRIBUTES}.{names[m[1]]}" if m[1] in names else m[0], detail)
    return unprocessable(detail, pointer(names[field]) if field in names else None)


def pointer(attribute: str) -> str:
    """The JSON pointer to a request attribute."""
    return f"/{ATTRIBUTES.replace('.', '/')}/{attribute}"
