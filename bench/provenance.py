"""Where a benchmark's figures come from: the commit, the state of the tree, the machine, the code it ran.

Other work goes on in this checkout while a long benchmark runs, so the
benchmarks run the operator from a copy of its code taken at the start
(`snapshot`), and every report names the commit and the uncommitted changes
that copy held.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CODE = ("operator/schedexec", "runner-image/schedexec_runner")
"""The packages the operator runs (copied by `snapshot`)."""
MEASURED = ("operator", "runner-image", "hack/devcluster", "charts", "crds", "bench", "tests/components")
"""Paths whose changes can change a benchmark's figures."""


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout


def code_version() -> dict[str, Any]:
    """HEAD, whether the tree was dirty, and the uncommitted paths that can change the figures."""
    changed = [line[3:] for line in git("status", "--porcelain=v1", "--untracked-files=all").splitlines()]
    measured = [path for path in changed if path.startswith(MEASURED)]
    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "subject": git("log", "-1", "--format=%s").strip()[:120],
        "tree_dirty": bool(changed),
        "dirty_paths": len(changed),
        "dirty_measured_paths": measured,
    }


def describe(code: dict[str, Any]) -> str:
    """One Markdown line about the code a report measured."""
    line = f"commit `{code['commit'][:12]}`"
    if not code["tree_dirty"]:
        return line + ", clean tree"
    measured = code["dirty_measured_paths"]
    line += f", tree dirty ({code['dirty_paths']} uncommitted paths"
    if not measured:
        return line + ", none under the measured code)"
    shown = ", ".join(f"`{path}`" for path in measured[:12]) + (" ..." if len(measured) > 12 else "")
    return line + f"; measured with these uncommitted changes: {shown})"


def snapshot(destination: Path) -> Path:
    """A copy of the operator's packages as they are now, to put first on the operator's PYTHONPATH."""
    for package in CODE:
        source = REPO / package
        shutil.copytree(source, destination / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def cpu_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat: others' work included."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / ticks, total / ticks


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    """The share of the machine's CPU time that was busy between two `cpu_times`."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else float("nan")
