"""Example 1: an e-commerce connector (elastic.io's three special methods).

- selectModel `getCategories`: the shop's product categories, for a
  configuration field whose options depend on the shop;
- getMetaModel per category (module): the input/output JSON schemas of the
  `products` action for that category;
- verifyCredentials: asks the shop who we are with the api key from the
  credentials Secret; a refused key raises, which the SDK turns into
  `{"verified": false, "reason": ...}`.

args (the configuration): {"shopUrl": "http://..."}; credentials: apiKey.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from schedexec_runner import Component, RunContext

component = Component("shop")


def shop(args: dict[str, Any], ctx: RunContext, path: str) -> Any:
    request = urllib.request.Request(
        args["shopUrl"].rstrip("/") + path, headers={"X-Api-Key": ctx.credentials.get("apiKey", "")}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@component.model("getCategories")
def categories(args: dict[str, Any], ctx: RunContext) -> dict[str, str]:
    return shop(args, ctx, "/categories")  # type: ignore[no-any-return]


@component.metadata("books")
@component.metadata("music")
@component.metadata("garden")
def products(args: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    schema = shop(args, ctx, f"/categories/{ctx.module}/schema")
    return {"in": {"type": "object", "properties": {"limit": {"type": "integer"}}}, "out": schema}


@component.credentials
def verify(args: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    me = shop(args, ctx, "/me")  # an HTTPError 401 means: not verified, with its message
    return {"account": me["account"]}
