"""The REST API's spec builders: each request kind becomes one typed ScheduledExecutionSpec, no cluster."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schedexec import models
from schedexec.api import specs
from schedexec.api.bodies import ComponentRequest, ExecutionAttributes
from schedexec.api.errors import ApiError
from schedexec.api.submit import wire
from schedexec.settings import ApiSettings

SETTINGS = ApiSettings(
    components={"shop": {"image": "reg/shop:{revision}", "default_revision": "1.0"}},
    default_timeout_seconds=600,
    default_run_timeout_seconds=300,
    ttl_seconds_after_finished=3600,
)
DEFAULTS = {"timeoutSeconds": 600, "runTimeoutSeconds": 300, "ttlSecondsAfterFinished": 3600}


def component_request(credential: str | None = None, **attributes: Any) -> ComponentRequest:
    data: dict[str, Any] = {"type": "x", "attributes": attributes}
    if credential:
        data["relationships"] = {"credential": {"data": {"id": credential}}}
    return ComponentRequest.model_validate({"data": data})


def generic(**attributes: Any) -> ExecutionAttributes:
    return ExecutionAttributes.model_validate({"component": "shop", **attributes})


@pytest.mark.parametrize(
    ("revision", "request_", "method", "expected"),
    [
        (
            "latest",
            component_request("creds", fields={"apiKey": "k"}),
            models.VERIFY_CREDENTIALS,
            {"method": "verifyCredentials", "args": {"apiKey": "k"}, "credentialsSecretRef": {"name": "creds"}},
        ),
        (
            "2.1",
            component_request(module="products"),
            models.GET_META_MODEL,
            {"method": "getMetaModel", "module": "products", "args": {}},
        ),
        (
            "latest",
            component_request(module="list", method="getCategories", fields={"a": 1}),
            models.SELECT_MODEL,
            {"method": "selectModel", "module": "list", "function": "getCategories", "args": {"a": 1}},
        ),
    ],
)
def test_an_elastic_request_becomes_a_spec_with_the_api_defaults(
    revision: str, request_: ComponentRequest, method: str, expected: dict[str, Any]
) -> None:
    spec = specs.elastic_spec(SETTINGS, "shop", revision, request_, method)
    image = "reg/shop:1.0" if revision == "latest" else f"reg/shop:{revision}"
    assert wire(spec) == {"component": {"image": image}, **expected, **DEFAULTS}


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"method": "countdown"}, {"method": "countdown", "args": {}}),
        (
            {"method": "poll", "args": {"n": 1}, "timeoutSeconds": 60},
            {"method": "poll", "args": {"n": 1}, "timeoutSeconds": 60, "runTimeoutSeconds": 60},
        ),
        ({"method": "poll", "timeoutSeconds": 900, "runTimeoutSeconds": 900}, {"method": "poll", "args": {}}),
        (
            {"method": "getMetaModel", "module": "m", "revision": "r9", "credential": "shop"},
            {"method": "getMetaModel", "module": "m", "args": {}, "credentialsSecretRef": {"name": "shop"}},
        ),
        ({"method": "selectModel", "function": "f"}, {"method": "selectModel", "function": "f", "args": {}}),
    ],
)
def test_a_generic_request_becomes_a_spec_with_its_own_timeouts(
    attributes: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = specs.execution_spec(SETTINGS, generic(**attributes))
    limits = {
        "timeoutSeconds": attributes.get("timeoutSeconds", 600),
        "runTimeoutSeconds": attributes.get("runTimeoutSeconds", min(300, attributes.get("timeoutSeconds", 600))),
        "ttlSecondsAfterFinished": 3600,
    }
    image = f"reg/shop:{attributes.get('revision', '1.0')}"
    assert wire(spec) == {"component": {"image": image}, **limits, **expected}
    assert models.ScheduledExecutionSpec.model_validate(wire(spec)) == spec, "the wire form reads back the same"


@pytest.mark.parametrize(
    ("attributes", "pointer", "detail"),
    [
        (
            {"method": "x", "timeoutSeconds": 100, "runTimeoutSeconds": 200},
            "/data/attributes/runTimeoutSeconds",
            "data.attributes.runTimeoutSeconds must not exceed data.attributes.timeoutSeconds",
        ),
        (
            {"method": "x", "runTimeoutSeconds": 601},
            "/data/attributes/runTimeoutSeconds",
            "data.attributes.runTimeoutSeconds must not exceed data.attributes.timeoutSeconds",
        ),
        (
            {"method": "getMetaModel"},
            "/data/attributes/module",
            "data.attributes.module is required when method is getMetaModel",
        ),
        (
            {"method": "selectModel", "module": "m"},
            "/data/attributes/function",
            "data.attributes.function (the select-model function) is required when method is selectModel",
        ),
        ({"method": "x", "args": {"b": "x" * 210_000}}, "/data/attributes/args", "the limit is 204800 bytes"),
    ],
)
def test_a_generic_request_the_api_server_would_refuse_is_422_at_its_attribute(
    attributes: dict[str, Any], pointer: str, detail: str
) -> None:
    with pytest.raises(ApiError) as refused:
        specs.execution_spec(SETTINGS, generic(**attributes))
    assert (refused.value.status, refused.value.pointer) == (422, pointer)
    assert detail in refused.value.detail


@pytest.mark.parametrize(
    ("request_", "required", "pointer"),
    [
        (component_request(), ("module",), "/data/attributes/module"),
        (component_request(method="f"), ("module", "method"), "/data/attributes/module"),
        (component_request(module="m"), ("module", "method"), "/data/attributes/method"),
        (component_request(fields={"b": "x" * 210_000}), (), "/data/attributes/fields"),
    ],
)
def test_an_elastic_request_without_what_its_endpoint_needs_is_422_at_the_attribute(
    request_: ComponentRequest, required: tuple[str, ...], pointer: str
) -> None:
    with pytest.raises(ApiError) as refused:
        specs.elastic_spec(SETTINGS, "shop", "latest", request_, models.SELECT_MODEL, required)
    assert (refused.value.status, refused.value.pointer) == (422, pointer)


def test_an_unknown_component_is_404_without_listing_the_configured_ones() -> None:
    with pytest.raises(ApiError) as unknown:
        specs.execution_spec(SETTINGS, generic(component="nope", method="x"))
    assert unknown.value.status == 404 and unknown.value.detail == "unknown component 'nope'"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"method": "getMetaModel"}, "module"),
        ({"method": "selectModel"}, "function"),
        ({"method": "x", "timeoutSeconds": 10, "runTimeoutSeconds": 11}, "runTimeoutSeconds"),
    ],
)
def test_the_model_mirrors_the_cel_cross_field_rules_and_names_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as invalid:
        models.ScheduledExecutionSpec.model_validate({"component": {"image": "i"}, **spec})
    (problem,) = invalid.value.errors()
    assert problem["ctx"] == {"field": field} and problem["msg"].startswith(f"spec.{field}")


def test_like_cel_the_timeout_rule_applies_only_when_both_timeouts_are_given() -> None:
    spec = models.ScheduledExecutionSpec.model_validate(
        {"component": {"image": "i"}, "method": "x", "runTimeoutSeconds": 3600}
    )
    assert spec.run_timeout_seconds > spec.timeout_seconds
