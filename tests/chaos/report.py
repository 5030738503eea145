"""The chaos scenarios' figures, as the table docs/reliability.md shows."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from tests.chaos.ledger import RunTally


@dataclass(frozen=True)
class Row:
    scenario: str
    executions: int
    faults: str
    wrong: int
    """Executions that did not end as the scenario requires (phase, reason, result)."""
    runs: RunTally
    """Every run's executions, counted by the run ledger (a pod watch), not by the component."""
    note: str = ""


class Report:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def record(
        self, scenario: str, *, executions: int, faults: str, wrong: int, runs: RunTally, note: str = ""
    ) -> None:
        notes = [note] if note else []
        if runs.unexpected:
            notes.append(f"{runs.unexpected} run(s) executed that no execution should have run")
        if runs.gaps:
            notes.append(f"the run ledger listed again {runs.gaps} time(s) after its watch expired")
        self.rows.append(Row(scenario, executions, faults, wrong, runs, "; ".join(notes)))

    def markdown(self) -> str:
        scale = os.environ.get("SCHEDEXEC_CHAOS_SCALE", "ci")
        lines = [
            "# Reliability",
            "",
            f"Written by `make chaos` (tests/chaos, scale `{scale}`) on "
            f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, on the local control plane. "
            "The target for every scenario is nothing lost: each execution reaches the right final state, "
            "with a clear reason when it fails, no run index executed twice, "
            "no Job left behind but those kept for their runs' logs.",
            "",
            "Runs are counted from outside the operator and the component: a watch on the run pods "
            "(tests/chaos/ledger.py) records every pod whose container started, and each is one execution of "
            "its run index. *Ran twice (allowed)*: a run executed more than once, every extra time a retry of "
            "its Job's pod after that pod died, within the execution's `spec.retries`, and the run recorded "
            "once in `status.history` (which has one record per run, not per attempt). *Ran twice (not "
            "allowed)*: any other repeat, a second Job for the same run included. *Lost*: an expected run "
            "that never started. *Executions wrong*: executions that did not end as the scenario requires.",
            "",
            "| scenario | executions | faults | runs expected | ran once | ran twice (allowed) "
            "| ran twice (not allowed) | lost | executions wrong | note |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in self.rows:
            runs = row.runs
            lines.append(
                f"| {row.scenario} | {row.executions} | {row.faults} | {runs.expected} | {runs.once} | "
                f"{runs.again_allowed} | {runs.again_not_allowed} | {runs.lost} | {row.wrong} | {row.note} |"
            )
        lines += [
            "",
            "Bad input and security are covered by the regular suite: invalid specs refused at admission "
            "(tests/cluster/test_admission.py), the REST API fuzzed with schemathesis with zero 5xx and malformed "
            "bodies, ids and content types (tests/cluster/test_restapi.py), runner faults — the component raises, "
            "hangs past its run timeout, writes garbage or an oversized envelope, exits non-zero without one "
            "(tests/cluster/test_operator.py) —, runner pods without a service-account token and with the "
            "restricted security context, a canary credential absent from status, events and logs, 401/403 "
            "answers, and the operator working with exactly the chart's RBAC (tests/cluster/test_chart.py). "
            "Hostile objects the API server accepts (args nested 1,000 deep or 1.2 MiB, huge messages and results "
            "written by a component, a pointer to 30 million log lines) run next to normal executions, which must "
            "all finish while the operator stays the same process (tests/cluster/test_poison.py); generated specs "
            "and outputs are driven through the whole decision (tests/unit/test_poison_properties.py).",
            "",
        ]
        return "\n".join(lines)
