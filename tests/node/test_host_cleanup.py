"""A real node leaves nothing behind: not after `down`, not after its test session was killed.

These tests start nodes of their own, so they must run while the session's
node (tests/node/conftest.py) is not up: the node tier's conftest runs this
module's tests first, and none of them asks for it. What is left is read from
outside the processes (node.leftovers: /proc, mounts, links, iptables,
cgroups).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schedexec_devcluster import binaries
from schedexec_devcluster.controlplane import ControlPlane
from schedexec_devcluster.node import NodeLayout, leftovers, owner
from tests.support import wait_for

pytestmark = pytest.mark.node

_SESSION = """
import os, sys, time
from pathlib import Path
from schedexec_devcluster.__main__ import install_chart, node_setup
from schedexec_devcluster.binaries import ensure_binaries
from schedexec_devcluster.controlplane import ControlPlane
plane = ControlPlane(Path(sys.argv[1]), binaries=ensure_binaries(), node=node_setup(), owner=os.getpid())
plane.up()
install_chart(plane)
print("up", flush=True)
time.sleep(3600)
"""


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        message = "the real node needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    running = owner()
    if running is not None and NodeLayout(running).root.exists():
        pytest.fail(f"another real node is up ({running}); these tests need the machine's only node slot")
    binaries.ensure_binaries()
    state = tmp_path / "cluster"
    yield state
    ControlPlane(state).down()  # whatever a failed assertion left running


def assert_running(state: Path) -> None:
    """The probe sees the node itself, not only the control plane or a directory."""
    seen = "\n".join(leftovers(NodeLayout(state)))
    for process in ("/kubelet ", "/containerd ", "/kube-proxy ", "containerd-shim"):
        assert process in seen, f"{process.strip()} not seen among:\n{seen}"


def _devcluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schedexec_devcluster", *args], capture_output=True, text=True, timeout=600
    )


def test_down_leaves_nothing_behind(state_dir: Path) -> None:
    started = _devcluster("up", "--operator", "--state-dir", str(state_dir))  # the chart: pods, shims, Services
    assert started.returncode == 0, started.stderr[-3000:]
    assert_running(state_dir)
    stopped = _devcluster("down", "--state-dir", str(state_dir))
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert leftovers(NodeLayout(state_dir)) == []


def test_a_killed_test_session_leaves_nothing_behind(state_dir: Path) -> None:
    """SIGKILL, as a CI timeout or a second Ctrl-C would: the reaper stops the node and cleans the host."""
    log = state_dir.parent / "session.log"
    with log.open("w") as errors:
        session = subprocess.Popen(
            [sys.executable, "-c", _SESSION, str(state_dir)], stdout=subprocess.PIPE, stderr=errors, text=True
        )
    assert session.stdout is not None
    deadline = time.monotonic() + 300
    while not select.select([session.stdout], [], [], 1)[0]:
        assert session.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
    assert session.stdout.readline().strip() == "up", log.read_text()[-3000:]
    assert_running(state_dir)
    session.send_signal(signal.SIGKILL)
    session.wait()
    wait_for("the node to be gone", lambda: not leftovers(NodeLayout(state_dir)) or None, timeout=120)
