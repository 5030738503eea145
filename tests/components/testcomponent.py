"""A component whose behaviour the operator's tests choose through args.

Image `ghcr.io/schedexec/test-component` in the node agent's images.yaml.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import random
import string
import sys
import time
import zlib
from pathlib import Path
from typing import Any, NoReturn

from schedexec_runner import Component, RunContext, RunError, Schedule, contract
from schedexec_runner.xsoar import CommandResults, PollResult, ScheduledCommand, arg_to_number, polling_function

component = Component("test")


@component.model("getCategories")
def categories(args: dict[str, Any], ctx: RunContext) -> dict[str, str]:
    return {"1": "Books", "2": "Music", "module": ctx.module or ""}


@component.metadata("products")
def products(args: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    return {
        "in": {"type": "object", "properties": {"category": {"type": "string"}}},
        "out": {"type": "object", "properties": {"sku": {"type": "string"}}},
    }


def wide_schema(kib: int) -> dict[str, Any]:
    """The JSON schema of an object wide enough to be about `kib` KiB as compact JSON (a real connector's
    getMetaModel for a table of many columns); deterministic, so a test can rebuild it."""
    properties: dict[str, Any] = {}
    size, index = 0, 0
    while size < kib * 1024:
        name = f"column_{index:06d}"
        prop = {"type": "string", "title": f"Column {index}", "description": f"Field {index} of the wide table"}
        properties[name] = prop
        size += len(json.dumps({name: prop}, separators=(",", ":")))
        index += 1
    return {"in": {"type": "object", "properties": {}}, "out": {"type": "object", "properties": properties}}


@component.metadata("wide")
def wide(args: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    return wide_schema(int(args.get("kib", 900)))


@component.credentials
def verify(args: dict[str, Any], ctx: RunContext) -> None:
    key = ctx.credentials.get("apiKey", "")
    if hashlib.sha256(key.encode()).hexdigest() != args.get("expectedSha256"):
        raise ValueError(f"the api key {ctx.credentials.get('apiKey')} was refused")


@component.command("countdown")
def countdown(args: dict[str, Any], ctx: RunContext) -> Any:
    """Schedules itself `left` more times; the args carry every run index seen."""
    seen = [*args.get("seen", []), ctx.run_index]
    if args.get("left", 0) > 0:
        return Schedule(
            args.get("every", 0),
            {**args, "left": args["left"] - 1, "seen": seen},
            partial_result={"remoteJob": "job-42", "seen": seen},
        )
    return {"seen": seen}


@component.command("reshape")
def reshape(args: dict[str, Any], ctx: RunContext) -> Any:
    """Run 1 schedules run 2 with fewer and other keys; run 2 returns the args it got."""
    if ctx.run_index == 1:
        return Schedule(0, {"only": 1}, partial_result={"step": 1, "first": True})
    if ctx.run_index == 2:
        return Schedule(0, {"only": 2}, partial_result={"step": 2})
    return args


@component.command("fail")
def fail(args: dict[str, Any], ctx: RunContext) -> Any:
    raise RunError("ShopUnavailable", "the shop answered 503")


@component.command("sleep")
def sleep(args: dict[str, Any], ctx: RunContext) -> Any:
    time.sleep(float(args.get("seconds", 3600)))
    return "slept"


@component.command("crash")
def crash(args: dict[str, Any], ctx: RunContext) -> Any:
    print("crashing on purpose: segfault in native code", file=sys.stderr, flush=True)
    os._exit(3)


@component.command("garbage")
def garbage(args: dict[str, Any], ctx: RunContext) -> Any:
    target = os.environ.get(contract.TERMINATION_LOG) or contract.DEFAULT_TERMINATION_LOG
    Path(target).write_text("this is not an envelope")
    os._exit(0)


@component.command("huge")
def huge(args: dict[str, Any], ctx: RunContext) -> Any:
    """`bytes` (default 20000) random letters: over 4 KiB even compressed."""
    rng = random.Random(7)
    return "".join(rng.choice(string.ascii_letters) for _ in range(int(args.get("bytes", 20000))))


@component.command("leak")
def leak(args: dict[str, Any], ctx: RunContext) -> Any:
    raise RuntimeError(f"cannot log in with {ctx.credentials.get('apiKey')}")


def _open_shop(key: str) -> None:
    raise ConnectionError(f"the shop refused the api key {key}")


@component.command("log-and-raise")
def log_and_raise(args: dict[str, Any], ctx: RunContext) -> Any:
    """Logs through ctx.logger (its credential in one line) and raises from a nested call whose message holds
    the credential: the pod's log shows both and the traceback, the credential redacted."""
    key = ctx.credentials.get("apiKey", "")
    ctx.logger.info("connecting to the shop %s with the api key %s", args.get("shop", "demo"), key)
    _open_shop(key)


