"""docs/argocd-health.lua, run by a real Lua interpreter against status objects the operator's decisions make."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schedexec import runs
from schedexec.decisions import decide
from schedexec.runs import RunObservation, RunState
from schedexec_runner import envelope
from tests.unit.builders import POLICY, at, execution, finished, running

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "argocd-health.lua"
LUA = shutil.which("lua5.4")


def lua(value: Any) -> str:
    """A Lua table constructor for a JSON value."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def health(obj: dict[str, Any]) -> dict[str, str]:
    if LUA is None:
        pytest.fail("lua5.4 is not installed: `make host-packages` (or apt-get install lua5.4) installs it")
    program = (
        f"obj = {lua(obj)}\nlocal hs = (function()\n{SCRIPT.read_text()}\nend)()\nprint(hs.status)\nprint(hs.message)\n"
    )
    done = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, check=True, timeout=30)
    status, message = done.stdout.split("\n", 1)
    return {"status": status, "message": message.strip()}


@pytest.mark.parametrize(
    ("status", "run", "now", "expected"),
    [
        (None, runs.MISSING, 1, "Progressing"),
        (running(), RunObservation(RunState.ACTIVE), 5, "Progressing"),
        (running(), finished(envelope.schedule(30, {})), 5, "Progressing"),  # Waiting for run 2
        (running(), finished(envelope.done({"ok": True})), 5, "Healthy"),
        (running(), finished(envelope.error("ShopUnavailable", "503")), 5, "Degraded"),
        (running(), RunObservation(RunState.ACTIVE), 601, "Degraded"),  # TimedOut
    ],
)
def test_each_phase_maps_to_argo_cd_health(
    status: dict[str, Any] | None, run: RunObservation, now: float, expected: str
) -> None:
    ex = execution(status)
    decided = decide(ex, run, at(now), slot_free=True, policy=POLICY).status
    obj = ex.model_dump(mode="json", by_alias=True, exclude_none=True)
    obj["status"] = decided.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert health(obj)["status"] == expected


def test_an_execution_the_operator_has_not_seen_yet_is_progressing() -> None:
    assert health({"metadata": {"name": "x", "generation": 1}, "spec": {}})["status"] == "Progressing"
    cancelled = {"metadata": {"generation": 2}, "status": {"phase": "Succeeded", "observedGeneration": 1}}
    assert health(cancelled)["status"] == "Progressing"
