"""Command line for the local cluster.

    python -m schedexec_devcluster up [--state-dir DIR] [--node-agent | --no-node] [--operator] [--audit]
    python -m schedexec_devcluster down|status [--state-dir DIR]
    python -m schedexec_devcluster binaries [--helm] [--node]
    python -m schedexec_devcluster images [--state-dir DIR]
    python -m schedexec_devcluster push-component DIR NAME [--state-dir DIR]
    python -m schedexec_devcluster release --registry REGISTRY --version VERSION [--ca-file CA]

``up`` starts a real node by default (containerd + kubelet, and an image
registry the project's images, built offline, are pushed to and pulled
from; needs root) and, with ``--operator``,
installs the Helm chart on it. ``--node-agent`` is the fast tier instead:
pods run as local processes under the node agent, the operator runs from
this checkout.

Progress goes to stderr; ``up`` prints only ``export KUBECONFIG=...`` on
stdout, so ``eval "$(python -m schedexec_devcluster up)"`` works. The state
directory defaults to ``${SCHEDEXEC_CLUSTER_DIR:-<repo>/.cluster}``.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from schedexec_devcluster.binaries import (
    COMPONENTS,
    KUBECTL,
    REPO_ROOT,
    Binaries,
    BinariesUnavailable,
    ensure_binaries,
    ensure_helm,
    ensure_node_binaries,
    ensure_registry,
)
from schedexec_devcluster.controlplane import (
    ControlPlane,
    ControlPlaneError,
    ExtraProcess,
    NodeSetup,
    pick_free_ports,
    reap,
)
from schedexec_devcluster.images import (
    PAUSE_IMAGE,
    REGISTRY,
    ImageBuildError,
    ImageSpec,
    ensure_images,
    push_images,
)
from schedexec_devcluster.node import NodeError
from schedexec_devcluster.registry import (
    COMPONENTS_PATH,
    REGISTRY_HOST,
    RegistryLayout,
    load_credentials,
    local_reference,
)
from schedexec_devcluster.release import CREDS_ENV_VAR, ReleaseError, creds_from_environment, release

CHART = REPO_ROOT / "charts" / "schedexec"
CHART_RELEASE = "schedexec"
CHART_NAMESPACE = "schedexec-system"

OPERATOR_IMAGE = f"{REGISTRY}/operator"
"""The chart's image.repository for users; the local cluster installs it from its registry (local_reference)."""

NODE_AGENT = "node-agent"
OPERATOR = "operator"


def default_state_dir() -> Path:
    return Path(os.environ.get("SCHEDEXEC_CLUSTER_DIR") or REPO_ROOT / ".cluster")


def node_agent_process(plane: ControlPlane) -> ExtraProcess:
    """The schedexec node agent, which runs the Pods bound to the local node."""
    command = (
        sys.executable,
        "-m",
        "schedexec_devcluster.nodeagent",
        "--kubeconfig",
        str(plane.kubeconfig_path),
        "--state-dir",
        str(plane.state_dir / "node"),
    )
    return ExtraProcess(NODE_AGENT, command)


def operator_process(plane: ControlPlane) -> ExtraProcess:
    """The schedexec operator from this checkout, with the product's defaults (the 10 s minimum interval
    included); SCHEDEXEC_* variables of the caller's environment override them."""
    env = {
        "SCHEDEXEC_LIVENESS_ENDPOINT": f"http://127.0.0.1:{pick_free_ports(1)[0]}/healthz",
        "SCHEDEXEC_METRICS_PORT": str(pick_free_ports(1)[0]),
    }
    return ExtraProcess(OPERATOR, (sys.executable, "-m", "schedexec.cli", "operator"), env)


