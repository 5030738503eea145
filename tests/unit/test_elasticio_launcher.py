"""The elastic.io runtime's launcher (schedexec_runner.elasticio.LAUNCHER) run by a real `node` against the
real receiver, with a stand-in for sailor's runService.js that does what sailor does at its edges (reads
ELASTICIO_CFG, POSTs `{status, data}` to ELASTICIO_POST_RESULT_URL, exits) in the ways the launcher must handle.
The real sailor, in real component images, runs in tests/node/test_elasticio_native.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schedexec_runner import contract, envelope, frame
from schedexec_runner import elasticio as receiver

NODE = shutil.which("node")


@pytest.fixture(autouse=True)
def node_js() -> None:
    """The launcher is JavaScript run by a component image's `node`: without Node.js here it cannot run; CI has
    it (the machine's own), so there a missing `node` fails, elsewhere it skips saying why."""
    if NODE is None:
        message = "needs Node.js (the elastic.io runtime's component side): no `node` on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


STAND_IN = """\
const http = require('http'), hash = require('crypto');
const cfg = JSON.parse(process.env.ELASTICIO_CFG);
const post = (body) => new Promise((resolve) => {
  const req = http.request(process.env.ELASTICIO_POST_RESULT_URL, {method: 'POST',
    headers: {'Content-Type': 'application/json'}}, (res) => { res.resume(); res.on('end', resolve); });
  req.end(JSON.stringify(body));
});
(async () => {
  if (cfg.scenario === 'silent') process.exit(3);
  const data = cfg.scenario === 'large'
    ? {pets: Array.from({length: 3000}, (_, i) => hash.createHash('sha256').update(String(i)).digest('hex'))}
    : {method: process.argv[2], cfg, cwd: process.cwd(), module: process.env.ELASTICIO_ACTION_OR_TRIGGER || null};
  console.log('sailor stand-in: posting');
  const failed = {status: 'error', data: {message: 'boom ' + cfg.apiKey}};
  await post(cfg.scenario === 'error' ? failed : {status: 'success', data});
  process.exit(cfg.scenario === 'crash-after-post' ? 1 : 0);
})();
"""


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A run's pod on the host: the component's path with the stand-in sailor, the shared directory, the inputs,
    and the receiver serving on a free port of 127.0.0.1."""
    component = tmp_path / "component"
    service = component / receiver.RUN_SERVICE
    service.parent.mkdir(parents=True)
    service.write_text(STAND_IN)
    for name in ("shared", "secret"):
        (tmp_path / name).mkdir()
    (tmp_path / "secret" / "apiKey").write_text("s3cr3t")
    environ = {
        contract.ARGS_FILE: str(tmp_path / "args.json"),
        contract.CREDENTIALS_DIR: str(tmp_path / "secret"),
        contract.METHOD: "selectModel",
        receiver.DIR: str(tmp_path / "shared"),
    }
    yield {"tmp": tmp_path, "component": component, "environ": environ}


def run(pod: dict[str, Any], args: dict[str, Any]) -> tuple[str, str, int]:
    """Prepare, serve, launch; the termination message, the launcher's stdout, its exit."""
    tmp, environ = pod["tmp"], pod["environ"]
    (tmp / "args.json").write_text(json.dumps(args))
    server = receiver.Receiver(0, tmp / "shared", environ, {})
    server.secrets = receiver.prepare(environ, tmp / "shared")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    termination = tmp / "termination-log"
    try:
        launched = subprocess.run(
            [str(NODE), "-e", receiver.LAUNCHER, "selectModel"],
            env={
                "PATH": "/usr/bin:/bin",
                receiver.DIR: str(tmp / "shared"),
                contract.TERMINATION_LOG: str(termination),
                "ELASTICIO_COMPONENT_PATH": str(pod["component"]),
                "ELASTICIO_POST_RESULT_URL": f"http://127.0.0.1:{server.server_address[1]}/",
                "ELASTICIO_ACTION_OR_TRIGGER": "getPetsByStatus",
            },
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        server.shutdown()
        server.server_close()
    return termination.read_text(), launched.stdout, launched.returncode


def test_sailor_gets_the_cfg_and_its_post_is_the_outcome(pod: dict[str, Any]) -> None:
    message, _, code = run(pod, {"status": "sold"})
    assert code == contract.EXIT_REPORTED
    result = envelope.decode(message)
    assert result == envelope.done(
        {
            "method": "selectModel",
            "cfg": {"status": "sold", "apiKey": "***"},  # given as s3cr3t, redacted from the outcome
            "cwd": str(pod["component"]),
            "module": "getPetsByStatus",
        }
    )
    assert not (pod["tmp"] / "shared" / receiver.CFG_FILE).exists(), "the cfg is removed once sailor has it"


def test_an_error_post_is_an_error_outcome(pod: dict[str, Any]) -> None:
    message, _, _ = run(pod, {"scenario": "error"})
    assert envelope.decode(message) == envelope.error("ComponentError", "boom ***")


def test_a_post_then_a_crash_keeps_the_posted_outcome(pod: dict[str, Any]) -> None:
    message, _, code = run(pod, {"scenario": "crash-after-post"})
    assert code == contract.EXIT_REPORTED and envelope.decode(message)["outcome"] == envelope.DONE


def test_sailor_exiting_without_a_post_fails_the_run_clearly(pod: dict[str, Any]) -> None:
    message, _, code = run(pod, {"scenario": "silent"})
    assert code == contract.EXIT_REPORTED
    failed = envelope.decode(message)
    assert failed["reason"] == "NoResult"
    assert "without posting a result (exit code 3)" in failed["message"]


def test_a_large_result_reaches_the_log(pod: dict[str, Any]) -> None:
    message, stdout, _ = run(pod, {"scenario": "large"})
    where = frame.pointer(message)
    assert where is not None
    result = json.loads(frame.read(stdout, where, frame.DEFAULT_MAX_RESULT_BYTES))
    assert len(result["result"]["pets"]) == 3000


def test_inputs_refused_by_the_receiver_never_start_sailor(pod: dict[str, Any]) -> None:
    pod["environ"][contract.ARGS_FILE] = str(pod["tmp"] / "missing.json")
    message, stdout, _ = run(pod, {})
    assert envelope.decode(message)["reason"] == "MissingInput"
    assert "sailor stand-in" not in stdout