@component.command("async-sum")
async def async_sum(args: dict[str, Any], ctx: RunContext) -> Any:
    """An async command: awaits, logs, and returns the sum of args.numbers."""
    await asyncio.sleep(0.01)
    ctx.logger.info("summing %d numbers", len(args.get("numbers", [])))
    return {"sum": sum(args.get("numbers", [])), "async": True}


@component.command("blurt")
def blurt(args: dict[str, Any], ctx: RunContext) -> Any:
    """A careless component: prints its credential (raw and base64-encoded) in a request dump, then crashes."""
    key = ctx.credentials.get("apiKey", "")
    print(f"GET /orders HTTP/1.1\nAuthorization: Bearer {key}", flush=True)
    print(f"X-Api-Key: {base64.b64encode(key.encode()).decode()}", file=sys.stderr, flush=True)
    os._exit(3)


@component.command("files")
def files(args: dict[str, Any], ctx: RunContext) -> Any:
    """Lists the credential keys, to prove the Secret is mounted (names only, never values)."""
    return sorted(ctx.credentials)


@component.command("digest")
def digest(args: dict[str, Any], ctx: RunContext) -> Any:
    """The size and sha256 of the args as received (canonical JSON), to prove large args arrive intact."""
    canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return {"bytes": len(canonical), "sha256": hashlib.sha256(canonical).hexdigest(), "home": os.environ.get("HOME")}


@component.command("inspect")
def inspect(args: dict[str, Any], ctx: RunContext) -> Any:
    """What the run's container is allowed, seen from inside it (the node tier checks the security context)."""

    def writable(directory: str) -> bool:
        probe = Path(directory) / f".probe-{os.getpid()}"
        try:
            probe.write_text("x")
        except OSError:
            return False
        probe.unlink()
        return True

    status = dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":\t" in line)
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "home": os.environ.get("HOME"),
        "rootWritable": writable("/"),
        "tmpWritable": writable("/tmp"),
        "serviceAccountToken": Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists(),
        "capabilities": status.get("CapEff", "").strip(),
        "noNewPrivileges": status.get("NoNewPrivs", "").strip() == "1",
    }


@component.command("environment")
def environment(args: dict[str, Any], ctx: RunContext) -> Any:
    """The environment variables named in `names` as the run's container sees them (the node tier checks what a
    pod template put there), after holding `seconds` so that a test can read the run's pod back meanwhile."""
    time.sleep(float(args.get("seconds", 0)))
    return {name: os.environ.get(name) for name in args.get("names", [])}


# Commands written as for Cortex XSOAR (CommonServerPython's polling_function, PollResult,
# CommandResults, ScheduledCommand): only the imports and the registration differ from XSOAR.
# The remote job is make-believe; its state travels in the args, as XSOAR commands keep it.


@component.command("xsoar-submit")
def xsoar_submit_command(args: dict[str, Any], ctx: RunContext) -> CommandResults:
    """Submits a job and schedules another command, `xsoar-poll`, to follow it up."""
    job_id = f"job-{args.get('sample', 'sample')}"
    polls_needed = arg_to_number(args.get("polls_needed"), "polls_needed")
    return CommandResults(
        outputs_prefix="Sandbox.Submission",
        outputs_key_field="jobId",
        outputs={"jobId": job_id},
        readable_output=f"Submitted {job_id}",
        scheduled_command=ScheduledCommand(
            command="xsoar-poll",
            next_run_in_seconds=arg_to_number(args.get("interval_in_seconds"), "interval_in_seconds") or 10,
            args={**args, "job_id": job_id, "polling": True},
            timeout_in_seconds=arg_to_number(args.get("timeout_in_seconds"), "timeout_in_seconds"),
            items_remaining=3 if polls_needed is None else polls_needed,
        ),
    )


@component.command("xsoar-poll")
@polling_function("xsoar-poll", interval=10, timeout=600)
def xsoar_poll_command(args: dict[str, Any], ctx: RunContext) -> PollResult:
    """A sandbox detonation in XSOAR's style (run it with `polling: true`): without `job_id` it
    submits a job, then each run polls it; the job is done after `polls_needed` (default 3) polls
    that saw it running. `interval_in_seconds` and `timeout_in_seconds` args set the interval and
    the sequence's timeout."""
    job_id = args.get("job_id")
    if not job_id:
        job_id = f"job-{args.get('sample', 'sample')}"
        submitted = CommandResults(outputs_prefix="Sandbox.Submission", outputs={"jobId": job_id})
        return PollResult(response=submitted, continue_to_poll=True, args_for_next_run={**args, "job_id": job_id})
    polls = (arg_to_number(args.get("polls"), "polls") or 0) + 1
    polls_needed = arg_to_number(args.get("polls_needed"), "polls_needed")
    if polls <= (3 if polls_needed is None else polls_needed):
        return PollResult(
            response=None,
            continue_to_poll=True,
            args_for_next_run={**args, "polls": polls},
            partial_result=CommandResults(
                outputs_prefix="Sandbox.Job",
                outputs={"jobId": job_id, "status": "running", "polls": polls},
                readable_output=f"Job {job_id} is still running (poll {polls})",
            ),
        )
    return PollResult(
        response=CommandResults(
            outputs_prefix="Sandbox.Report",
            outputs_key_field="jobId",
            outputs={"jobId": job_id, "verdict": "benign", "polls": polls},
            readable_output=f"Job {job_id}: benign",
        )
    )