def apply_crds(plane: ControlPlane, binaries: Binaries) -> None:
    """Install (or upgrade) the CRDs and the admission policy from crds/ and wait until the CRDs are served."""
    kubectl = [str(binaries.require(KUBECTL)), "--kubeconfig", str(plane.kubeconfig_path)]
    crds = str(REPO_ROOT / "crds")
    definitions = [
        f for f in sorted((REPO_ROOT / "crds").glob("*.yaml")) if "kind: CustomResourceDefinition" in f.read_text()
    ]
    served = ["wait", "--for=condition=Established", *(arg for f in definitions for arg in ("-f", str(f)))]
    for args in (["apply", "--server-side", "-f", crds], served):
        done = subprocess.run([*kubectl, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    print(f"[devcluster] CRDs from {crds} installed", file=sys.stderr)


def publish_images(creds: str, cert_dir: Path) -> None:
    """Push the project's images (built or taken from the cache) to the local registry, under their paths."""
    push_images(REPO_ROOT, local_reference, creds, cert_dir)


COMPONENT_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
"""A repository path component (the OCI distribution spec's grammar)."""


def push_component(directory: Path, name: str, state_dir: Path) -> str:
    """Build ``directory``'s Dockerfile (FROM ghcr.io/schedexec/runner:<version> is the runner built here) and push
    it to the running local cluster's registry; the reference to put in ``spec.component.image``.

    The tag is the image's content key: an edit gives a new reference, so the node (imagePullPolicy
    IfNotPresent) never runs a stale image under an old name.
    """
    if not COMPONENT_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid image name: lower-case letters, digits and . _ - between them")
    directory = directory.resolve()
    if not (directory / "Dockerfile").is_file():
        raise ValueError(f"{directory} has no Dockerfile")
    spec = ImageSpec(f"localhost/{COMPONENTS_PATH}/{name}:dev", str(directory / "Dockerfile"), str(directory))
    (built,) = [image for image in ensure_images(REPO_ROOT, extra=(spec,)) if image.name == spec.name]
    reference = f"{REGISTRY_HOST}/{COMPONENTS_PATH}/{name}:{built.key[:12]}"
    creds = load_credentials(state_dir)["push"].creds
    push_images(
        REPO_ROOT, lambda _: reference, creds, RegistryLayout(state_dir).cert_dir, only={spec.name}, extra=(spec,)
    )
    return reference


def node_setup() -> NodeSetup:
    """The real node's binaries, its registry, and the project's images (built or taken from the cache) for it.

    Only the pod sandbox (pause) image is imported: the kubelet needs it before anything is pulled. Every
    other image is pushed to the local registry once it serves, and the node pulls it from there.
    """
    sandbox = tuple(image.archive for image in ensure_images(REPO_ROOT) if image.name == PAUSE_IMAGE)
    return NodeSetup(ensure_node_binaries(), sandbox, registry=ensure_registry(), publish=publish_images)


def install_chart(plane: ControlPlane, values: Sequence[str] = (), json_values: Sequence[str] = ()) -> None:
    """``helm upgrade --install`` of charts/schedexec with the operator image from the local registry; waits for
    rollout.

    ``values`` are extra ``--set`` assignments, ``json_values`` ``--set-json`` ones. The node pulls the image
    (``image.repository`` on REGISTRY_HOST) with its credential provider's pull user. A node without a registry
    (its images imported, as bench/node.py's) runs the imported ``ghcr.io`` name, never pulled.
    """
    pulled = plane.node is not None and plane.node.registry is not None
    image = f"image.repository={local_reference(OPERATOR_IMAGE)}" if pulled else "image.pullPolicy=Never"
    command = [
        str(ensure_helm()),
        "upgrade",
        "--install",
        CHART_RELEASE,
        str(CHART),
        "--kubeconfig",
        str(plane.kubeconfig_path),
        "--namespace",
        CHART_NAMESPACE,
        "--create-namespace",
        "--set",
        image,
        *(item for value in values for item in ("--set", value)),
        *(item for value in json_values for item in ("--set-json", value)),
        "--wait",
        "--timeout",
        "180s",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    if done.returncode != 0:
        raise ControlPlaneError(f"helm upgrade --install failed: {(done.stderr or done.stdout).strip()}")
    print(f"[devcluster] chart {CHART} installed as {CHART_RELEASE} in {CHART_NAMESPACE}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=default_state_dir(),
        help="directory holding certs, etcd data, logs and kubeconfig (default: %(default)s)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m schedexec_devcluster",
        description="Local Kubernetes control plane for tests and development.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[common], help="start (or reuse) the control plane")
    nodes = up.add_mutually_exclusive_group()
    nodes.add_argument("--node-agent", action="store_true", help="fast tier: the node agent instead of a real node")
    nodes.add_argument("--no-node", action="store_true", help="control plane only: pods are never run")
    up.add_argument(
        "--operator",
        action="store_true",
        help="also run the operator: the Helm chart on the real node, a local process with --node-agent",
    )
    up.add_argument("--audit", action="store_true", help="write an audit log to <state-dir>/logs/audit.log")
    commands.add_parser("down", parents=[common], help="stop the control plane")
    reaper = commands.add_parser("reap", parents=[common], help="(internal) stop the cluster once --owner exits")
    reaper.add_argument("--owner", type=int, required=True, help="process id whose exit stops the cluster")
    commands.add_parser("status", parents=[common], help="show processes and readiness")
    binaries = commands.add_parser("binaries", help="locate or build the binaries and print their paths")
    binaries.add_argument("--helm", action="store_true", help="also locate or build helm (chart checks)")
    binaries.add_argument(
        "--node", action="store_true", help="also the real node's (kubelet, containerd, ..., its image registry)"
    )
    commands.add_parser(
        "images",
        parents=[common],
        help="build (or reuse) the project's images offline, print their archives, and push them to the running "
        "local cluster's registry (if one runs for --state-dir)",
    )
    component = commands.add_parser(
        "push-component",
        parents=[common],
        help="build your component's directory (Dockerfile FROM ghcr.io/schedexec/runner:<version>) and push it to "
        "the local cluster's registry; prints the image reference for spec.component.image",
    )
    component.add_argument("directory", type=Path, help="the directory with your Dockerfile and component.py")
    component.add_argument("name", help="the image's name, e.g. my-component")
    publish = commands.add_parser(
        "release",
        parents=[common],
        help="push the runner, operator and example images (OCI labels) and the chart (oci://REGISTRY/charts) "
        f"for VERSION; credentials from ${CREDS_ENV_VAR}=user:password, the local registry's, or your logins",
    )
    publish.add_argument("--registry", required=True, help="where the images go, e.g. ghcr.io/schedexec")
    publish.add_argument("--version", required=True, help="the images' tag, the chart's version and appVersion")
    publish.add_argument("--ca-file", type=Path, help="a CA to trust for the registry (default: the system's)")
    return parser


def _up(args: argparse.Namespace) -> int:
    binaries = ensure_binaries()
    real_node = not (args.node_agent or args.no_node)
    node = node_setup() if real_node else None
    plane = ControlPlane(args.state_dir, binaries=binaries, audit=args.audit, node=node)
    if args.node_agent:
        plane.extra_processes.append(node_agent_process(plane))
    plane.up()
    if args.operator and real_node:
        install_chart(plane)
    elif args.operator:
        apply_crds(plane, binaries)
        plane.extra_processes.append(operator_process(plane))
        plane.up()
    print(f"export KUBECONFIG={shlex.quote(str(plane.kubeconfig_path))}")
    return 0


def _down(args: argparse.Namespace) -> int:
    ControlPlane(args.state_dir).down()
    return 0


def _reap(args: argparse.Namespace) -> int:
    reap(args.state_dir, args.owner)
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
    if args.node:
        for name, path in vars(ensure_node_binaries()).items():
            print(f"{name.replace('_', '-')}: {path}")
        print(f"registry: {ensure_registry()}")
    return 0


def _push_component(args: argparse.Namespace) -> int:
    try:
        print(push_component(args.directory, args.name, args.state_dir))
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _release(args: argparse.Namespace) -> int:
    try:
        references = release(
            REPO_ROOT,
            args.registry,
            args.version,
            ensure_helm(),
            creds=creds_from_environment(),
            ca_file=args.ca_file,
            state_dir=args.state_dir,
        )
    except (ReleaseError, ImageBuildError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print("\n".join(references))
    return 0


def _images(args: argparse.Namespace) -> int:
    for image in ensure_images(REPO_ROOT):
        print(f"{image.name}: {image.archive}")
    registry = RegistryLayout(args.state_dir)
    if not registry.credentials.is_file():
        print(f"[devcluster] no local registry for {args.state_dir}: nothing pushed", file=sys.stderr)
        return 0
    publish_images(load_credentials(args.state_dir)["push"].creds, registry.cert_dir)
    return 0


_COMMANDS = {
    "up": _up,
    "down": _down,
    "reap": _reap,
    "status": _status,
    "binaries": _binaries,
    "images": _images,
    "push-component": _push_component,
    "release": _release,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except BinariesUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ControlPlaneError, NodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
