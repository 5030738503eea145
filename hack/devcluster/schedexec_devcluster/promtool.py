"""promtool, Prometheus' checker: `check metrics` on a live scrape, `test rules` on the chart's alerts.

Found like helm (binaries.ensure_helm): `$PROMTOOL`, else the cached build
in ~/.cache/schedexec/promtool-<version>/, else `go install`ed there from
the Go module proxy `go env GOPROXY` names (nothing is downloaded from
anywhere else), with the build tag `remove_all_sd` (TAGS). Measured cold
(empty module and build caches) on this project's 2-core machine while it
was busy: 7 min 52 s wall, 252 s user + 49 s system CPU, about 1 GB of
modules and 0.85 GB of build cache (without the tag: 16 min, 554 s + 88 s,
1.8 GB + 1.8 GB). Warm, it costs nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from schedexec_devcluster.binaries import BinariesUnavailable, build_environment, cache_bin_dir, is_executable

PROMETHEUS_VERSION = "v0.316.0"
"""The Go module version of Prometheus (its v3 releases are tagged v0.3xx.y for Go modules)."""
PACKAGE = "github.com/prometheus/prometheus/cmd/promtool"
TAGS = "remove_all_sd"
"""Prometheus' build tag leaving out every service-discovery plugin (and its cloud SDK): `check metrics` and
`test rules` need none, and without them the cold build is several times smaller."""


def cache_dir() -> Path:
    return cache_bin_dir().parent.parent / f"promtool-{PROMETHEUS_VERSION}"


def ensure_promtool(build: bool = True) -> Path:
    """`$PROMTOOL`, else the cached promtool, else `go install`ed into the cache."""
    explicit = os.environ.get("PROMTOOL")
    if explicit:
        if not is_executable(Path(explicit)):
            raise BinariesUnavailable(f"PROMTOOL={explicit} is not an executable file")
        return Path(explicit)
    bin_dir = cache_dir()
    promtool = bin_dir / "promtool"
    if is_executable(promtool):
        return promtool
    if not build:
        raise BinariesUnavailable(f"promtool is not in {bin_dir} and building it was not allowed")
    if shutil.which("go") is None:
        raise BinariesUnavailable("promtool is missing and `go` is not on PATH to build it")
    bin_dir.mkdir(parents=True, exist_ok=True)
    environ = build_environment()
    environ["GOBIN"] = str(bin_dir)
    command = ["go", "install", f"-tags={TAGS}", f"{PACKAGE}@{PROMETHEUS_VERSION}"]
    done = subprocess.run(command, env=environ, capture_output=True, text=True)
    if done.returncode != 0 or not is_executable(promtool):
        raise BinariesUnavailable(f"`{' '.join(command)}` failed:\n{done.stderr[-2000:]}")
    return promtool


def check_metrics(promtool: Path, exposition: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` of a scrape's text (its lint: names, units, _total, help)."""
    return subprocess.run([str(promtool), "check", "metrics"], input=exposition, capture_output=True, text=True)


def run_rule_tests(promtool: Path, *tests: Path) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of rule unit-test files."""
    return subprocess.run(
        [str(promtool), "test", "rules", *map(str, tests)], capture_output=True, text=True, cwd=tests[0].parent
    )
