"""`kubectl sx`: exit codes per final phase, and the live progress line (schedexec.sx.verdicts, .progress)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedexec.models import Phase
from schedexec.sx.progress import Console, progress_line
from schedexec.sx.verdicts import Exit, verdict

NOW = datetime(2026, 12, 7, 8, 0, 0, tzinfo=UTC)


def stamp(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def doc(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "poll"}, "spec": {"method": "m"}, "status": status}


@pytest.mark.parametrize(
    ("phase", "code"),
    [("Succeeded", 0), ("Failed", 3), ("TimedOut", 4), ("Cancelled", 5)],
)
def test_each_final_phase_has_its_documented_exit_code(phase: str, code: int) -> None:
    ended = verdict(doc(phase=phase, error={"reason": "Why", "message": "because"}))
    assert ended is not None and ended.code == code


def test_the_exit_codes_are_distinct_from_errors_usage_and_the_waits_own_timeout() -> None:
    codes = [int(e) for e in Exit]
    assert len(set(codes)) == len(codes)
    assert (Exit.ERROR, Exit.USAGE, Exit.WAIT_TIMEOUT) == (1, 2, 6)


@pytest.mark.parametrize("phase", [None, "Pending", "Running", "Waiting", "SomethingNew"])
def test_an_unfinished_execution_has_no_verdict(phase: str | None) -> None:
    assert verdict(doc(phase=phase)) is None
    assert verdict({"metadata": {"name": "x"}}) is None


def test_a_failure_names_its_reason_and_message_on_one_line() -> None:
    ended = verdict(doc(phase="Failed", error={"reason": "ShopUnavailable", "message": "the shop\nanswered 503"}))
    assert ended is not None
    assert ended.message == "scheduledexecution.schedexec.io/poll Failed: ShopUnavailable: the shop answered 503"


@given(st.sampled_from(list(Phase)), st.dictionaries(st.sampled_from(["reason", "message"]), st.text()))
def test_verdicts_follow_the_phase_alone(phase: Phase, error: dict[str, str]) -> None:
    ended = verdict(doc(phase=phase.value, error=error or None))
    assert (ended is None) == (not phase.finished)
    if ended is not None:
        assert "\n" not in ended.message and ended.message.startswith("scheduledexecution.schedexec.io/poll ")


def test_progress_of_a_running_run_says_its_index_and_why_its_pod_waits() -> None:
    running = doc(
        phase="Running",
        currentRun={"index": 2, "job": "j", "startedAt": stamp(-75), "waiting": {"reason": "ImagePullBackOff"}},
    )
    assert progress_line(running, NOW) == "sx/poll: run 2 Running for 1m15s [pod waiting: ImagePullBackOff]"
    assert progress_line(running, NOW, live=False) == "sx/poll: run 2 Running [pod waiting: ImagePullBackOff]"


def test_progress_of_a_waiting_sequence_counts_down_to_the_next_run() -> None:
    waiting = doc(phase="Waiting", runs=2, nextRunAt=stamp(4), itemsRemaining=3)
    assert progress_line(waiting, NOW) == "sx/poll: 2 runs done, Waiting - next run in 4s - 3 items remaining"
    plain = progress_line(waiting, NOW, live=False)
    assert plain == "sx/poll: 2 runs done, Waiting - next run at 08:00:04Z - 3 items remaining"
    assert progress_line(waiting, NOW + timedelta(seconds=2), live=False) == plain, "plain lines do not tick"


def test_progress_of_an_ended_execution_says_how() -> None:
    failed = doc(phase="Failed", runs=1, conditions=[{"type": "Succeeded", "status": "False", "reason": "Boom"}])
    assert progress_line(failed, NOW) == "sx/poll: Failed after 1 run (Boom)"
    assert progress_line(doc(), NOW) == "sx/poll: Pending"


def test_a_terminal_redraws_one_line_and_a_pipe_gets_one_line_per_state() -> None:
    out, err = io.StringIO(), io.StringIO()
    piped = Console(out, err, live=False)
    for seconds in (0, 1, 2):
        piped.status(doc(phase="Waiting", runs=1, nextRunAt=stamp(10)), NOW + timedelta(seconds=seconds))
    piped.status(doc(phase="Running", currentRun={"index": 2, "startedAt": stamp(10)}), NOW)
    assert err.getvalue().splitlines() == [
        "sx/poll: 1 runs done, Waiting - next run at 08:00:10Z",
        "sx/poll: run 2 Running",
    ]
    tty = io.StringIO()
    live = Console(out, tty, live=True)
    live.status(doc(phase="Waiting", runs=1, nextRunAt=stamp(10)), NOW)
    live.log("a log line\n")
    live.close()
    assert "\n" not in tty.getvalue(), "the progress line is redrawn in place, never scrolled"
    assert tty.getvalue().count(Console.CLEAR) == 3, "cleared before the log line, drawn again, cleared at the end"
    assert out.getvalue() == "a log line\n"
