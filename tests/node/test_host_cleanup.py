"""A real node leaves nothing behind: not after `down`, not after its test session was killed.

These tests start nodes of their own, so they must run while the session's
node (tests/node/conftest.py) is not up: this module sorts before the ones
that use it, and none of its tests asks for it. What is left is read from
outside the processes (node.leftovers: /proc, mounts, links, iptables,
cgroups).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from schedexec_devcluster import binaries
from schedexec_devcluster.node import NodeLayout, leftovers
from tests.conftest import wait_for

pytestmark = pytest.mark.node

_SESSION = """
import sys, time
from pathlib import Path
from schedexec_devcluster.__main__ import node_setup
from schedexec_devcluster.binaries import ensure_binaries
from schedexec_devcluster.controlplane import ControlPlane
import os
plane = ControlPlane(Path(sys.argv[1]), binaries=ensure_binaries(), node=node_setup(), owner=os.getpid())
plane.up()
print("up", flush=True)
time.sleep(3600)
"""


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        message = "the real node needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    binaries.ensure_binaries()
    return tmp_path / "cluster"


def _devcluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schedexec_devcluster", *args], capture_output=True, text=True, timeout=600
    )


def test_down_leaves_nothing_behind(state_dir: Path) -> None:
    started = _devcluster("up", "--state-dir", str(state_dir))
    assert started.returncode == 0, started.stderr[-3000:]
    assert leftovers(NodeLayout(state_dir)), "the probe sees a running node"
    stopped = _devcluster("down", "--state-dir", str(state_dir))
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert leftovers(NodeLayout(state_dir)) == []


def test_a_killed_test_session_leaves_nothing_behind(state_dir: Path) -> None:
    """SIGKILL, as a CI timeout or a second Ctrl-C would: the reaper stops the node and cleans the host."""
    session = subprocess.Popen(
        [sys.executable, "-c", _SESSION, str(state_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert session.stdout is not None
    line = session.stdout.readline()
    assert line.strip() == "up", session.stderr.read()[-3000:] if session.stderr else ""
    assert leftovers(NodeLayout(state_dir))
    session.send_signal(signal.SIGKILL)
    session.wait()
    wait_for("the node to be gone", lambda: not leftovers(NodeLayout(state_dir)) or None, timeout=120)
