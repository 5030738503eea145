"""Your own component: copy this directory, edit this file, build and push it (docs/own-component.md).

`greet` is a command: it gets the execution's `spec.args` and returns its result (any JSON value), which the
operator puts in the execution's status.
"""

from __future__ import annotations

from typing import Any

from schedexec_runner import Component, RunContext

component = Component("my-component")


@component.command("greet")
def greet(args: dict[str, Any], ctx: RunContext) -> dict[str, str]:
    return {"greeting": f"Hello, {args.get('name', 'world')}!"}
