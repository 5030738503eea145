"""The elastic.io runtime: an elastic.io component runs, unmodified, under its own sailor; this module is the
receiver beside it that turns sailor's result into the schedexec outcome envelope.

elastic.io runs a service method (verifyCredentials, getMetaModel, selectModel) in the component's own image
with `node <component>/node_modules/elasticio-sailor-nodejs/runService.js <method>`, configured by environment
variables (ELASTICIO_CFG: the configuration, credentials included), and sailor POSTs `{"status": "success",
"data": ...}` or `{"status": "error", "data": {"message": ...}}` to ELASTICIO_POST_RESULT_URL. A run's pod for
`spec.component.runtime: elasticio` therefore has two containers (manifests.py builds it):

- `receiver`, this module (the runner image, a Kubernetes native sidecar: an init container with restartPolicy
  Always, so it is up before the component starts and is stopped once the component exits). It alone mounts
  the args and the credentials Secret; it assembles the cfg (the args, the sealed elastic.io `fields`, the
  Secret's keys) and writes it into a memory-backed emptyDir shared with the component, then listens on
  127.0.0.1 for sailor's POST and writes the envelope (built, bounded and redacted by the runner's own rules:
  `main.reportable`, `main.redact`, `main.termination_message`) into the same emptyDir.
- `run`, the component's image, whose command is `LAUNCHER`, a few lines of JavaScript run by the image's own
  `node` (`node -e`): it waits for the cfg, starts sailor's runService.js with ELASTICIO_CFG set from it, and
  when sailor exits copies the envelope to its own termination message (and a large result's log frame to its
  own stdout, where the operator reads the run's log). No file of the component image is changed or added.

Why this split: the cfg must reach sailor as one environment variable, but a credential must not appear in
the Job (a `secretKeyRef` per key would need the keys in the Job spec, and the cfg merges them into JSON), so
something in the pod has to read the mounted Secret; and the envelope's rules (the 4 KiB termination message,
the log frame, redaction) already exist in Python. The launcher only copies files, so the two cannot drift.
The termination message cannot be written by the receiver directly: the kubelet bind-mounts a container's
terminationMessagePath from a file of its own, which shadows whatever an emptyDir holds under that path.

Sailor's semantics are kept as they are: verifyCredentials answers success with `{verified: false, reason}`
when the component throws, and that is a `done` result, as elastic.io's API gives it; a `status: error` POST
is an error envelope (reason ComponentError, sailor's message). Sailor exiting without a POST (a crash, a cfg
it cannot parse) is an error envelope with reason NoResult, naming its exit status.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, TextIO

from schedexec_runner import bounds, contract, envelope, main

DIR = "SCHEDEXEC_ELASTICIO_DIR"
"""The emptyDir the receiver and the component share (the cfg, the envelope)."""
DEFAULT_DIR = "/var/run/schedexec/elasticio"
PORT = "SCHEDEXEC_ELASTICIO_PORT"
"""The receiver's port on 127.0.0.1 (ELASTICIO_POST_RESULT_URL points there)."""
DEFAULT_PORT = 8765
CFG_FILE = "cfg.json"
"""sailor's ELASTICIO_CFG, written by the receiver; the launcher removes it once read."""
OUTCOME_FILE = "outcome"
"""The termination message (the envelope, or a pointer to the log frame)."""
LOG_FILE = "outcome.log"
"""What the launcher writes to its stdout after sailor: a large result's log frame, else empty."""
READY_FILE = "ready"
"""Written last: the cfg (or an outcome already, when the inputs are broken) is in place."""

SERVICE_METHODS = (contract.VERIFY_CREDENTIALS, contract.GET_META_MODEL, contract.SELECT_MODEL)
"""The methods sailor's runService.js runs (elastic.io's service methods)."""

RUN_SERVICE = "node_modules/elasticio-sailor-nodejs/runService.js"
"""sailor's service entry point, relative to the component's path."""

READY_TIMEOUT_SECONDS = 60
"""How long the launcher waits for the receiver's cfg before it reports NoResult."""

