"""Run a real, minimal Kubernetes control plane as local processes.

Why this exists: schedexec's behaviour depends on real API-server semantics
(RBAC, admission, ServiceAccount tokens, audit) and on the controllers that
act on its objects (Job creates Pods, garbage collection follows
ownerReferences, namespaces get their ``default`` ServiceAccount). A fake
client cannot prove any of that, and kind/minikube need a container runtime.
So this module starts etcd, kube-apiserver and a kube-controller-manager
restricted to the controllers schedexec needs, all bound to 127.0.0.1 on free
ports, and manages them as ordinary processes whose state lives in one
directory::

    <state_dir>/certs/        PKI (see certs.py), reused across restarts
    <state_dir>/etcd/         etcd data, reused across restarts
    <state_dir>/logs/<name>.log   one log per process (appended per start)
    <state_dir>/pids.json     processes of the running instance
    <state_dir>/kubeconfig    admin kubeconfig with embedded credentials

Pods run on one of two nodes. With ``node=NodeSetup(...)`` the cluster gets a
real node (node.py: containerd, kubelet, kube-proxy, kube-scheduler; the API
server then listens on the node's bridge address instead of 127.0.0.1, so
pods reach it). Without it, Pods are created but never run unless a caller
registers an extra process (the schedexec node agent) that plays that role.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from schedexec_devcluster.binaries import (
    ETCD,
    KUBE_APISERVER,
    KUBE_CONTROLLER_MANAGER,
    Binaries,
    find_binaries,
    find_node_binaries,
)
from schedexec_devcluster.certs import ADMIN_USER, NODE_IP, NODE_NAME, CertPaths, ensure_certs
from schedexec_devcluster.node import (
    CONTAINERD,
    KUBE_PROXY,
    KUBE_SCHEDULER,
    KUBELET,
    NODE_CONTROLLERS,
    NodeBinaries,
    NodeLayout,
    NodePorts,
    apiserver_node_args,
    clean_host,
    containerd_args,
    import_images,
    kubelet_args,
    prepare_host,
    proxy_args,
    remove_pods,
    scheduler_args,
    wait_for_runtime,
    write_registry_access,
)
from schedexec_devcluster.registry import (
    REGISTRY_HOST,
    RegistryLayout,
    ensure_credentials,
    htpasswd,
    registry_config,
)

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
OPERATOR_USER = "schedexec-operator"

#: kube-controller-manager controllers schedexec relies on (names as in v1.36
#: ``--controllers``). root-ca-certificate-publisher publishes the
#: ``kube-root-ca.crt`` ConfigMap every projected ServiceAccount token volume
#: references. Deliberately absent: cronjob (schedexec schedules itself) and
#: pod-garbage-collector (it would delete Pods bound to Nodes it cannot see).
CONTROLLERS: tuple[str, ...] = (
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    # folds ClusterRoles labelled aggregate-to-edit/-view into edit/view (the chart's user roles)
    "clusterrole-aggregation-controller",
)

CORE_PROCESSES: tuple[str, ...] = (ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER)
REGISTRY = "registry"
"""The real node's image registry process (registry.py)."""
REGISTRY_ENVIRONMENT = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
"""distribution v3 exports OpenTelemetry traces to localhost:4318 unless told not to: nothing listens there."""
STOP_GRACE_SECONDS = 10.0
DEFAULT_STARTUP_TIMEOUT = 120.0
NODE_READY_TIMEOUT = 120.0
REAPER = "reaper"
_POLL_INTERVAL = 0.2
_EXTRA_PROCESS_SETTLE_SECONDS = 0.5
_LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """Startup or readiness failure; ``component`` names the culprit if known."""

    def __init__(self, message: str, component: str | None = None) -> None:
        super().__init__(message)
        self.component = component