# Poison outcomes (issue 24): each writes its own termination message, raw, past the runner's encoding and
# checks, and exits 0 as a run that reported, so the operator meets what a broken or hostile component in
# another language could write.


def _write_raw(message: str) -> NoReturn:
    target = os.environ.get(contract.TERMINATION_LOG) or contract.DEFAULT_TERMINATION_LOG
    Path(target).write_text(message, encoding="utf-8")
    os._exit(contract.EXIT_REPORTED)


@component.command("surrogate")
def surrogate(args: dict[str, Any], ctx: RunContext) -> Any:
    """A `done` envelope whose result is a lone surrogate: the JSON escape \\ud800, valid JSON text that
    decodes to a string no UTF-8 encoder takes."""
    _write_raw('{"v":1,"outcome":"done","result":"\\ud800"}')


@component.command("deep-result")
def deep_result(args: dict[str, Any], ctx: RunContext) -> Any:
    """A `done` envelope whose result nests `depth` (default 300) arrays: small text, deeper than
    pydantic's serialiser goes."""
    depth = int(args.get("depth", 300))
    _write_raw('{"v":1,"outcome":"done","result":' + "[" * depth + "]" * depth + "}")


@component.command("false-pointer")
def false_pointer(args: dict[str, Any], ctx: RunContext) -> Any:
    """A logged-outcome pointer (schedexec_runner.frame) that claims `lines` (default 30,000,000) frame lines
    for a 100-byte outcome, and no frame in the log at all."""
    pointer = {"nonce": "0" * 32, "bytes": 100, "sha256": "0" * 64, "lines": int(args.get("lines", 30_000_000))}
    _write_raw("schedexec-logged:" + json.dumps(pointer, separators=(",", ":")))


def long_error_message(size: int) -> str:
    """`size` characters (ASCII, nothing JSON escapes) of an upstream's error page, as a careless component
    passes it on whole; deterministic, so a test can rebuild it."""
    line = "upstream 503: <html><body><h1>Service Unavailable</h1><p>try again later</p></body></html> "
    return (line * (size // len(line) + 1))[:size]


def long_error_envelope(size: int) -> str:
    """An `error` envelope (compact JSON) of exactly `size` bytes, nearly all of it its message."""
    shell = {"v": 1, "outcome": "error", "reason": "ShopUnavailable", "message": ""}
    overhead = len(json.dumps(shell, separators=(",", ":")))
    return json.dumps({**shell, "message": long_error_message(size - overhead)}, separators=(",", ":"))


@component.command("long-error")
def long_error(args: dict[str, Any], ctx: RunContext) -> Any:
    """An `error` envelope of `bytes` (default 256 KiB) bytes of JSON, its message nearly all of it,
    compressed as the runner compresses (schedexec_runner.envelope) so that it fits the termination message."""
    text = long_error_envelope(int(args.get("bytes", 256 * 1024)))
    _write_raw("schedexec-zlib:" + base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii"))


# kubectl sx (issue 28): a log worth following.


@component.command("chatter")
def chatter(args: dict[str, Any], ctx: RunContext) -> Any:
    """Prints `lines` (default 5) lines `run N line I`, one every `pause` (default 1) seconds, then schedules
    the next run (after `every` seconds, default 1) until `runs` (default 2) runs have run: a log to follow
    while a run runs, and runs to tell apart by their logs."""
    for line in range(int(args.get("lines", 5))):
        print(f"run {ctx.run_index} line {line}", flush=True)
        time.sleep(float(args.get("pause", 1)))
    if ctx.run_index < int(args.get("runs", 2)):
        return Schedule(int(args.get("every", 1)), args)
    return {"runs": ctx.run_index}


@component.command("token-claims")
def token_claims(args: dict[str, Any], ctx: RunContext) -> Any:
    """The `aud` and `sub` claims of the ServiceAccount token the pod template projected (the file named by
    SCHEDEXEC_SERVICE_ACCOUNT_TOKEN), read from the JWT's payload without verifying it: the node tier checks
    whose token for which audience the run got. Never the token itself (a run's result is in its status)."""
    with open(os.environ["SCHEDEXEC_SERVICE_ACCOUNT_TOKEN"], encoding="ascii") as file:
        payload = file.read().strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {"aud": claims.get("aud"), "sub": claims.get("sub")}
