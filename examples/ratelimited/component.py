"""Example 3: a rate-limited command that backs off exponentially.

When the remote API answers 429, the run schedules another one after
`baseDelaySeconds * 2**attempt` seconds (capped), with `attempt + 1` in the
next run's args; when it answers 200, the result is the answer.

args: {"apiUrl": "http://...", "client": "me", "baseDelaySeconds": 10}
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from schedexec_runner import Component, RunContext, Schedule

component = Component("ratelimited")
MAX_DELAY_SECONDS = 600


@component.command("fetch")
def fetch(args: dict[str, Any], ctx: RunContext) -> Any:
    attempt = int(args.get("attempt", 0))
    url = f"{args['apiUrl'].rstrip('/')}/quota?client={args.get('client', 'anonymous')}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return {"attempts": attempt + 1, **json.load(response)}
    except urllib.error.HTTPError as exc:
        if exc.code != 429:
            raise
    delay = min(int(args.get("baseDelaySeconds", 10)) * 2**attempt, MAX_DELAY_SECONDS)
    return Schedule(delay, {**args, "attempt": attempt + 1}, partial_result={"rateLimited": attempt + 1})
