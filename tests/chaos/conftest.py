"""Collects the chaos scenarios' figures and writes docs/reliability.md when asked to; one run ledger per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.ledger import RunLedger
from tests.chaos.report import Report
from tests.support import LocalCluster


@pytest.fixture(scope="session")
def report() -> Iterator[Report]:
    book = Report()
    yield book
    target = os.environ.get("SCHEDEXEC_CHAOS_REPORT")
    if target and book.rows:
        Path(target).write_text(book.markdown())


@pytest.fixture
def ledger(cluster: LocalCluster, namespace: str) -> Iterator[RunLedger]:
    """Every run pod of the test's namespace, watched from before the test creates anything; the test
    stops it once its executions finished (and it is stopped at teardown in any case)."""
    book = RunLedger(cluster.core, namespace).start()
    yield book
    book.stop(settle=0)