LAUNCHER = (
    """\
const fs = require('fs'), path = require('path'), cp = require('child_process');
const dir = process.env.SCHEDEXEC_ELASTICIO_DIR, method = process.argv[1];
const file = (name) => path.join(dir, name);
const report = (text, log) => {
  if (log) fs.writeSync(1, log);
  fs.writeFileSync(process.env.SCHEDEXEC_TERMINATION_LOG || '/dev/termination-log', text);
  process.exit(0);
};
const fail = (message) => report(JSON.stringify({v: 1, outcome: 'error', reason: 'NoResult', message}));
const deadline = Date.now() + READY_MS;
while (!fs.existsSync(file('ready'))) {
  if (Date.now() > deadline) fail('the elastic.io receiver did not start within READY_S seconds');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
}
const done = () => fs.existsSync(file('outcome'))
  && report(fs.readFileSync(file('outcome'), 'utf8'), fs.readFileSync(file('outcome.log'), 'utf8'));
done();
const home = process.env.ELASTICIO_COMPONENT_PATH;
// sailor joins its component path to its working directory: the component's directory, and '' beside it
const env = {...process.env, ELASTICIO_CFG: fs.readFileSync(file('cfg.json'), 'utf8'), ELASTICIO_COMPONENT_PATH: ''};
fs.rmSync(file('cfg.json'));
const sailor = cp.spawnSync(process.execPath, [path.join(home, 'RUN_SERVICE'), method],
  {env, cwd: home, stdio: 'inherit'});
done();
const status = sailor.error ? sailor.error.message
  : sailor.signal ? 'signal ' + sailor.signal : 'exit code ' + sailor.status;
fail('sailor (' + method + ') ended without posting a result (' + status + '); its log says why');
""".replace("READY_MS", str(READY_TIMEOUT_SECONDS * 1000))
    .replace("READY_S", str(READY_TIMEOUT_SECONDS))
    .replace("RUN_SERVICE", RUN_SERVICE)
)
"""The component container's program (`node -e LAUNCHER <method>`): see the module docstring. It writes an
envelope of its own only when sailor posted nothing (reason NoResult)."""


def translate(body: bytes) -> dict[str, Any]:
    """The outcome of a POST body sailor sent: `{"status": "success", "data": X}` is done with result X (null
    when absent), `{"status": "error", "data": {"message": M}}` an error with reason ComponentError and message
    M; anything else (not JSON, too deep, another status) an InvalidResult error saying what came. Never
    raises; the result is not yet checked by envelope.validate (`outcome` does that)."""
    try:
        posted = bounds.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        return envelope.error("InvalidResult", f"sailor posted a body that is not JSON: {_short(str(exc))}")
    if not isinstance(posted, dict):
        return envelope.error("InvalidResult", f"sailor posted {type(posted).__name__}, not an object")
    status = posted.get("status")
    data = posted.get("data")
    if status == "success":
        return envelope.done(data)
    if status == "error":
        message = data.get("message") if isinstance(data, dict) else None
        if not isinstance(message, str) or not message:
            message = f"sailor reported an error without a message: {_short(json.dumps(data))}"
        return envelope.error("ComponentError", message)
    return envelope.error("InvalidResult", f"sailor posted status {_short(json.dumps(status))}, not success or error")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else f"{text[:limit]}..."


def outcome(body: bytes, secrets: Mapping[str, str]) -> dict[str, Any]:
    """The envelope of sailor's POST `body`: translated, checked as any run's outcome (main.reportable), every
    credential value redacted (main.redact)."""
    return main.redact(main.reportable(translate(body)), secrets)


