"""A real Kubernetes node for the local cluster: containerd, kubelet, kube-proxy and kube-scheduler.

Why this exists: the node agent (nodeagent.py) runs pods as local processes,
which is fast but proves nothing about what a kubelet enforces: images,
non-root users, read-only root filesystems, the absence of a ServiceAccount
token, termination messages, waiting reasons, Services. This module makes
the local control plane a one-node cluster like kind's, without Docker: the
node's processes run on this machine, pods run in real containers (runc)
from images the node pulls from the cluster's own registry (registry.py:
TLS trusted through containerd's hosts.toml, credentials from the kubelet's
image credential provider); only the pod sandbox image is imported.

Everything the node owns lives under one directory per cluster or is named so it
can be found again, because ``clean_host`` must leave nothing behind (no
mount, iptables rule, network interface or cgroup), even after a test
session was killed:

    /var/lib/schedexec/<hash of state_dir>/   (linked as <state_dir>/kubelet-node; short for socket paths)
        containerd/{root,state,config.toml}
        certs.d/<registry>/hosts.toml        containerd's trust in the local registry
        credential-provider{.yaml,s/}        the kubelet's credentials for the project's repositories
        run/                                 containerd's and the shims' sockets
        cni/{net.d,ipam}                     bridge network, host-local IPAM
        kubelet/                             kubelet root dir (pod volumes)
        pod-logs/                            container logs
    bridge ``BRIDGE`` with NODE_IP         pods' gateway; the API server and the kubelet listen there
    iptables chains KUBE-*                 kube-proxy's (removed with ``kube-proxy --cleanup``)

Configuration documents are pure functions of the layout, tested in
tests/devcluster; the rest is process and host wiring.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from schedexec_devcluster.certs import NODE_IP, NODE_NAME, CertPaths
from schedexec_devcluster.registry import (
    CREDENTIAL_PROVIDER,
    REGISTRY_HOST,
    Credentials,
    credential_provider_config,
    credential_provider_response,
    hosts_toml,
)

POD_CIDR = "10.244.0.0/24"
"""Pod addresses; NODE_IP, its first address, is the bridge (gateway) address."""
BRIDGE = "sxbr0"
"""The pod bridge; also holds NODE_IP, so it exists before the API server binds there."""
CNI_NETWORK = "schedexec"
NODES_ROOT = Path("/var/lib/schedexec")
OWNER_FILE = NODES_ROOT / "owner"
"""The state directory of the cluster whose real node holds the machine's host-wide names (bridge, chains)."""
SANDBOX_IMAGE = "localhost/schedexec/pause:1.0"
"""The pod sandbox image, built offline (images.py) and pinned in containerd's config."""
CONTAINERD_NAMESPACE = "k8s.io"

CONTAINERD = "containerd"
KUBELET = "kubelet"
KUBE_SCHEDULER = "kube-scheduler"
KUBE_PROXY = "kube-proxy"
NODE_PROCESSES: tuple[str, ...] = (CONTAINERD, KUBELET, KUBE_SCHEDULER, KUBE_PROXY)

SYSCTLS: dict[str, str] = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",  # Service DNAT for traffic between pods on the bridge
}
_RUNTIME_TIMEOUT = 60.0
_POLL = 0.2


class NodeError(RuntimeError):
    """The node could not be prepared, started or cleaned."""


@dataclasses.dataclass(frozen=True)
class NodeBinaries:
    """Executables of the node beyond the control plane's."""

    kubelet: Path
    kube_scheduler: Path
    kube_proxy: Path
    containerd: Path
    containerd_shim: Path
    ctr: Path
    runc: Path
    cri_reset: Path
    cni_bin_dir: Path


@dataclasses.dataclass(frozen=True)
class NodePorts:
    kubelet: int
    kubelet_healthz: int
    scheduler: int
    proxy_healthz: int
    proxy_metrics: int