# --------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where everything lives inside the state directory."""

    state_dir: Path

    @property
    def certs(self) -> CertPaths:
        return CertPaths(self.state_dir / "certs")

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def etcd_data_dir(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.state_dir / "controller-manager.kubeconfig"

    @property
    def audit_policy(self) -> Path:
        return self.state_dir / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.logs_dir / "audit.log"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids.json"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"


@dataclasses.dataclass(frozen=True)
class NodeSetup:
    """A real node for the cluster: its binaries, the image registry it pulls from, and what to put there.

    ``images`` are archives imported into containerd (only the pod sandbox image: the kubelet needs it
    before any pull); ``registry`` is distribution's binary (None: no registry); ``publish`` pushes the
    project's images once the registry serves, given the push user's ``user:password`` and a directory
    holding the CA (registry.RegistryLayout.cert_dir).
    """

    binaries: NodeBinaries
    images: tuple[Path, ...] = ()
    registry: Path | None = None
    publish: Callable[[str, Path], None] | None = None


@dataclasses.dataclass(frozen=True)
class ExtraProcess:
    """A caller-supplied long-running process started once the API is ready.

    It runs with ``KUBECONFIG`` pointing at the admin kubeconfig, is stopped
    by ``down()`` and is recorded in pids.json like the core processes.
    """

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ProcessRecord:
    """One started process as persisted in pids.json."""

    name: str
    pid: int
    command: tuple[str, ...]
    log: str
    start_time: str | None  # /proc starttime, guards against PID reuse

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "command": list(self.command)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            command=tuple(str(c) for c in data["command"]),
            log=str(data["log"]),
            start_time=None if data.get("start_time") is None else str(data["start_time"]),
        )


@dataclasses.dataclass(frozen=True)
class RunState:
    """Contents of pids.json."""

    server_url: str
    etcd_url: str
    processes: tuple[ProcessRecord, ...] = ()

    def with_process(self, record: ProcessRecord) -> RunState:
        """Add ``record``, or replace the one of its name in place (a restart keeps the stop order)."""
        if any(p.name == record.name for p in self.processes):
            return dataclasses.replace(
                self, processes=tuple(record if p.name == record.name else p for p in self.processes)
            )
        return dataclasses.replace(self, processes=(*self.processes, record))

    def to_json(self) -> dict[str, Any]:
        return {
            "server_url": self.server_url,
            "etcd_url": self.etcd_url,
            "processes": [p.to_json() for p in self.processes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunState:
        return cls(
            server_url=str(data["server_url"]),
            etcd_url=str(data["etcd_url"]),
            processes=tuple(ProcessRecord.from_json(p) for p in data["processes"]),
        )


@dataclasses.dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int
    alive: bool
    log: Path


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    running: bool  # every recorded process is alive
    ready: bool  # kube-apiserver /readyz answered ok
    server_url: str | None
    kubeconfig: Path
    processes: tuple[ProcessStatus, ...]


# --------------------------------------------------------------------------
# Pure helpers: flags and documents
# --------------------------------------------------------------------------


def _loopback(scheme: str, port: int) -> str:
    return f"{scheme}://127.0.0.1:{port}"


def etcd_args(etcd: Path, layout: Layout, ports: Ports) -> list[str]:
    client = _loopback("http", ports.etcd_client)
    peer = _loopback("http", ports.etcd_peer)
    return [
        str(etcd),
        "--name=default",
        f"--data-dir={layout.etcd_data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--unsafe-no-fsync",
    ]


def apiserver_args(apiserver: Path, layout: Layout, ports: Ports, audit: bool) -> list[str]:
    certs = layout.certs
    args = [
        str(apiserver),
        f"--etcd-servers={_loopback('http', ports.etcd_client)}",
        f"--secure-port={ports.apiserver}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--tls-cert-file={certs.apiserver_cert}",
        f"--tls-private-key-file={certs.apiserver_key}",
        f"--client-ca-file={certs.ca_cert}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={certs.sa_pub}",
        f"--service-account-signing-key-file={certs.sa_key}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--allow-privileged=true",
        # The default reconciler keeps trying to publish 127.0.0.1 as the
        # endpoint of the `kubernetes` Service, which validation rejects.
        "--endpoint-reconciler-type=none",
    ]
    if audit:
        args += [
            f"--audit-policy-file={layout.audit_policy}",
            f"--audit-log-path={layout.audit_log}",
        ]
    return args


def controller_manager_args(
    controller_manager: Path, layout: Layout, ports: Ports, controllers: Sequence[str] = CONTROLLERS
) -> list[str]:
    certs = layout.certs
    kubeconfig = layout.controller_manager_kubeconfig
    return [
        str(controller_manager),
        # No --authentication/authorization-kubeconfig: its own secure port
        # only needs to serve /healthz, which is always allowed.
        f"--kubeconfig={kubeconfig}",
        f"--controllers={','.join(controllers)}",
        f"--service-account-private-key-file={certs.sa_key}",
        f"--root-ca-file={certs.ca_cert}",
        "--leader-elect=false",
        "--use-service-account-credentials=false",
        # client-go's default 20 QPS would make the Job controller, not schedexec, the bottleneck of every test
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
    ]


def audit_policy() -> dict[str, Any]:
    """Metadata-level audit of what the operator and workloads do, nothing else.

    Audit rules cannot match user-name prefixes; every
    ``system:serviceaccount:*`` user is in the ``system:serviceaccounts``
    group, which is matched instead.
    """
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "Metadata", "users": [OPERATOR_USER]},
            {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
            {"level": "None"},
        ],
    }


