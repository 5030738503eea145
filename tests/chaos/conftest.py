"""Collects the chaos scenarios' figures and writes docs/reliability.md when asked to."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class Ledger:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def record(self, scenario: str, **figures: Any) -> None:
        self.rows.append({"scenario": scenario, **figures})

    def markdown(self) -> str:
        scale = os.environ.get("SCHEDEXEC_CHAOS_SCALE", "ci")
        lines = [
            "# Reliability",
            "",
            f"Written by `make chaos` (tests/chaos, scale `{scale}`) on "
            f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}, on the local control plane. "
            "The target for every scenario is nothing lost: each execution reaches the right final state, "
            "with a clear reason when it fails, no run index executed twice, no Job left behind.",
            "",
            "| scenario | executions | runs | faults | lost or wrong | note |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in self.rows:
            lines.append(
                f"| {row['scenario']} | {row['executions']} | {row['runs']} | {row['faults']} | "
                f"{row['lost_or_wrong']} | {row.get('note', '')} |"
            )
        lines += [
            "",
            "Bad input and security are covered by the regular suite: invalid specs refused at admission "
            "(tests/cluster/test_admission.py), the REST API fuzzed with schemathesis with zero 5xx and malformed "
            "bodies, ids and content types (tests/cluster/test_restapi.py), runner faults — the component raises, "
            "hangs past its run timeout, writes garbage or an oversized envelope, exits non-zero without one "
            "(tests/cluster/test_operator.py) —, runner pods without a service-account token and with the "
            "restricted security context, a canary credential absent from status, events and logs, 401/403 "
            "answers, and the operator working with exactly the chart's RBAC (tests/cluster/test_chart.py).",
            "",
        ]
        return "\n".join(lines)


@pytest.fixture(scope="session")
def ledger() -> Iterator[Ledger]:
    book = Ledger()
    yield book
    target = os.environ.get("SCHEDEXEC_CHAOS_REPORT")
    if target and book.rows:
        Path(target).write_text(book.markdown())