@dataclasses.dataclass(frozen=True)
class NodeLayout:
    """Where the node's files live inside the cluster's state directory."""

    state_dir: Path

    @property
    def root(self) -> Path:
        """Not under ``state_dir``: the kubelet and containerd create unix sockets below it, whose paths are
        limited to 108 bytes (containerd allows 42 for the shims' directory), too short for pytest's tmp.
        ``<state_dir>/kubelet-node`` links here."""
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return NODES_ROOT / digest

    @property
    def link(self) -> Path:
        return self.state_dir / "kubelet-node"  # not "node": the node agent's directory on the fast tier

    @property
    def containerd_dir(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.containerd_dir / "state"

    @property
    def runc_root(self) -> Path:
        return self.containerd_state / "runc"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def shim_socket_dir(self) -> Path:
        return self.run_dir / "s"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.containerd_dir / "config.toml"

    @property
    def registry_hosts_dir(self) -> Path:
        """containerd's ``config_path``: ``<host>/hosts.toml`` per registry (registry.py)."""
        return self.root / "certs.d"

    @property
    def credential_provider_config(self) -> Path:
        return self.root / "credential-provider.yaml"

    @property
    def credential_provider_bin_dir(self) -> Path:
        return self.root / "credential-providers"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def pod_logs_dir(self) -> Path:
        return self.root / "pod-logs"

    @property
    def proxy_config(self) -> Path:
        return self.root / "kube-proxy-config.yaml"

    @property
    def host_state(self) -> Path:
        """Host settings before ``prepare_host`` changed them, restored by ``clean_host``."""
        return self.root / "host-state.json"

    def kubeconfig(self, component: str) -> Path:
        return self.root / f"{component}.kubeconfig"


# --------------------------------------------------------------------------
# Configuration documents (pure)
# --------------------------------------------------------------------------


def containerd_config(layout: NodeLayout, binaries: NodeBinaries) -> str:
    """containerd 2.x configuration (version 3): its own root, state and sockets; CRI on runc and our CNI.

    ``restrict_oom_score_adj``: this VM refuses to lower a process's
    oom_score_adj, which runc otherwise does for the pod sandbox. Network
    namespaces, runc's state and the shims' sockets are kept out of the
    host's shared /run/containerd and /var/run/netns, so that cleaning up
    never has to guess which entries are ours.
    """
    directory = layout.containerd_dir
    return f"""\
version = 3
root = {json.dumps(str(directory / "root"))}
state = {json.dumps(str(layout.containerd_state))}
oom_score = 0

[grpc]
  address = {json.dumps(str(layout.containerd_socket))}

[ttrpc]
  address = {json.dumps(str(layout.containerd_socket) + ".ttrpc")}

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {json.dumps(str(directory / "opt"))}
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [plugins."io.containerd.shim.v1.manager"]
    socket_dir = {json.dumps(str(layout.shim_socket_dir))}
  [plugins."io.containerd.grpc.v1.cri"]
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = {json.dumps(SANDBOX_IMAGE)}
    [plugins."io.containerd.cri.v1.images".registry]
      config_path = {json.dumps(str(layout.registry_hosts_dir))}
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = {json.dumps(str(binaries.runc))}
          Root = {json.dumps(str(layout.runc_root))}
          SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = [{json.dumps(str(binaries.cni_bin_dir))}]
      conf_dir = {json.dumps(str(layout.cni_conf_dir))}
      max_conf_num = 1
"""


def cni_config(layout: NodeLayout) -> dict[str, Any]:
    """A bridge network on POD_CIDR with NODE_IP as gateway.

    No IP masquerading: pods reach the node (API server, Services) and each
    other, nothing beyond this machine.
    """
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_configuration(layout: NodeLayout, certs: CertPaths, ports: NodePorts) -> dict[str, Any]:
    """KubeletConfiguration for a cgroup v1 VM without swap accounting; webhook authn/authz for logs and exec."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this kernel mounts cgroup v1 hierarchies; kubelet >= 1.35 refuses them otherwise
        "failSwapOn": False,
        "cgroupDriver": "cgroupfs",  # as containerd's runc options (SystemdCgroup = false)
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": NODE_IP,
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": str(certs.kubelet_serving_cert),
        "tlsPrivateKeyFile": str(certs.kubelet_serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(certs.ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(layout.pod_logs_dir),
        "serializeImagePulls": False,
        "registerNode": True,
        # a shared development machine: never evict the tests' pods for disk pressure
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "resolvConf": "/etc/resolv.conf",
        "maxPods": 110,
        "runtimeRequestTimeout": "2m",
        "oomScoreAdj": 0,  # this VM refuses negative values
    }


def kube_proxy_configuration(layout: NodeLayout, ports: NodePorts) -> dict[str, Any]:
    """iptables mode; NodePorts only on the node's own bridge address."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig(KUBE_PROXY))},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{ports.proxy_healthz}",
        "metricsBindAddress": f"127.0.0.1:{ports.proxy_metrics}",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "conntrack": {"maxPerCore": 0},  # leave the host's conntrack table size alone
        "oomScoreAdj": 0,  # this VM refuses negative values
    }