def kubeconfig_document(
    server_url: str, certs: CertPaths, user: str = ADMIN_USER, client: tuple[Path, Path] | None = None
) -> dict[str, Any]:
    """A kubeconfig with the CA and client credentials (admin's unless ``client`` names a cert and key) embedded."""
    cert, key = client if client is not None else (certs.admin_cert, certs.admin_key)

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode("ascii")

    name = "schedexec-dev"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server_url, "certificate-authority-data": b64(certs.ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(cert),
                    "client-key-data": b64(key),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
    }


def pick_free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all sockets held open until all are chosen)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def _write_atomic(path: Path, content: str, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(content)
    staged.chmod(mode)
    os.replace(staged, path)


def _log(message: str) -> None:
    print(f"[devcluster] {message}", file=sys.stderr, flush=True)


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# Process inspection (Linux /proc when available, signals otherwise)
# --------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int, str] | None:
    """(state, process group, start time) of ``pid`` from /proc, if readable."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[2]), fields[19]


def _start_time(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[2]


def _pid_reused(record: ProcessRecord) -> bool:
    """True if ``record.pid`` now belongs to a different process (Linux only)."""
    stat = _proc_stat(record.pid)
    return stat is not None and record.start_time is not None and stat[2] != record.start_time


def _is_same_process(record: ProcessRecord) -> bool:
    """True if the process we started is still running (zombies count as dead)."""
    stat = _proc_stat(record.pid)
    if stat is not None:
        return stat[0] != "Z" and not _pid_reused(record)
    if Path("/proc/self").exists():
        return False  # procfs works and the PID is gone
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group ``pgid``."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if entry.name.isdigit():
                stat = _proc_stat(int(entry.name))
                if stat is not None and stat[1] == pgid and stat[0] != "Z":
                    return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(record: ProcessRecord, sig: signal.Signals) -> None:
    """Signal the process group we started, never a PID reused by someone else.

    While any member keeps the group alive its PGID cannot be reused, so
    signalling the group after the leader exited only reaches our leftovers.
    """
    if _pid_reused(record):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, sig)


# --------------------------------------------------------------------------
# HTTP probes
# --------------------------------------------------------------------------


def _client_tls(certs: CertPaths) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))
    return context


def _node_ready(url: str, context: ssl.SSLContext) -> bool:
    """Whether the Node at ``url`` reports the Ready condition True."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            node = json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _registry_answers(host: str, context: ssl.SSLContext) -> bool:
    """``GET /v2/`` over TLS answers 401 (authentication required): the registry serves."""
    try:
        with urllib.request.urlopen(f"https://{host}/v2/", timeout=2, context=context):
            return False  # 200 would mean no authentication: not ours
    except urllib.error.HTTPError as error:
        return error.code == 401
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --------------------------------------------------------------------------
# The control plane
# --------------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager (+ extras) in ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        binaries: Binaries | None = None,
        audit: bool = False,
        extra_processes: Sequence[ExtraProcess] = (),
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        node: NodeSetup | None = None,
        owner: int | None = None,
    ) -> None:
        self.layout = Layout(Path(state_dir).resolve())
        self.node = node
        self.owner = owner
        self.node_layout = NodeLayout(self.layout.state_dir)
        self._binaries = binaries
        self.audit = audit
        self.extra_processes: list[ExtraProcess] = list(extra_processes)
        self.startup_timeout = startup_timeout
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # ---- public API -------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.layout.state_dir

    @property
    def kubeconfig_path(self) -> Path:
        return self.layout.kubeconfig

    @property
    def server_url(self) -> str:
        state = self._load_state()
        if state is None:
            raise ControlPlaneError(f"control plane in {self.state_dir} is not running")
        return state.server_url

    def add_process(self, name: str, command: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Register an extra process, started by the next ``up()``."""
        if name in CORE_PROCESSES or any(p.name == name for p in self.extra_processes):
            raise ValueError(f"process name {name!r} is already in use")
        self.extra_processes.append(ExtraProcess(name, tuple(command), dict(env or {})))

    def up(self) -> None:
        """Start everything and wait for readiness; no-op if already running."""
        state = self._load_state()
        if state is not None and self._core_running(state) and self._apiserver_ready(state.server_url):
            _log(f"already running at {state.server_url}")
            self._run_guarded(functools.partial(self._start_extras, state))
            return
        if state is not None:
            _log("found a stale or partially running instance; stopping it first")
            self.down()
        started = time.monotonic()
        self._run_guarded(self._start_all)
        _log(f"control plane ready in {time.monotonic() - started:.1f}s")
        self._print_summary()

    def down(self) -> None:
        """Stop every recorded process group, newest first; idempotent.

        Sequential on purpose: kube-apiserver's graceful shutdown still talks
        to etcd, so stopping etcd concurrently makes it hang until SIGKILL.
        """
        state = self._load_state()
        records = list(reversed(state.processes)) if state is not None else []
        node_binaries = self.node.binaries if self.node is not None else find_node_binaries()
        # The reaper goes last: if this down() is itself cut short (the owner killed mid-teardown), it finishes it.
        reapers = [r for r in records if r.name == REAPER]
        for record in (r for r in records if r.name != REAPER):
            if record.name == CONTAINERD and node_binaries is not None:
                _best_effort("removing the pods", functools.partial(remove_pods, node_binaries, self.node_layout))
            _best_effort(f"stopping {record.name}", functools.partial(self._stop, record))
        runc = node_binaries.runc if node_binaries else None
        _best_effort("cleaning the host", lambda: clean_host(self.node_layout, self._kube_proxy(records), runc))
        for record in reapers:
            if record.pid != os.getpid():  # else: this is the reaper, tearing down after its owner died
                self._stop(record)
        self._children.clear()
        self.layout.pids_file.unlink(missing_ok=True)
        if records:
            _log(f"stopped {', '.join(r.name for r in records)}")

    def stop_process(self, name: str) -> None:
        """Stop one process (fault tests: an API server or controller outage); `start_process` brings it back."""
        self._stop(self._record(name)[1])

    def start_process(self, name: str) -> None:
        """Start a stopped process again with its recorded command: same ports, same data, same kubeconfig."""
        state, record = self._record(name)
        if self._alive(record):
            return
        extra = next((e for e in self.extra_processes if e.name == name), None)
        env = None if extra is None else {"KUBECONFIG": str(self.kubeconfig_path), **extra.env}
        state = self._spawn(state, name, list(record.command), env)
        if name == KUBE_APISERVER:
            tls = _client_tls(self.layout.certs)
            self._await(name, "kube-apiserver /readyz", lambda: _http_ok(f"{state.server_url}/readyz", tls))
        else:
            self._await_settled(name)

    def _start_reaper(self, state: RunState, owner: int) -> RunState:
        """A watcher that runs ``down()`` when ``owner`` exits, however it exits.

        Every process here runs in a session of its own (so a Ctrl-C in the
        terminal reaches the test runner, which stops them in order), so none
        dies with its parent: a test session killed outright (a CI timeout, a
        second Ctrl-C, SIGKILL) would leave them all running, with the node's
        mounts, bridge and iptables rules. The reaper is the one process that
        outlives its owner on purpose, to clean up after it.
        """
        command = [sys.executable, "-m", "schedexec_devcluster", "reap", "--state-dir", str(self.state_dir)]
        return self._spawn(state, REAPER, [*command, "--owner", str(owner)])

    @staticmethod
    def _kube_proxy(records: Sequence[ProcessRecord]) -> Path | None:
        """The kube-proxy that ran (its ``--cleanup`` removes its iptables rules), from the records."""
        return next((Path(r.command[0]) for r in records if r.name == KUBE_PROXY), None)

    def _record(self, name: str) -> tuple[RunState, ProcessRecord]:
        state = self._load_state()
        record = None if state is None else next((r for r in state.processes if r.name == name), None)
        if state is None or record is None:
            raise ControlPlaneError(f"no process {name!r} in {self.layout.pids_file}", name)
        return state, record

    def status(self) -> ClusterStatus:
        state = self._load_state()
        if state is None:
            return ClusterStatus(False, False, None, self.kubeconfig_path, ())
        processes = tuple(ProcessStatus(r.name, r.pid, self._alive(r), Path(r.log)) for r in state.processes)
        running = all(p.alive for p in processes)
        ready = running and self._apiserver_ready(state.server_url)
        return ClusterStatus(running, ready, state.server_url, self.kubeconfig_path, processes)

    # ---- startup ------------------------------------------------------------

    def _run_guarded(self, action: Callable[[], None]) -> None:
        """Run a startup step; on failure show the culprit's log and stop everything."""
        try:
            action()
        except BaseException as error:
            component = error.component if isinstance(error, ControlPlaneError) else None
            if component is not None:
                log = self.layout.log_file(component)
                tail = log_tail(log)
                _log(f"{component} failed: {error}\n--- last lines of {log} ---\n{tail}\n---")
            else:
                _log(f"startup failed: {error!r}; stopping everything")
            self.down()
            raise

    def _start_all(self) -> None:
        binaries = self._binaries if self._binaries is not None else find_binaries()
        layout = self.layout
        layout.logs_dir.mkdir(parents=True, exist_ok=True)
        ensure_certs(layout.certs.directory)
        ports = Ports(*pick_free_ports(4))
        node_ports = NodePorts(*pick_free_ports(5))
        host = "127.0.0.1" if self.node is None else NODE_IP
        state = RunState(server_url=f"https://{host}:{ports.apiserver}", etcd_url=_loopback("http", ports.etcd_client))
        if self.owner is not None:  # first, so that a start cut short is cleaned up too
            state = self._start_reaper(state, self.owner)
        if self.node is not None:
            prepare_host(self.node_layout, layout.certs, self.node.binaries, node_ports)
        self._write_config_files(state.server_url)
        tls = _client_tls(layout.certs)

        state = self._spawn(state, ETCD, etcd_args(binaries.require(ETCD), layout, ports))
        self._await(ETCD, "etcd /health", lambda: _http_ok(f"{state.etcd_url}/health"))

        apiserver = apiserver_args(binaries.require(KUBE_APISERVER), layout, ports, self.audit)
        if self.node is not None:
            apiserver += apiserver_node_args(layout.certs)  # later flags win
        state = self._spawn(state, KUBE_APISERVER, apiserver)
        self._await(
            KUBE_APISERVER,
            "kube-apiserver /readyz",
            lambda: _http_ok(f"{state.server_url}/readyz", tls),
        )

        controllers = CONTROLLERS if self.node is None else (*CONTROLLERS, *NODE_CONTROLLERS)
        kcm = controller_manager_args(binaries.require(KUBE_CONTROLLER_MANAGER), layout, ports, controllers)
        state = self._spawn(state, KUBE_CONTROLLER_MANAGER, kcm)
        default_sa = f"{state.server_url}/api/v1/namespaces/default/serviceaccounts/default"
        self._await(KUBE_CONTROLLER_MANAGER, "the default ServiceAccount", lambda: _http_ok(default_sa, tls))

        _write_atomic(layout.kubeconfig, yaml.safe_dump(kubeconfig_document(state.server_url, layout.certs)))
        if self.node is not None:
            state = self._start_node(state, self.node, node_ports)
        self._start_extras(state)

    def _start_node(self, state: RunState, node: NodeSetup, ports: NodePorts) -> RunState:
        """containerd (with the images imported), then the kubelet, the scheduler and kube-proxy; until Ready."""
        layout, certs, node_binaries = self.node_layout, self.layout.certs, node.binaries
        state = self._spawn(state, CONTAINERD, containerd_args(node_binaries.containerd, layout))
        wait_for_runtime(node_binaries, layout, self._check_children)
        started = time.monotonic()
        import_images(node_binaries, layout, node.images)
        _log(f"imported {len(node.images)} images into the node's containerd in {time.monotonic() - started:.1f}s")
        if node.registry is not None:
            state = self._start_registry(state, node.registry, node.publish)
        kubelet_client = (certs.kubelet_cert, certs.kubelet_key)
        for component, client in ((KUBELET, kubelet_client), (KUBE_SCHEDULER, None), (KUBE_PROXY, None)):
            document = kubeconfig_document(state.server_url, certs, component, client)
            _write_atomic(layout.kubeconfig(component), yaml.safe_dump(document))
        state = self._spawn(state, KUBELET, kubelet_args(node_binaries.kubelet, layout, node.registry is not None))
        state = self._spawn(state, KUBE_SCHEDULER, scheduler_args(node_binaries.kube_scheduler, layout, ports))
        state = self._spawn(state, KUBE_PROXY, proxy_args(node_binaries.kube_proxy, layout))
        tls = _client_tls(certs)
        node_url = f"{state.server_url}/api/v1/nodes/{NODE_NAME}"
        deadline = time.monotonic() + NODE_READY_TIMEOUT
        self._await(KUBELET, f"node {NODE_NAME} Ready", lambda: _node_ready(node_url, tls), deadline)
        _log(f"node {NODE_NAME} is Ready")
        return state

    def _start_registry(self, state: RunState, binary: Path, publish: Callable[[str, Path], None] | None) -> RunState:
        """The image registry on the node's address (TLS, htpasswd), the project's images pushed to it, and
        the node's access to it (containerd's hosts.toml, the kubelet's credential provider)."""
        certs, registry = self.layout.certs, RegistryLayout(self.layout.state_dir)
        users = ensure_credentials(registry)
        _write_atomic(registry.htpasswd, htpasswd({c.username: c.password for c in users.values()}), mode=0o600)
        _write_atomic(
            registry.config,
            yaml.safe_dump(registry_config(registry, certs.registry_cert, certs.registry_key)),
            mode=0o600,
        )
        registry.cert_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(registry.cert_dir / "ca.crt", certs.ca_cert.read_text(), mode=0o644)
        state = self._spawn(state, REGISTRY, [str(binary), "serve", str(registry.config)], REGISTRY_ENVIRONMENT)
        tls = ssl.create_default_context(cafile=str(certs.ca_cert))
        self._await(REGISTRY, f"the registry on {REGISTRY_HOST}", lambda: _registry_answers(REGISTRY_HOST, tls))
        write_registry_access(self.node_layout, certs.ca_cert, users["pull"])
        if publish is not None:
            started = time.monotonic()
            publish(users["push"].creds, registry.cert_dir)
            _log(f"pushed the project's images to {REGISTRY_HOST} in {time.monotonic() - started:.1f}s")
        return state

    def _write_config_files(self, server_url: str) -> None:
        layout = self.layout
        document = kubeconfig_document(server_url, layout.certs)
        _write_atomic(layout.controller_manager_kubeconfig, yaml.safe_dump(document))
        if self.audit:
            _write_atomic(layout.audit_policy, yaml.safe_dump(audit_policy()), mode=0o644)

    def _start_extras(self, state: RunState) -> None:
        running = {r.name for r in state.processes if self._alive(r)}
        for extra in self.extra_processes:
            if extra.name in running:
                continue
            env = {"KUBECONFIG": str(self.kubeconfig_path), **extra.env}
            state = self._spawn(state, extra.name, list(extra.command), env)
            self._await_settled(extra.name)

    def _spawn(self, state: RunState, name: str, command: list[str], env: Mapping[str, str] | None = None) -> RunState:
        """Start ``command`` in its own session, logging to logs/<name>.log."""
        log = self.layout.log_file(name)
        with log.open("ab") as handle:
            handle.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(command)}\n".encode())
            handle.flush()
            try:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, **(env or {})},
                )
            except OSError as error:
                raise ControlPlaneError(f"cannot start {command[0]}: {error}", name) from error
        self._children[name] = process
        record = ProcessRecord(name, process.pid, tuple(command), str(log), _start_time(process.pid))
        state = state.with_process(record)
        self._save_state(state)
        _log(f"started {name} (pid {process.pid}), log: {log}")
        return state

    def _await(self, name: str, what: str, probe: Callable[[], bool], deadline: float | None = None) -> None:
        """Poll ``probe`` until true; fail fast if any started process exits."""
        started = time.monotonic()
        deadline = started + self.startup_timeout if deadline is None else deadline
        while not probe():
            self._check_children()
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out after {time.monotonic() - started:.0f}s waiting for {what}", name)
            time.sleep(_POLL_INTERVAL)

    def _await_settled(self, name: str) -> None:
        """Give an extra process a moment to fail on bad arguments or imports."""
        deadline = time.monotonic() + _EXTRA_PROCESS_SETTLE_SECONDS
        while time.monotonic() < deadline:
            self._check_children()
            time.sleep(_POLL_INTERVAL / 2)

    def _check_children(self) -> None:
        for name, process in self._children.items():
            code = process.poll()
            if code is not None:
                raise ControlPlaneError(f"{name} exited with code {code}", name)

    # ---- state & liveness -------------------------------------------------

    def _load_state(self) -> RunState | None:
        try:
            return RunState.from_json(json.loads(self.layout.pids_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            _log(f"ignoring unreadable {self.layout.pids_file}: {error}")
            return None

    def _save_state(self, state: RunState) -> None:
        _write_atomic(self.layout.pids_file, json.dumps(state.to_json(), indent=2) + "\n", mode=0o644)

    def _alive(self, record: ProcessRecord) -> bool:
        child = self._children.get(record.name)
        if child is not None and child.pid == record.pid:
            return child.poll() is None  # also reaps our own zombies
        return _is_same_process(record)

    def _core_running(self, state: RunState) -> bool:
        names = {r.name for r in state.processes if self._alive(r)}
        return all(name in names for name in CORE_PROCESSES)

    def _apiserver_ready(self, server_url: str) -> bool:
        certs = self.layout.certs
        if not certs.ca_cert.is_file():
            return False
        return _http_ok(f"{server_url}/readyz", _client_tls(certs))

    def _stop(self, record: ProcessRecord) -> None:
        """SIGTERM the record's process group; SIGKILL it after STOP_GRACE_SECONDS."""
        _signal_group(record, signal.SIGTERM)
        if self._wait_for_exit(record, STOP_GRACE_SECONDS):
            return
        _log(f"{record.name} (pid {record.pid}) ignored SIGTERM; sending SIGKILL")
        _signal_group(record, signal.SIGKILL)
        if not self._wait_for_exit(record, STOP_GRACE_SECONDS):
            _log(f"{record.name} (pid {record.pid}) survived SIGKILL")

    def _wait_for_exit(self, record: ProcessRecord, timeout: float) -> bool:
        """Wait until the record's process group is empty; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self._alive(record)  # reaps our own child so it stops counting
            if not _group_alive(record.pid):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL_INTERVAL / 2)

    def _print_summary(self) -> None:
        state = self._load_state()
        if state is None:
            return
        lines = [f"server:     {state.server_url}", f"kubeconfig: {self.kubeconfig_path}"]
        lines += [f"log:        {r.log}  ({r.name}, pid {r.pid})" for r in state.processes]
        if self.audit:
            lines.append(f"audit log:  {self.layout.audit_log}")
        _log("\n  ".join(["control plane is up", *lines]))


@contextlib.contextmanager
def running_control_plane(
    state_dir: Path,
    *,
    binaries: Binaries | None = None,
    audit: bool = False,
    extra_processes: Sequence[ExtraProcess] = (),
    node: NodeSetup | None = None,
) -> Iterator[ControlPlane]:
    """``up()`` a control plane for the duration of a ``with`` block (pytest fixtures)."""
    plane = ControlPlane(state_dir, binaries=binaries, audit=audit, extra_processes=extra_processes, node=node)
    plane.up()
    try:
        yield plane
    finally:
        plane.down()


_PR_SET_PDEATHSIG = 1
_prctl: Any = None
with contextlib.suppress(OSError, AttributeError):  # resolved here: no dlopen between fork and exec
    _prctl = ctypes.CDLL(None, use_errno=True).prctl


def die_with_parent() -> None:
    """``preexec_fn`` for helper processes of a test (operators, API servers): SIGKILL when the parent dies.

    Linux only (prctl); elsewhere a no-op. The cluster's own processes do not
    use it: the reaper stops them in order instead. A parent that died
    before the call (the child is already orphaned) ends the child at once.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:
            os._exit(1)


def _best_effort(what: str, step: Callable[[], None]) -> None:
    """One step of a teardown: a failure is logged and the teardown goes on (a half-stopped cluster is worse)."""
    try:
        step()
    except Exception as error:
        _log(f"{what} failed: {error!r}; going on")


def wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` (not our child) has exited."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd support: poll
        while Path(f"/proc/{pid}").exists():
            time.sleep(1)
        return
    try:
        select.select([descriptor], [], [])
    finally:
        os.close(descriptor)


def reap(state_dir: Path, owner: int) -> None:
    """The reaper's body: wait for ``owner`` to exit, then stop the cluster and clean the host."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the owner, not for us
    wait_for_exit(owner)
    _log(f"owner {owner} exited; stopping the cluster in {state_dir}")
    ControlPlane(state_dir).down()
