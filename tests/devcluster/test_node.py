"""The real node's configuration documents and clean-up rules (pure; no root, no node needed)."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

import pytest

from schedexec_devcluster import node
from schedexec_devcluster.certs import NODE_IP, CertPaths

BINARIES = node.NodeBinaries(
    kubelet=Path("/bin/kubelet"),
    kube_scheduler=Path("/bin/kube-scheduler"),
    kube_proxy=Path("/bin/kube-proxy"),
    containerd=Path("/bin/containerd"),
    containerd_shim=Path("/bin/containerd-shim-runc-v2"),
    ctr=Path("/bin/ctr"),
    runc=Path("/usr/sbin/runc"),
    cri_reset=Path("/bin/cri-reset"),
    cni_bin_dir=Path("/usr/lib/cni"),
)
PORTS = node.NodePorts(kubelet=1, kubelet_healthz=2, scheduler=3, proxy_healthz=4, proxy_metrics=5)


@pytest.fixture
def layout(tmp_path: Path) -> node.NodeLayout:
    return node.NodeLayout(tmp_path / "cluster")


def test_containerd_keeps_everything_under_the_state_dir(layout: node.NodeLayout) -> None:
    config = tomllib.loads(node.containerd_config(layout, BINARIES))
    assert config["version"] == 3
    for path in (config["root"], config["state"]):
        assert Path(path).is_relative_to(layout.root)
    for path in (config["grpc"]["address"], config["ttrpc"]["address"]):
        assert Path(path).is_relative_to(layout.run_dir) and len(path) < 108
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True  # this VM refuses negative oom_score_adj
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"BinaryName": "/usr/sbin/runc", "SystemdCgroup": False, "Root": str(layout.runc_root)}
    assert runtime["netns_mounts_under_state_dir"] is True  # not in the host's shared /var/run/netns
    assert len(str(layout.shim_socket_dir)) <= 42  # containerd's limit for the shims' socket directory
    assert runtime["cni"]["conf_dir"] == str(layout.cni_conf_dir)
    assert config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == node.SANDBOX_IMAGE


def test_kubelet_cgroup_driver_matches_containerd(layout: node.NodeLayout, tmp_path: Path) -> None:
    kubelet = node.kubelet_configuration(layout, CertPaths(tmp_path / "certs"), PORTS)
    containerd = tomllib.loads(node.containerd_config(layout, BINARIES))
    systemd = containerd["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]["options"]
    assert (kubelet["cgroupDriver"] == "systemd") == systemd["SystemdCgroup"]
    assert kubelet["failCgroupV1"] is False and kubelet["failSwapOn"] is False
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{layout.containerd_socket}"


def test_kubelet_serves_logs_and_exec_only_to_authenticated_callers(layout: node.NodeLayout, tmp_path: Path) -> None:
    kubelet = node.kubelet_configuration(layout, CertPaths(tmp_path / "certs"), PORTS)
    assert kubelet["authentication"]["anonymous"] == {"enabled": False}
    assert kubelet["authentication"]["webhook"] == {"enabled": True}
    assert kubelet["authorization"] == {"mode": "Webhook"}
    assert kubelet["readOnlyPort"] == 0


def test_pod_network_keeps_to_this_machine(layout: node.NodeLayout) -> None:
    config = node.cni_config(layout)
    bridge = config["plugins"][0]
    assert bridge["bridge"] == node.BRIDGE and bridge["ipMasq"] is False
    (subnet,) = bridge["ipam"]["ranges"][0]
    assert ipaddress.ip_address(NODE_IP) in ipaddress.ip_network(subnet["subnet"])
    assert subnet["gateway"] == NODE_IP
    assert Path(bridge["ipam"]["dataDir"]).is_relative_to(layout.root)


def test_node_ports_only_on_the_node_address(layout: node.NodeLayout) -> None:
    proxy = node.kube_proxy_configuration(layout, PORTS)
    assert proxy["mode"] == "iptables"
    assert proxy["nodePortAddresses"] == [f"{NODE_IP}/32"]
    assert proxy["clusterCIDR"] == node.POD_CIDR


def test_apiserver_listens_where_pods_reach_it(tmp_path: Path) -> None:
    args = node.apiserver_node_args(CertPaths(tmp_path))
    assert f"--bind-address={NODE_IP}" in args and f"--advertise-address={NODE_IP}" in args
    assert "--endpoint-reconciler-type=lease" in args  # the `kubernetes` Service gets a real endpoint


MOUNTINFO = """\
22 1 0:21 / / rw - ext4 /dev/vda rw
90 22 0:50 / /state/node/containerd/root/snap/1/fs rw - overlay overlay rw
91 22 0:51 / /state/node/kubelet/pods/p/volumes/secret rw - tmpfs tmpfs rw
92 91 0:52 / /state/node/kubelet/pods/p/volumes/secret/deeper rw - tmpfs tmpfs rw
93 22 0:53 / /state/node-other rw - tmpfs tmpfs rw
94 22 0:54 / /with\\040space/node rw - tmpfs tmpfs rw
"""


def test_mounts_under_the_node_deepest_first() -> None:
    points = node.mounts_under(MOUNTINFO, Path("/state/node"))
    assert set(points) == {
        Path("/state/node/kubelet/pods/p/volumes/secret/deeper"),
        Path("/state/node/containerd/root/snap/1/fs"),
        Path("/state/node/kubelet/pods/p/volumes/secret"),
    }
    assert points[0] == Path("/state/node/kubelet/pods/p/volumes/secret/deeper")  # before the mount it is in
    assert [len(p.parts) for p in points] == sorted((len(p.parts) for p in points), reverse=True)
    assert node.mounts_under(MOUNTINFO, Path("/with space")) == [Path("/with space/node")]


def test_shims_are_ours_only_by_socket(layout: node.NodeLayout) -> None:
    ours = ["/cache/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", str(layout.containerd_socket)]
    theirs = ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", "/run/containerd/containerd.sock"]
    assert node.is_node_shim(ours, layout.containerd_socket)
    assert not node.is_node_shim(theirs, layout.containerd_socket)
    assert not node.is_node_shim(["/bin/sleep", str(layout.containerd_socket)], layout.containerd_socket)
    assert not node.is_node_shim([], layout.containerd_socket)


SAVED_FILTER = """\
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:OTHER - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -j OTHER
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -j DROP
-A OTHER -j ACCEPT
COMMIT
"""


def test_chain_removal_unhooks_then_flushes_then_deletes_only_ours() -> None:
    assert node.chain_removal(SAVED_FILTER) == [
        ["-D", "INPUT", "-j", "KUBE-FIREWALL"],
        ["-D", "OUTPUT", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-FIREWALL"],
        ["-F", "KUBE-FIREWALL"],
        ["-F", "KUBE-KUBELET-CANARY"],
        ["-X", "KUBE-FIREWALL"],
        ["-X", "KUBE-KUBELET-CANARY"],
    ]


def test_a_process_is_the_clusters_by_its_paths_not_by_a_prefix(layout: node.NodeLayout) -> None:
    kubelet = node.kubelet_args(Path("/cache/kubelet"), layout)
    assert node.mentions(kubelet, layout), "the kubelet names only the node's directory"
    etcd = ["/cache/etcd", f"--data-dir={layout.state_dir}/etcd"]
    assert node.mentions(etcd, layout)
    other = ["/cache/etcd", f"--data-dir={layout.state_dir}2/etcd"]
    assert not node.mentions(other, layout), "another cluster whose directory shares the prefix"
    assert not node.mentions([str(layout.state_dir)], layout), "argv[0] is the program, not an argument"