def kubelet_args(kubelet: Path, layout: NodeLayout, registry: bool = True) -> list[str]:
    """``registry``: the node pulls from the local registry, with its credential provider (write_registry_access)."""
    provider = [
        f"--image-credential-provider-config={layout.credential_provider_config}",
        f"--image-credential-provider-bin-dir={layout.credential_provider_bin_dir}",
    ]
    return [
        str(kubelet),
        f"--config={layout.kubelet_config}",
        f"--kubeconfig={layout.kubeconfig(KUBELET)}",
        f"--root-dir={layout.kubelet_dir}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        *(provider if registry else []),
        "--v=1",
    ]


def scheduler_args(scheduler: Path, layout: NodeLayout, ports: NodePorts) -> list[str]:
    return [
        str(scheduler),
        f"--kubeconfig={layout.kubeconfig(KUBE_SCHEDULER)}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
    ]


def proxy_args(proxy: Path, layout: NodeLayout) -> list[str]:
    return [str(proxy), f"--config={layout.proxy_config}"]


def containerd_args(containerd: Path, layout: NodeLayout) -> list[str]:
    return [str(containerd), f"--config={layout.containerd_config}"]


def apiserver_node_args(certs: CertPaths) -> list[str]:
    """kube-apiserver flags for a cluster with a real node.

    It listens on NODE_IP so pods reach it through the ``kubernetes``
    Service (which now gets a real endpoint), and reaches the kubelet by
    that address with a client certificate (logs, exec).
    """
    return [
        f"--bind-address={NODE_IP}",
        f"--advertise-address={NODE_IP}",
        "--endpoint-reconciler-type=lease",
        f"--kubelet-client-certificate={certs.apiserver_kubelet_client_cert}",
        f"--kubelet-client-key={certs.apiserver_kubelet_client_key}",
        f"--kubelet-certificate-authority={certs.ca_cert}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


NODE_CONTROLLERS: tuple[str, ...] = (
    "deployment-controller",  # the chart's Deployment
    "replicaset-controller",
    "endpointslice-controller",  # Services (kube-proxy follows EndpointSlices)
    "endpoints-controller",
    "node-lifecycle-controller",  # lifts the node's not-ready taint once it is Ready
    "pod-garbage-collector-controller",
    "taint-eviction-controller",
)
"""Controllers a cluster with a real node needs beyond the control plane's."""


def mounts_under(mountinfo: str, root: Path) -> list[Path]:
    """Mount points at or below ``root``, deepest first (the order to unmount them)."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].encode().decode("unicode_escape")
            if point == str(root) or point.startswith(prefix):
                points.append(Path(point))
    return sorted(set(points), key=lambda p: (len(p.parts), str(p)), reverse=True)


def is_node_shim(cmdline: Sequence[str], socket: Path) -> bool:
    """Whether a process is a containerd shim serving our node's containerd (found by its socket)."""
    return bool(cmdline) and Path(cmdline[0]).name.startswith("containerd-shim") and str(socket) in cmdline


# --------------------------------------------------------------------------
# Host wiring
# --------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


def _run(command: Sequence[str], check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a host command; with ``check=False`` nothing raises, not even a timeout (cleanup must go on)."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        if check:
            raise NodeError(f"`{' '.join(command)}` did not finish within {timeout:.0f}s") from expired
        return subprocess.CompletedProcess(list(command), -1, "", f"timed out after {timeout:.0f}s")
    if check and done.returncode != 0:
        raise NodeError(f"`{' '.join(command)}` failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def check_host() -> None:
    """Refuse early, with what is missing, rather than fail half-way through the start."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the real node needs root (containerd, kubelet, network setup); run as root")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is not installed (apt-get install iproute2 iptables)")
    if not _sysctl_path("net.bridge.bridge-nf-call-iptables").exists():
        problems.append("the br_netfilter kernel module is not loaded (modprobe br_netfilter)")
    if problems:
        raise NodeError("cannot start a real node here:\n  - " + "\n  - ".join(problems))


def owner() -> Path | None:
    """The state directory of the cluster whose real node holds this machine's bridge, if any."""
    try:
        return Path(OWNER_FILE.read_text().strip())
    except OSError:
        return None


def claim_host(layout: NodeLayout) -> None:
    """Become the machine's one real node, or say which cluster is (bridge, address and chains are host-wide)."""
    current = owner()
    if current is not None and current != layout.state_dir and NodeLayout(current).root.exists():
        raise NodeError(
            f"a real node is already running on this machine for {current} (one per machine: its bridge and "
            f"address are fixed); stop it first: python -m schedexec_devcluster down --state-dir {current}"
        )
    _write(OWNER_FILE, f"{layout.state_dir}\n")


def prepare_host(layout: NodeLayout, certs: CertPaths, binaries: NodeBinaries, ports: NodePorts) -> None:
    """Write the node's configuration, set the sysctls it needs and create the pod bridge with NODE_IP."""
    check_host()
    claim_host(layout)
    for directory in (
        layout.containerd_dir,
        layout.run_dir,
        layout.cni_conf_dir,
        layout.cni_ipam_dir,
        layout.pod_logs_dir,
    ):
        directory.mkdir(parents=True, exist_ok=True)
    if not layout.link.is_symlink():
        layout.link.symlink_to(layout.root)
    if not layout.host_state.exists():
        previous = {name: _sysctl_path(name).read_text().strip() for name in SYSCTLS}
        _write(layout.host_state, json.dumps({"sysctls": previous}))
    for name, value in SYSCTLS.items():
        _sysctl_path(name).write_text(value)
    _write(layout.containerd_config, containerd_config(layout, binaries))
    _write(layout.cni_conf_dir / f"10-{CNI_NETWORK}.conflist", json.dumps(cni_config(layout), indent=2))
    _write(layout.kubelet_config, yaml.safe_dump(kubelet_configuration(layout, certs, ports)))
    _write(layout.proxy_config, yaml.safe_dump(kube_proxy_configuration(layout, ports)))
    if not _link_exists(BRIDGE):
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    prefix = ipaddress.ip_network(POD_CIDR).prefixlen
    addresses = _run(["ip", "-o", "addr", "show", "dev", BRIDGE]).stdout
    if f" {NODE_IP}/" not in addresses:
        _run(["ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def wait_for_runtime(binaries: NodeBinaries, layout: NodeLayout, alive: Any) -> None:
    """Until containerd answers on its socket; ``alive()`` raises if the process died meanwhile."""
    deadline = time.monotonic() + _RUNTIME_TIMEOUT
    while True:
        alive()
        if layout.containerd_socket.exists():
            done = _run(ctr(binaries, layout, "version"), check=False, timeout=10)
            if done.returncode == 0:
                return
        if time.monotonic() > deadline:
            raise NodeError(f"containerd did not answer on {layout.containerd_socket} within {_RUNTIME_TIMEOUT:.0f}s")
        time.sleep(_POLL)


def ctr(binaries: NodeBinaries, layout: NodeLayout, *args: str) -> list[str]:
    return [
        str(binaries.ctr),
        "--address",
        str(layout.containerd_socket),
        "--namespace",
        CONTAINERD_NAMESPACE,
        *args,
    ]


def write_registry_access(layout: NodeLayout, ca_cert: Path, pull: Credentials) -> None:
    """containerd's trust in the local registry (hosts.toml with the CA) and the kubelet's credential provider.

    The provider is a plugin executable answering with the pull user's credentials for the project's
    repositories only (registry.credential_provider_response); the response file is root's alone (0600).
    """
    _write(layout.registry_hosts_dir / REGISTRY_HOST / "hosts.toml", hosts_toml(ca_cert))
    _write(layout.credential_provider_config, yaml.safe_dump(credential_provider_config()))
    response = layout.credential_provider_bin_dir / "response.json"
    _write(response, json.dumps(credential_provider_response(pull)))
    response.chmod(0o600)
    plugin = layout.credential_provider_bin_dir / CREDENTIAL_PROVIDER
    # The kubelet's request (stdin) names the image; the answer is the same for every image it matched.
    _write(plugin, f"#!/bin/sh\ncat >/dev/null\nexec cat {shlex.quote(str(response))}\n")
    plugin.chmod(0o700)


def import_images(binaries: NodeBinaries, layout: NodeLayout, archives: Iterable[Path]) -> None:
    """Import OCI/Docker archives into the node's containerd (what a registry pull would have done)."""
    for archive in archives:
        _run(ctr(binaries, layout, "images", "import", "--no-unpack=false", str(archive)), timeout=300)


def remove_pods(binaries: NodeBinaries, layout: NodeLayout) -> None:
    """Stop and remove every pod sandbox through CRI, so the CNI plugin tears down its veths and rules.

    Run after the kubelet stopped (it would restart them) and before
    containerd stops (it is the one that calls the CNI plugin).
    """
    if not layout.containerd_socket.exists():
        return
    done = _run([str(binaries.cri_reset), f"unix://{layout.containerd_socket}"], check=False, timeout=240)
    _log((done.stdout + done.stderr).strip())


def _processes() -> Iterable[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                raw = (entry / "cmdline").read_bytes()
                yield int(entry.name), [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def kill_containers(binaries_runc: Path, layout: NodeLayout) -> None:
    """Containers whose containerd is gone (killed): end them through runc itself, by runc's own state."""
    root = layout.runc_root / CONTAINERD_NAMESPACE
    if not root.is_dir() or not binaries_runc.exists():
        return
    listed = _run([str(binaries_runc), "--root", str(root), "list", "-q"], check=False)
    for container in listed.stdout.split():
        _run([str(binaries_runc), "--root", str(root), "kill", container, "KILL"], check=False)
        _run([str(binaries_runc), "--root", str(root), "delete", "--force", container], check=False)


def kill_shims(layout: NodeLayout) -> None:
    """containerd's shims outlive containerd by design (they re-parent to init); end ours."""
    shims = [pid for pid, cmdline in _processes() if is_node_shim(cmdline, layout.containerd_socket)]
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount_all(root: Path) -> None:
    for point in mounts_under(Path("/proc/self/mountinfo").read_text(), root):
        done = _run(["umount", str(point)], check=False)
        if done.returncode != 0:
            _run(["umount", "--lazy", str(point)], check=False)


CHAIN_PREFIXES = ("KUBE-", "CNI-")
"""iptables chains of the kubelet (KUBE-FIREWALL, KUBE-KUBELET-CANARY), kube-proxy and the CNI plugins."""


def chain_removal(saved: str, prefixes: tuple[str, ...] = CHAIN_PREFIXES) -> list[list[str]]:
    """``iptables`` arguments (after ``-t TABLE``) that remove our chains from one table's ``iptables-save``.

    First the rules of other chains that jump into ours (built-in chains
    such as INPUT), then our chains' rules (flush), then the chains.
    """
    ours = [
        line[1:].split()[0] for line in saved.splitlines() if line.startswith(":") and line[1:].startswith(prefixes)
    ]
    commands: list[list[str]] = []
    for line in saved.splitlines():
        if not line.startswith("-A "):
            continue
        rule = shlex.split(line)
        target = rule[rule.index("-j") + 1] if "-j" in rule else ""
        if rule[1] not in ours and target in ours:
            commands.append(["-D", *rule[1:]])
    commands += [["-F", chain] for chain in ours]
    commands += [["-X", chain] for chain in ours]
    return commands


def _remove_chains() -> None:
    for save, tool in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        if shutil.which(save) is None:
            continue
        for table in ("filter", "nat", "mangle"):
            saved = _run([save, "-t", table], check=False).stdout
            for args in chain_removal(saved):
                _run([tool, "-t", table, *args], check=False)


def _cgroup_roots() -> list[Path]:
    """Where cgroup trees start: every v1 hierarchy (and v2 mounted beside them), or the unified v2 root."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    return [h for h in base.iterdir() if h.is_dir()] if base.is_dir() else []


def _remove_cgroups() -> None:
    """The kubelet's pod cgroups (cgroupfs driver: ``/kubepods`` in every hierarchy), leaves first."""
    for hierarchy in _cgroup_roots():
        pods = hierarchy / "kubepods"
        if not pods.is_dir():
            continue
        for directory in sorted(pods.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if directory.is_dir():
                with contextlib.suppress(OSError):
                    directory.rmdir()
        with contextlib.suppress(OSError):
            pods.rmdir()


def clean_host(layout: NodeLayout, kube_proxy: Path | None, runc: Path | None) -> None:
    """Leave nothing of the node on the host: containers, shims, mounts, kube-proxy's rules, the bridge, cgroups.

    Idempotent; safe when the node never started or was half cleaned. After
    a clean stop (pods removed through CRI first) most steps find nothing.
    Only a state directory that prepared a node cleans (a cluster without a
    real node, the fast tier, has no node directory), and what has
    host-wide names (the bridge, iptables chains, the kubepods cgroups,
    sysctls) only while this cluster is the node's recorded owner.
    """
    if not layout.root.exists():
        return
    if runc is not None:
        kill_containers(runc, layout)
    kill_shims(layout)
    _unmount_all(layout.root)
    if owner() in (None, layout.state_dir):
        if kube_proxy is not None and shutil.which("iptables") is not None:
            _run([str(kube_proxy), "--cleanup"], check=False, timeout=120)
        _remove_chains()  # what kube-proxy does not clean: the kubelet's chains, the CNI plugins' after a crash
        if _link_exists(BRIDGE):
            _run(["ip", "link", "delete", BRIDGE], check=False)
        _remove_cgroups()
        if layout.host_state.exists():
            with contextlib.suppress(OSError, ValueError, KeyError):
                for name, value in json.loads(layout.host_state.read_text())["sysctls"].items():
                    _sysctl_path(name).write_text(value)
        OWNER_FILE.unlink(missing_ok=True)
    # images, container filesystems, IP allocations: a next start imports the images again (seconds)
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.link.unlink(missing_ok=True)


def leftovers(layout: NodeLayout) -> list[str]:
    """What of a node is still on the host, one line each; empty once ``clean_host`` did its work.

    Read from outside the processes: /proc, the mount table, the links,
    iptables and the cgroup hierarchies. Tests assert it is empty after a
    ``down`` and after a killed test session.
    """
    found = [
        f"process {pid}: {' '.join(cmd)[:200]}"
        for pid, cmd in _processes()
        if mentions(cmd, layout) or _in_pod_cgroup(pid)
    ]
    found += [f"mount {p}" for p in mounts_under(Path("/proc/self/mountinfo").read_text(), layout.root)]
    if _link_exists(BRIDGE):
        found.append(f"network interface {BRIDGE}")
    for save in ("iptables-save", "ip6tables-save"):
        if shutil.which(save) is not None:
            for table in ("filter", "nat", "mangle"):
                rules = _run([save, "-t", table], check=False).stdout.splitlines()
                found += [f"{save} {table}: {r}" for r in rules if r.startswith((":KUBE-", ":CNI-"))]
    found += [f"cgroup {root / 'kubepods'}" for root in _cgroup_roots() if (root / "kubepods").is_dir()]
    if layout.root.exists():
        found.append(f"directory {layout.root}")
    return found


def mentions(cmdline: Sequence[str], layout: NodeLayout) -> bool:
    """A process of this cluster: started with a path in its state dir or the node's directory, or a shim of it."""
    roots = (str(layout.state_dir), str(layout.root))
    return is_node_shim(cmdline, layout.containerd_socket) or any(
        _names_path_under(part, root) for part in cmdline[1:] for root in roots
    )


def _names_path_under(argument: str, root: str) -> bool:
    """``--flag=/root/x``, ``/root`` or ``/root/x``: a path at or below ``root`` (not ``/root2``)."""
    return any(word == root or word.startswith(root + "/") for word in (argument, argument.partition("=")[2]))


def _in_pod_cgroup(pid: int) -> bool:
    """A container's process: the kubelet's cgroupfs driver puts them under ``/kubepods``."""
    try:
        return "/kubepods" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False
