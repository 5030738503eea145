"""What `kubectl sx wait` (and `run --wait`) exits with: one documented code per way an execution ends.

`kubectl wait --for=condition=Finished` exits 0 whether the execution succeeded or failed, so a CI script
cannot tell them apart without a second command. Here each final phase has its own code, the wait's own
timeout another, and errors (not found, forbidden, no cluster, a corrupt result) kubectl's 1; argparse's
usage errors keep its 2. docs/cli.md lists them; a test pins each.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schedexec.models import Phase

RESOURCE = "scheduledexecution.schedexec.io"
"""How kubectl names one execution (`kubectl get sx NAME -o name`)."""


class Exit(enum.IntEnum):
    """Exit codes of `kubectl sx`."""

    SUCCEEDED = 0
    """The execution succeeded (or the command did what it was asked)."""
    ERROR = 1
    """An error, as kubectl's: not found, forbidden, no cluster reachable, a result that fails its check."""
    USAGE = 2
    """The command line is wrong (argparse's code)."""
    FAILED = 3
    """The execution ended Failed (the reason on stderr)."""
    TIMED_OUT = 4
    """The execution ended TimedOut: it passed spec.timeoutSeconds."""
    CANCELLED = 5
    """The execution ended Cancelled."""
    WAIT_TIMEOUT = 6
    """The wait's own --timeout passed before the execution finished (it goes on running)."""


PHASE_EXITS = {
    Phase.SUCCEEDED: Exit.SUCCEEDED,
    Phase.FAILED: Exit.FAILED,
    Phase.TIMED_OUT: Exit.TIMED_OUT,
    Phase.CANCELLED: Exit.CANCELLED,
}


@dataclass(frozen=True)
class Verdict:
    """How a finished execution ended, for a script (code) and a human (message)."""

    code: Exit
    message: str


def verdict(execution: Mapping[str, Any]) -> Verdict | None:
    """The verdict on an execution document (as the API server returns it), or None while it is not finished."""
    status = execution.get("status") or {}
    try:
        phase = Phase(str(status.get("phase")))
    except ValueError:
        return None
    if not phase.finished:
        return None
    name = f"{RESOURCE}/{execution.get('metadata', {}).get('name', '')}"
    if phase is Phase.SUCCEEDED:
        return Verdict(Exit.SUCCEEDED, f"{name} Succeeded")
    error = status.get("error") or {}
    reason = " ".join(str(error.get("reason") or "").split()) or phase.value
    message = " ".join(str(error.get("message") or "").split())  # one line, whatever a component wrote
    return Verdict(PHASE_EXITS[phase], f"{name} {phase.value}: {reason}" + (f": {message}" if message else ""))
