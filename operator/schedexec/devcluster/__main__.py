"""Command line for the local control plane.

    python -m schedexec.devcluster up [--state-dir DIR] [--no-node-agent] [--operator] [--audit]
    python -m schedexec.devcluster down|status [--state-dir DIR]
    python -m schedexec.devcluster binaries

Progress goes to stderr; ``up`` prints only ``export KUBECONFIG=...`` on
stdout, so ``eval "$(python -m schedexec.devcluster up)"`` works. The state
directory defaults to ``${SCHEDEXEC_CLUSTER_DIR:-<repo>/.cluster}``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from schedexec.devcluster.binaries import (
    COMPONENTS,
    KUBECTL,
    REPO_ROOT,
    Binaries,
    BinariesUnavailable,
    ensure_binaries,
    ensure_helm,
)
from schedexec.devcluster.controlplane import ControlPlane, ControlPlaneError, ExtraProcess, pick_free_ports

NODE_AGENT = "node-agent"
OPERATOR = "operator"


def default_state_dir() -> Path:
    return Path(os.environ.get("SCHEDEXEC_CLUSTER_DIR") or REPO_ROOT / ".cluster")


def node_agent_process(plane: ControlPlane) -> ExtraProcess:
    """The schedexec node agent, which runs the Pods bound to the local node."""
    command = (
        sys.executable,
        "-m",
        "schedexec.devcluster.nodeagent",
        "--kubeconfig",
        str(plane.kubeconfig_path),
        "--state-dir",
        str(plane.state_dir / "node"),
    )
    return ExtraProcess(NODE_AGENT, command)


def operator_process(plane: ControlPlane) -> ExtraProcess:
    """The schedexec operator from this checkout, with settings fit for local work."""
    env = {
        "SCHEDEXEC_MIN_INTERVAL_SECONDS": os.environ.get("SCHEDEXEC_MIN_INTERVAL_SECONDS", "1"),
        "SCHEDEXEC_LIVENESS_ENDPOINT": f"http://127.0.0.1:{pick_free_ports(1)[0]}/healthz",
        "SCHEDEXEC_METRICS_PORT": str(pick_free_ports(1)[0]),
    }
    return ExtraProcess(OPERATOR, (sys.executable, "-m", "schedexec.cli", "operator"), env)


def apply_crds(plane: ControlPlane, binaries: Binaries) -> None:
    """Install (or upgrade) the CRDs from crds/ and wait until they are served."""
    kubectl = [str(binaries.require(KUBECTL)), "--kubeconfig", str(plane.kubeconfig_path)]
    crds = str(REPO_ROOT / "crds")
    for args in (["apply", "--server-side", "-f", crds], ["wait", "--for=condition=Established", "-f", crds]):
        done = subprocess.run([*kubectl, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    print(f"[devcluster] CRDs from {crds} installed", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="directory holding certs, etcd data, logs and kubeconfig (default: %(default)s)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m schedexec.devcluster",
        description="Local Kubernetes control plane for tests and development.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[common], help="start (or reuse) the control plane")
    up.add_argument("--no-node-agent", action="store_true", help="do not start the schedexec node agent")
    up.add_argument("--operator", action="store_true", help="also install the CRDs and run the operator")
    up.add_argument("--audit", action="store_true", help="write an audit log to <state-dir>/logs/audit.log")
    commands.add_parser("down", parents=[common], help="stop the control plane")
    commands.add_parser("status", parents=[common], help="show processes and readiness")
    binaries = commands.add_parser("binaries", help="locate or build the binaries and print their paths")
    binaries.add_argument("--helm", action="store_true", help="also locate or build helm (chart checks)")
    return parser


def _up(args: argparse.Namespace) -> int:
    binaries = ensure_binaries()
    plane = ControlPlane(args.state_dir, binaries=binaries, audit=args.audit)
    if not args.no_node_agent:
        plane.extra_processes.append(node_agent_process(plane))
    plane.up()
    if args.operator:
        apply_crds(plane, binaries)
        plane.extra_processes.append(operator_process(plane))
        plane.up()
    print(f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig_path))}")
    return 0


def _down(args: argparse.Namespace) -> int:
    ControlPlane(args.state_dir).down()
    return 0


def _status(args: argparse.Namespace) -> int:
    status = ControlPlane(args.state_dir).status()
    if status.server_url is None:
        print(f"stopped (no instance recorded in {args.state_dir})")
        return 1
    state = "ready" if status.ready else ("running, not ready" if status.running else "degraded")
    print(f"{state}: {status.server_url}\nkubeconfig: {status.kubeconfig}")
    for process in status.processes:
        liveness = "alive" if process.alive else "DEAD"
        print(f"  {process.name:<24} pid {process.pid:<8} {liveness:<6} {process.log}")
    return 0 if status.ready else 1


def _binaries(args: argparse.Namespace) -> int:
    binaries = ensure_binaries()
    for component in COMPONENTS:
        print(f"{component}: {binaries.get(component)}")
    if args.helm:
        print(f"helm: {ensure_helm()}")
    return 0


_COMMANDS = {"up": _up, "down": _down, "status": _status, "binaries": _binaries}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except BinariesUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
