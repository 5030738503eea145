"""Example 2: a "sandbox detonation" poller (XSOAR's scheduled commands).

The first run submits the file and gets a remote job id; every later run
polls that job until it completes. The partial result carries the remote
job id, so a sequence that times out still tells the user which job to look
at (a complaint XSOAR users have).

args: {"sandboxUrl": "http://...", "file": "invoice.pdf", "pollSeconds": 10}
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from schedexec_runner import Component, PollResult, RunContext

component = Component("sandbox")


def call(url: str, method: str = "GET") -> Any:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@component.polling("detonate", interval_seconds=10)
def detonate(args: dict[str, Any], ctx: RunContext) -> PollResult:
    base = args["sandboxUrl"].rstrip("/")
    job = args.get("jobId") or call(f"{base}/detonations", "POST")["id"]
    state = call(f"{base}/detonations/{job}")
    if state["status"] != "complete":
        return PollResult(
            None,
            continue_to_poll=True,
            args_for_next_run={**args, "jobId": job},
            partial_result={"jobId": job, "status": state["status"]},
            next_run_in_seconds=int(args.get("pollSeconds", 10)),
        )
    return PollResult({"jobId": job, "verdict": state["verdict"], "score": state["score"]})