def cfg(environ: Mapping[str, str], diagnostics: TextIO | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """sailor's cfg for the run `environ` describes, and the values to redact: the args, with the configuration
    the REST API sealed in the credentials Secret merged in (main.unseal: elastic.io's `fields`), then the
    Secret's other keys (a key of the Secret wins over an arg of the same name: credentials are the Secret's).
    A key whose value is not UTF-8 cannot be part of JSON text and is left out (named on `diagnostics`).
    Raises main.InputError for inputs that break the contract."""
    credentials, binary = main.read_credentials(environ, diagnostics)
    config = credentials.pop(contract.CONFIG_KEY, None)
    for key in binary:
        print(
            f"schedexec-elasticio: the credential {key!r} is not UTF-8 text: not in the cfg",
            file=diagnostics or sys.stderr,
        )
    secrets = {
        **credentials,
        **{key: value.decode("latin-1") for key, value in binary.items()},
        **{f"{contract.CONFIG_KEY}[{i}]": value for i, value in enumerate(main.config_secrets(config))},
    }
    args = main.unseal(main.read_args(environ), config)
    return {**args, **credentials}, secrets


def write_outcome(directory: Path, result: dict[str, Any], environ: Mapping[str, str]) -> None:
    """The envelope's termination message and log frame, as the launcher copies them (the log first: the
    outcome file is what the launcher waits for)."""
    log = io.StringIO()
    try:
        text = main.termination_message(result, environ, log)
    except (TypeError, ValueError, RecursionError) as exc:
        text = envelope.encode(envelope.error("InvalidResult", f"the outcome cannot be serialised as JSON: {exc}"))
    _write(directory / LOG_FILE, log.getvalue())
    _write(directory / OUTCOME_FILE, text)


def _write(path: Path, text: str) -> None:
    """`text` into `path` whole: a reader sees the old file or the new one, never a part."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.chmod(0o600)
    os.replace(partial, path)


class Receiver(HTTPServer):
    """The one-result HTTP endpoint sailor POSTs to: the first POST is the run's outcome (answered 200, as
    sailor requires); a later one is answered 409 and changes nothing."""

    def __init__(self, port: int, directory: Path, environ: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.directory, self.environ, self.secrets = directory, environ, secrets
        self.received = threading.Event()
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        limit = body_limit(self.server.environ)
        length = declared_length(self.headers.get("Content-Length"))
        if length is None:
            result = envelope.error("InvalidResult", "sailor's POST has no valid Content-Length")
        elif length > limit:  # not read: the receiver's memory is bounded, the result is too large anyway
            result = envelope.error(
                "ResultTooLarge", f"sailor's result is {length} bytes, more than the {limit} bytes a run may report"
            )
        else:
            result = outcome(self.rfile.read(length) if length > 0 else b"", self.server.secrets)
        with self.server.lock:
            first = not self.server.received.is_set()
            if first:
                write_outcome(self.server.directory, result, self.server.environ)
                self.server.received.set()
        self.send_response(200 if first else 409)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        print(f"schedexec-elasticio: {format % args}", file=sys.stderr)


BODY_OVERHEAD_BYTES = 64 * 1024
"""What a POST may carry beyond the result itself: `{"status": ..., "data": ...}` and JSON escapes' slack."""


def declared_length(value: str | None) -> int | None:
    """A request's Content-Length as a count of bytes (absent: 0), or None when it is not one."""
    if value is None:
        return 0
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def body_limit(environ: Mapping[str, str]) -> int:
    """The largest POST the receiver reads: twice the largest result a run may report (JSON escapes of non-ASCII
    text can double it), plus the wrapping; a larger one is ResultTooLarge unread."""
    return 2 * max(main.max_result_bytes(environ), envelope.MAX_BYTES) + BODY_OVERHEAD_BYTES


def prepare(environ: Mapping[str, str], directory: Path) -> dict[str, str]:
    """Write the cfg (or, when the inputs break the contract, the error envelope at once) and the ready file;
    return the values to redact."""
    secrets: dict[str, str] = {}
    try:
        method = environ.get(contract.METHOD, "")
        if method not in SERVICE_METHODS:
            raise main.InputError(
                "UnknownMethod", f"the elasticio runtime runs {', '.join(SERVICE_METHODS)}, not {method!r}"
            )
        config, secrets = cfg(environ, sys.stderr)
        _write(directory / CFG_FILE, json.dumps(config, separators=(",", ":"), ensure_ascii=False))
    except main.InputError as exc:
        write_outcome(directory, envelope.error(exc.reason, str(exc)), environ)
    _write(directory / READY_FILE, "")
    return secrets


def serve() -> int:
    """The receiver's entry point (`schedexec-elasticio-receiver`): prepare, then answer sailor's POST until the
    kubelet stops this sidecar (SIGTERM, once the component's container exited)."""
    environ = os.environ
    directory = Path(environ.get(DIR) or DEFAULT_DIR)
    port = int(environ.get(PORT) or DEFAULT_PORT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    receiver = Receiver(port, directory, environ, {})  # listening before `ready`: sailor may POST at once
    receiver.secrets = prepare(environ, directory)
    with contextlib.suppress(SystemExit):  # SIGTERM: the component is done
        receiver.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
