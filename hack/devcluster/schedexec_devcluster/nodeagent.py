"""A kubelet stand-in that runs pods as local processes (test/dev infrastructure only).

There is no container runtime on the machines schedexec is tested on, yet the
operator must be tested against a real Job controller and real pods. This
agent registers one Ready Node, binds every unscheduled pod to it that fits
(there is no scheduler), and runs each pod's single container as a local
process, reporting through the API what a kubelet would: phase, conditions,
container state (waiting, running, terminated), exit code, reason,
timestamps, the termination message, and the kubelet's FailedMount events.

Conventions (see docs/local-cluster.md):
- Images are mapped to local commands by images.yaml beside this file (or
  the file named by --images / NODE_AGENT_IMAGES): an entry gives the image's
  entrypoint and environment. `{python}` and `{repo}` are substituted. A pod's
  `command` replaces the entrypoint and `args` are appended, as in Kubernetes.
- Scheduling, like kube-scheduler for a one-node cluster: a pod whose
  nodeSelector does not match the node, or whose requests exceed the node's
  capacity, is not bound; its PodScheduled condition turns False with reason
  Unschedulable and the scheduler's kind of message.
- Starting a container, like a kubelet, in the kubelet's order, each step
  retried with back-off until it succeeds or the pod is deleted:
  1. volumes: a Secret or ConfigMap (or a key of its items) that does not
     exist leaves the container waiting in ContainerCreating with
     PodReadyToStartContainers False, and posts (then counts up) a Warning
     event FailedMount `MountVolume.SetUp failed for volume "v" : secret "s"
     not found`, as the kubelet does;
  2. the image: a reference that does not parse waits in InvalidImageName;
     an image with no entry in the images file cannot be "pulled": the
     container waits in ErrImagePull, then ImagePullBackOff, retried after
     10 s, 20 s, ... (at most 300 s);
  3. the container's config: an env valueFrom whose Secret/ConfigMap or key
     does not exist waits in CreateContainerConfigError (`secret "s" not
     found`, `couldn't find key k in Secret ns/s`).
  Waiting pods hold no --parallelism slot.
- Each pod gets a directory under the state dir; its absolute paths (volume
  mounts, the termination message path) live under `<pod dir>/root`, whose
  path the process finds in $NODE_AGENT_POD_ROOT (for the agent's own test
  scripts). Secret, configMap, emptyDir and downwardAPI volumes (fieldRef
  items: metadata.name/namespace/uid, metadata.labels/annotations and one
  ['key'] of them) are materialised there. An environment value that is an
  absolute path inside a volume mount or the termination message path (HOME
  on the /tmp emptyDir, a component's credentials directory or args file) is
  rewritten to the same path under the pod root, and SCHEDEXEC_TERMINATION_LOG
  names the termination message file there: so a process finds its files
  without knowing about the agent. stdout and stderr go to
  `<pod dir>/container.log`.
- The termination message is truncated to 4096 bytes; with
  FallbackToLogsOnError an empty message on failure becomes the log's tail
  (2048 bytes, 80 lines), as the kubelet does.
- activeDeadlineSeconds and pod deletion kill the process (SIGTERM, then
  SIGKILL after the grace period); a deleted pod is moved to its terminal
  phase (Failed unless it exited 0) before its deletion finishes, as a
  kubelet does, so a Job with podReplacementPolicy Failed replaces it.

Not supported: more than one container, init containers, restarts
(restartPolicy is treated as Never), probes, hostPath/projected/PVC volumes,
envFrom, runAsUser and readOnlyRootFilesystem (processes run as the agent's
user).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("node-agent")

REPO = Path(__file__).resolve().parents[3]
DEFAULT_IMAGES = Path(__file__).with_name("images.yaml")
MESSAGE_LIMIT = 4096
STATUS_RETRY_SECONDS = 300
"""How long a pod status report is retried while the API server is unreachable."""
LOG_FALLBACK_BYTES = 2048
LOG_FALLBACK_LINES = 80
POD_ROOT_VARIABLE = "NODE_AGENT_POD_ROOT"
"""The pod root, for the agent's own shell scripts (tests of the control plane, benchmarks)."""
TERMINATION_LOG_VARIABLE = "SCHEDEXEC_TERMINATION_LOG"
"""Where the schedexec runner writes its termination message (its contract); set to the file under the pod root."""
NODE_MEMORY = "16Gi"
PULL_BACKOFF_SECONDS = (10.0, 300.0)
"""The kubelet's image pull back-off: first delay, most."""
RETRY_BACKOFF_SECONDS = (0.5, 8.0)
"""Back-off of mount and container-config retries (shorter than the kubelet's, which grows to about 2 min)."""
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
"""Patches are strategic merges, as kubectl's and the kubelet's (the client would pick a JSON patch)."""

SANDBOX = "PodReadyToStartContainers"
"""The pod condition a kubelet sets True once the pod's volumes are mounted and its sandbox runs."""

REFERENCE = re.compile(
    r"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[\w][\w.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
"""An image reference as containerd parses it (roughly: distribution's reference grammar)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Image:
    entrypoint: list[str]
    env: dict[str, str] = field(default_factory=dict)


def load_images(path: Path) -> dict[str, Image]:
    raw = yaml.safe_load(path.read_text()) or {}
    subst = {"python": sys.executable, "repo": str(REPO)}
    return {
        name: Image(
            entrypoint=[part.format(**subst) for part in entry.get("entrypoint", [])],
            env={key: str(value).format(**subst) for key, value in (entry.get("env") or {}).items()},
        )
        for name, entry in raw.get("images", {}).items()
    }


def resolve_image(images: dict[str, Image], reference: str) -> Image | None:
    """Exact reference first, then the reference without its tag or digest."""
    if reference in images:
        return images[reference]
    untagged = reference.split("@", 1)[0]
    if ":" in untagged.rsplit("/", 1)[-1]:
        untagged = untagged.rsplit(":", 1)[0]
    return images.get(untagged)


def valid_reference(reference: str) -> bool:
    return len(reference) <= 255 and REFERENCE.fullmatch(reference) is not None


def parse_quantity(value: str) -> float:
    """A resource quantity (cpu or memory) as a number: "500m" → 0.5, "64Mi" → 67108864."""
    suffixes = {
        "m": 1e-3,
        "k": 1e3,
        "K": 1e3,
        "M": 1e6,
        "G": 1e9,
        "T": 1e12,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
    }
    match = re.fullmatch(r"([0-9.]+(?:[eE][-+]?[0-9]+)?)([A-Za-z]*)", str(value).strip())
    if match is None or match.group(2) not in ("", *suffixes):
        raise ValueError(f"not a quantity: {value!r}")
    return float(match.group(1)) * suffixes.get(match.group(2), 1)


def backoff(first: float, most: float) -> Callable[[], float]:
    """Successive delays first, 2·first, ... up to most."""
    delay = first / 2

    def next_delay() -> float:
        nonlocal delay
        delay = min(delay * 2, most)
        return delay

    return next_delay


class NotReady(Exception):
    """A step of starting the container failed the way a kubelet reports it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Started:
    """What a pod needs to run, once every step of starting its container succeeded."""

    image: Image
    env: dict[str, str]
    pod_dir: Path
    root: Path
    message_path: Path


def termination_message(message_file: Path, log_file: Path, exit_code: int, policy: str) -> str:
    """What the kubelet would report as state.terminated.message."""
    message = message_file.read_bytes()[:MESSAGE_LIMIT] if message_file.is_file() else b""
    if not message.strip() and exit_code != 0 and policy == "FallbackToLogsOnError" and log_file.is_file():
        tail = log_file.read_bytes()[-LOG_FALLBACK_BYTES:]
        message = b"\n".join(tail.splitlines()[-LOG_FALLBACK_LINES:])
    return message.decode("utf-8", errors="replace")


class NodeAgent:
    def __init__(
        self, api: client.ApiClient, state_dir: Path, node_name: str, images: dict[str, Image], parallelism: int
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.state_dir = state_dir
        self.node_name = node_name
        self.images = images
        self.slots = threading.BoundedSemaphore(parallelism)
        self.lock = threading.Lock()
        self.known: set[str] = set()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping: dict[str, threading.Event] = {}
        self.transitions: dict[str, dict[str, tuple[str, str]]] = {}
        """By pod uid: each condition's status and lastTransitionTime as last reported."""
        self.labels = {"kubernetes.io/hostname": node_name, "schedexec.io/node-agent": "true"}
        self.capacity = {"cpu": str(os.cpu_count() or 1), "memory": NODE_MEMORY, "pods": "1000"}

    # --- node ----------------------------------------------------------------------

    def register(self) -> None:
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "NodeAgentReady",
            "message": "schedexec node agent runs pods as local processes",
            "lastHeartbeatTime": now(),
            "lastTransitionTime": now(),
        }
        capacity = self.capacity
        body = {"metadata": {"name": self.node_name, "labels": self.labels}}
        try:
            self.core.create_node(body)  # type: ignore[arg-type]  # the client accepts plain dicts
        except ApiException as exc:
            if exc.status != 409:
                raise
        status = {
            "status": {
                "conditions": [ready],
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "nodeInfo": {
                    "kubeletVersion": "node-agent",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "local-process://0",
                    "kernelVersion": "",
                    "osImage": "",
                    "kubeProxyVersion": "",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            }
        }
        self.core.patch_node_status(self.node_name, status, _content_type=STRATEGIC_MERGE)

    def heartbeat(self) -> None:
        while True:
            time.sleep(20)
            try:
                self.register()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    # --- the watch -----------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self.heartbeat, daemon=True).start()
        while True:  # list, then watch from there; on any failure (410 Gone, API server down) list again
            try:
                pods = self.core.list_pod_for_all_namespaces()
                for pod in pods.items:
                    self.handle(pod)
                for event in watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=pods.metadata.resource_version if pods.metadata else None,
                    timeout_seconds=300,
                ):
                    if event["type"] != "DELETED":
                        self.handle(event["object"])
            except ApiException as exc:
                if exc.status != 410:
                    log.warning("watch failed: %s", exc)
                    time.sleep(1)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                log.warning("API server unreachable, retrying: %s", exc)
                time.sleep(1)

    def handle(self, pod: Any) -> None:
        meta, spec = pod.metadata, pod.spec
        uid = meta.uid
        if not spec.node_name:
            if meta.deletion_timestamp is None:
                refusal = self.unschedulable(pod)
                if refusal is None:
                    self.bind(pod)
                else:
                    self.refuse(pod, refusal)
            return
        if spec.node_name != self.node_name:
            return
        if meta.deletion_timestamp is not None:
            self.stop(pod)
            return
        with self.lock:
            if uid in self.known:
                return
            self.known.add(uid)
            self.stopping[uid] = threading.Event()
        if pod.status.phase in ("Succeeded", "Failed"):
            return
        if pod.status.phase == "Running":
            self.report(
                pod,
                "Failed",
                {
                    "exitCode": 137,
                    "reason": "NodeAgentRestarted",
                    "message": "the node agent restarted while the pod ran",
                },
            )
            return
        threading.Thread(target=self.run, args=(pod,), name=f"pod-{meta.name}", daemon=True).start()

    def unschedulable(self, pod: Any) -> str | None:
        """Why the node cannot take `pod`, as kube-scheduler words it; None if it can."""
        problems = []
        selector = pod.spec.node_selector or {}
        if any(self.labels.get(key) != value for key, value in selector.items()):
            problems.append("1 node(s) didn't match Pod's node affinity/selector")
        for resource in ("cpu", "memory"):
            wanted = 0.0
            for container in pod.spec.containers:
                resources = container.resources
                amounts = (resources.requests or resources.limits or {}) if resources is not None else {}
                try:
                    wanted += parse_quantity(amounts[resource]) if resource in amounts else 0.0
                except ValueError:
                    continue
            if wanted > parse_quantity(self.capacity[resource]):
                problems.append(f"1 Insufficient {resource}")
        if not problems:
            return None
        return (
            f"0/1 nodes are available: {', '.join(problems)}. "
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        )

    def refuse(self, pod: Any, message: str) -> None:
        """Report the pod unschedulable (once: its spec cannot change what fits)."""
        for condition in pod.status.conditions or []:
            if (
                condition.type == "PodScheduled"
                and condition.reason == "Unschedulable"
                and condition.message == message
            ):
                return
        log.info("pod %s/%s is unschedulable: %s", pod.metadata.namespace, pod.metadata.name, message)
        scheduled = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": now(),
            "lastProbeTime": None,
        }
        self.patch_status(pod, {"phase": "Pending", "conditions": [scheduled]})

    def bind(self, pod: Any) -> None:
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=pod.metadata.name),
            target=client.V1ObjectReference(kind="Node", name=self.node_name),
        )
        try:
            self.core.create_namespaced_binding(pod.metadata.namespace, body, _preload_content=False)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("cannot bind %s/%s: %s", pod.metadata.namespace, pod.metadata.name, exc)

    def stop(self, pod: Any) -> None:
        """The pod is being deleted: kill its process, then let the deletion finish."""
        uid = pod.metadata.uid
        with self.lock:
            event = self.stopping.get(uid)
        if event is not None:
            event.set()
        with self.lock:
            self.transitions.pop(uid, None)
        if uid not in self.processes:
            self.force_delete(pod)

    def force_delete(self, pod: Any) -> None:
        log.info("pod %s/%s stopped; finishing its deletion", pod.metadata.namespace, pod.metadata.name)
        try:
            # the body's options win over query parameters, so the grace period goes in the body
            self.core.delete_namespaced_pod(
                pod.metadata.name,
                pod.metadata.namespace,
                body=client.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=client.V1Preconditions(uid=pod.metadata.uid)
                ),
            )
        except ApiException as exc:
            if exc.status != 404:
                log.warning("cannot delete %s: %s", pod.metadata.name, exc)

    # --- one pod -------------------------------------------------------------------

    def run(self, pod: Any) -> None:
        try:
            started = self.start(pod)
            if started is None:
                return
            with self.slots:
                self.execute(pod, started)
        except Exception as exc:
            log.exception("pod %s/%s failed in the agent", pod.metadata.namespace, pod.metadata.name)
            self.report(pod, "Failed", {"exitCode": 128, "reason": "StartError", "message": str(exc)[:1024]})

    def start(self, pod: Any) -> Started | None:
        """Everything before the process starts, as a kubelet orders it (volumes, image, container config),
        each step retried with back-off while it fails; None if the pod cannot run or went away meanwhile."""
        meta, spec = pod.metadata, pod.spec
        if len(spec.containers) != 1 or spec.init_containers:
            self.report(
                pod,
                "Failed",
                {
                    "exitCode": 128,
                    "reason": "UnsupportedPodSpec",
                    "message": "the node agent runs exactly one container and no init containers",
                },
            )
            return None
        container = spec.containers[0]
        stop = self.stopping[meta.uid]
        pod_dir = self.state_dir / "pods" / f"{meta.namespace}_{meta.name}_{meta.uid}"
        root = pod_dir / "root"
        root.mkdir(parents=True, exist_ok=True)
        if not self.retry(pod, lambda: self.materialise_volumes(pod, root), RETRY_BACKOFF_SECONDS, sandbox=False):
            return None
        image = self.pull(pod, container.image)
        if image is None:
            return None
        env: dict[str, str] = {}

        def configure() -> None:
            env.update(self.container_env(pod, container))

        if not self.retry(pod, configure, RETRY_BACKOFF_SECONDS, sandbox=True):
            return None
        if stop.is_set():
            return None
        message_path = root / (container.termination_message_path or "/dev/termination-log").lstrip("/")
        message_path.parent.mkdir(parents=True, exist_ok=True)
        return Started(image, env, pod_dir, root, message_path)

    def retry(self, pod: Any, step: Callable[[], None], delays: tuple[float, float], sandbox: bool) -> bool:
        """Run `step` until it succeeds (True), reporting each NotReady like a kubelet; False once the pod
        is being deleted."""
        stop = self.stopping[pod.metadata.uid]
        next_delay = backoff(*delays)
        while not stop.is_set():
            try:
                step()
                return True
            except NotReady as problem:
                if problem.reason == "FailedMount":
                    self.mount_failed(pod, problem.message)
                    self.waiting(pod, "ContainerCreating", "", sandbox=False)
                else:
                    self.waiting(pod, problem.reason, problem.message, sandbox=sandbox)
            stop.wait(next_delay())
        return False

    def pull(self, pod: Any, reference: str) -> Image | None:
        """'Pull' the image: find it in the images file; report the kubelet's pull failures while it is not."""
        stop = self.stopping[pod.metadata.uid]
        if not valid_reference(reference):
            message = (
                f'Failed to apply default image tag "{reference}": couldn\'t parse image reference '
                f'"{reference}": invalid reference format'
            )
            self.waiting(pod, "InvalidImageName", message)
            stop.wait()  # the kubelet keeps reporting it; the spec cannot change
            return None
        next_delay = backoff(*PULL_BACKOFF_SECONDS)
        while not stop.is_set():
            image = resolve_image(self.images, reference)
            if image is not None:
                return image
            failure = (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{reference}": '
                f'failed to resolve reference "{reference}": {reference}: not found '
                "(the node agent's images file maps no command to it)"
            )
            self.waiting(pod, "ErrImagePull", failure)
            if stop.wait(1.0):
                break
            self.waiting(pod, "ImagePullBackOff", f'Back-off pulling image "{reference}": ErrImagePull: {failure}')
            stop.wait(next_delay())
        return None

    def execute(self, pod: Any, started: Started) -> None:
        meta, container = pod.metadata, pod.spec.containers[0]
        root = started.root
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            **started.image.env,
            TERMINATION_LOG_VARIABLE: str(started.message_path),
            **self.rooted(started.env, container, root),
            POD_ROOT_VARIABLE: str(root),
        }
        argv = (container.command or started.image.entrypoint) + (container.args or [])
        if not argv:
            self.report(pod, "Failed", {"exitCode": 128, "reason": "StartError", "message": "no command to run"})
            return
        if self.stopping[meta.uid].is_set():
            return
        log_path = started.pod_dir / "container.log"
        started_at = now()
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                argv,
                env=env,
                cwd=root,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with self.lock:
            self.processes[meta.uid] = process
        self.report(pod, "Running", None, started=started_at)
        outcome = self.wait(pod, process)
        exit_code = process.returncode if process.returncode >= 0 else 128 - process.returncode
        policy = container.termination_message_policy or "File"
        message = termination_message(started.message_path, log_path, exit_code, policy)
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "message": message,
            "startedAt": started_at,
            "finishedAt": now(),
        }
        with self.lock:
            self.processes.pop(meta.uid, None)
        if outcome == "deleted":
            # like a kubelet (1.27+), move a deleted pod to its terminal phase before it goes: the Job controller
            # replaces a pod (podReplacementPolicy: Failed) only once the old one is Failed
            self.report(pod, "Succeeded" if exit_code == 0 else "Failed", terminated)
            self.force_delete(pod)
        elif outcome == "deadline":
            self.report(
                pod,
                "Failed",
                terminated,
                pod_reason="DeadlineExceeded",
                pod_message="Pod was active on the node longer than the specified deadline",
            )
        else:
            self.report(pod, "Succeeded" if exit_code == 0 else "Failed", terminated)

    @staticmethod
    def rooted(env: dict[str, str], container: Any, root: Path) -> dict[str, str]:
        """`env` with every value that is an absolute path inside a volume mount (or the termination
        message path) moved under the pod root, where the agent put those files."""
        places = [m.mount_path.rstrip("/") for m in container.volume_mounts or []]
        places.append(container.termination_message_path or "/dev/termination-log")

        def moved(value: str) -> str:
            inside = any(value == place or value.startswith(place + "/") for place in places if place)
            return str(root) + value if value.startswith("/") and inside else value

        return {name: moved(value) for name, value in env.items()}

    def wait(self, pod: Any, process: subprocess.Popen[bytes]) -> str:
        """Wait for the process; kill it on deletion or when its deadline passes."""
        stop = self.stopping[pod.metadata.uid]
        deadline = pod.spec.active_deadline_seconds
        start = pod.status.start_time or datetime.now(UTC)
        ends_at = None if deadline is None else start.timestamp() + deadline
        while process.poll() is None:
            if stop.wait(0.1):
                self.kill(process, pod.spec.termination_grace_period_seconds or 0)
                return "deleted"
            if ends_at is not None and time.time() >= ends_at:
                self.kill(process, 0)
                return "deadline"
        return "exited"

    @staticmethod
    def kill(process: subprocess.Popen[bytes], grace: int) -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=max(min(grace, 10), 1))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def materialise_volumes(self, pod: Any, root: Path) -> None:
        """Write the pod's volumes under its root; NotReady("FailedMount", ...) as the kubelet words it."""
        namespace = pod.metadata.namespace
        mounts = {m.name: m.mount_path for m in pod.spec.containers[0].volume_mounts or []}
        for volume in pod.spec.volumes or []:
            if volume.name not in mounts:
                continue
            target = root / mounts[volume.name].lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            if volume.secret is not None:
                source = volume.secret
                secret = self.read("secret", source.secret_name, namespace, volume.name, source.optional)
                data = {k: base64.b64decode(v) for k, v in ((secret.data or {}) if secret else {}).items()}
                self.write_items(target, data, source.items, "secret", volume.name, source.optional, mode=0o444)
            elif volume.config_map is not None:
                source = volume.config_map
                config_map = self.read("configmap", source.name, namespace, volume.name, source.optional)
                data = {k: v.encode() for k, v in ((config_map.data or {}) if config_map else {}).items()}
                self.write_items(target, data, source.items, "configmap", volume.name, source.optional, mode=0o644)
            elif volume.downward_api is not None:
                for item in volume.downward_api.items or []:
                    if item.field_ref is None:
                        continue
                    path = target / item.path
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(self.field(pod, item.field_ref.field_path))

    def read(self, kind: str, name: str, namespace: str, volume: str, optional: bool | None) -> Any:
        """The Secret or ConfigMap of a volume; None if it is optional and missing."""
        try:
            if kind == "secret":
                return self.core.read_namespaced_secret(name, namespace)
            return self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            if optional:
                return None
            message = f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found'
            raise NotReady("FailedMount", message) from None

    @staticmethod
    def write_items(
        target: Path, data: dict[str, bytes], items: Any, kind: str, volume: str, optional: bool | None, mode: int
    ) -> None:
        chosen = {item.key: item.path for item in items} if items else {key: key for key in data}
        for key, path in chosen.items():
            if key not in data:
                if optional:
                    continue
                raise NotReady(
                    "FailedMount",
                    f'MountVolume.SetUp failed for volume "{volume}" : references non-existent {kind} key: {key}',
                )
            file = target / path
            file.parent.mkdir(parents=True, exist_ok=True)
            if file.exists():
                file.chmod(0o644)
            file.write_bytes(data[key])
            file.chmod(mode)

    def field(self, pod: Any, path: str) -> str:
        """A downward-API fieldRef of the pod: metadata.name/namespace/uid, labels/annotations or one of them."""
        meta = pod.metadata
        one = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if one is not None:
            return str((getattr(meta, one.group(1)) or {}).get(one.group(2), ""))
        if path in ("metadata.labels", "metadata.annotations"):
            pairs = sorted((getattr(meta, path.split(".")[1]) or {}).items())
            return "\n".join(f'{key}="{value}"' for key, value in pairs)
        fields: dict[str, str] = {
            "metadata.name": meta.name,
            "metadata.namespace": meta.namespace,
            "metadata.uid": meta.uid,
            "spec.nodeName": self.node_name,
            "spec.serviceAccountName": pod.spec.service_account_name or "",
            "status.podIP": "127.0.0.1",
            "status.hostIP": "127.0.0.1",
        }
        return fields.get(path, "")

    def container_env(self, pod: Any, container: Any) -> dict[str, str]:
        """The container's environment; NotReady("CreateContainerConfigError", ...) for a missing reference."""
        namespace = pod.metadata.namespace
        env: dict[str, str] = {}
        for var in container.env or []:
            source = var.value_from
            if source is None:
                env[var.name] = var.value or ""
            elif source.secret_key_ref is not None or source.config_map_key_ref is not None:
                secret = source.secret_key_ref is not None
                ref = source.secret_key_ref if secret else source.config_map_key_ref
                kind, title = ("secret", "Secret") if secret else ("configmap", "ConfigMap")
                try:
                    found = (
                        self.core.read_namespaced_secret(ref.name, namespace)
                        if secret
                        else self.core.read_namespaced_config_map(ref.name, namespace)
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    if ref.optional:
                        continue
                    raise NotReady("CreateContainerConfigError", f'{kind} "{ref.name}" not found') from None
                data = found.data or {}
                if ref.key not in data:
                    if ref.optional:
                        continue
                    raise NotReady(
                        "CreateContainerConfigError", f"couldn't find key {ref.key} in {title} {namespace}/{ref.name}"
                    )
                env[var.name] = base64.b64decode(data[ref.key]).decode() if secret else str(data[ref.key])
            elif source.field_ref is not None:
                env[var.name] = self.field(pod, source.field_ref.field_path)
        return env

    def mount_failed(self, pod: Any, message: str) -> None:
        """The kubelet's FailedMount event: posted once per message, then counted up while it repeats."""
        meta = pod.metadata
        name = f"{meta.name}.{hashlib.sha256(f'{meta.uid} {message}'.encode()).hexdigest()[:16]}"
        stamp = now()
        try:
            try:
                existing = self.core.read_namespaced_event(name, meta.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            else:
                patch = {"count": (existing.count or 1) + 1, "lastTimestamp": stamp}
                self.core.patch_namespaced_event(name, meta.namespace, patch, _content_type=STRATEGIC_MERGE)
                return
            event = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta.name,
                    "namespace": meta.namespace,
                    "uid": meta.uid,
                },
                "type": "Warning",
                "reason": "FailedMount",
                "message": message,
                "source": {"component": "kubelet", "host": self.node_name},
                "reportingComponent": "kubelet",
                "reportingInstance": self.node_name,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            }
            self.core.create_namespaced_event(meta.namespace, event)  # type: ignore[arg-type]  # plain dicts work
        except ApiException as exc:
            log.warning("cannot post FailedMount for %s: %s", meta.name, exc)

    # --- status --------------------------------------------------------------------

    def waiting(self, pod: Any, reason: str, message: str, sandbox: bool = True) -> None:
        """The container waits: Pending, PodReadyToStartContainers once the volumes are mounted."""
        state = {"waiting": {"reason": reason, "message": message} if message else {"reason": reason}}
        self.patch_status(
            pod,
            {
                "phase": "Pending",
                "hostIP": "127.0.0.1",
                "conditions": self.conditions(pod, ready=False, sandbox=sandbox),
                "containerStatuses": [self.container_status(pod, state, ready=False)],
            },
        )

    def conditions(self, pod: Any, ready: bool, sandbox: bool = True) -> list[dict[str, Any]]:
        """The pod's conditions; lastTransitionTime moves only when a condition's status flips, as a
        kubelet keeps it (a controller may measure how long a pod has been scheduled from it)."""
        with self.lock:
            known = self.transitions.get(pod.metadata.uid)
            if known is None:
                known = self.transitions[pod.metadata.uid] = {
                    c.type: (c.status, c.last_transition_time.isoformat().replace("+00:00", "Z"))
                    for c in pod.status.conditions or []
                    if c.last_transition_time is not None
                }
            result = []
            for kind in ("PodScheduled", SANDBOX, "Initialized", "ContainersReady", "Ready"):
                up = ready or kind in ("PodScheduled", "Initialized") or (sandbox and kind == SANDBOX)
                status = "True" if up else "False"
                previous = known.get(kind)
                stamp = previous[1] if previous is not None and previous[0] == status else now()
                known[kind] = (status, stamp)
                result.append({"type": kind, "status": status, "lastTransitionTime": stamp})
        return result

    def report(
        self,
        pod: Any,
        phase: str,
        terminated: dict[str, Any] | None,
        started: str | None = None,
        pod_reason: str | None = None,
        pod_message: str | None = None,
    ) -> None:
        state = {"running": {"startedAt": started or now()}} if terminated is None else {"terminated": terminated}
        running = phase == "Running"
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "conditions": self.conditions(pod, ready=running),
            "containerStatuses": [self.container_status(pod, state, ready=running)],
        }
        if started is not None:
            status["startTime"] = started
        if pod_reason is not None:
            status["reason"], status["message"] = pod_reason, pod_message
        self.patch_status(pod, status)
        if phase in ("Succeeded", "Failed"):
            with self.lock:
                self.transitions.pop(pod.metadata.uid, None)

    @staticmethod
    def container_status(pod: Any, state: dict[str, Any], ready: bool) -> dict[str, Any]:
        container = pod.spec.containers[0]
        return {
            "name": container.name,
            "image": container.image,
            "imageID": f"local://{container.image}",
            "containerID": f"local://{pod.metadata.uid}",
            "ready": ready,
            "started": ready,
            "restartCount": 0,
            "state": state,
        }

    def patch_status(self, pod: Any, status: dict[str, Any]) -> None:
        """Report a pod's status; like a kubelet, keep trying while the API server is down or overloaded,
        so that an outcome is not lost to an outage (a run that finished must not look like a timeout)."""
        deadline = time.monotonic() + STATUS_RETRY_SECONDS
        while True:
            try:
                self.core.patch_namespaced_pod_status(
                    pod.metadata.name, pod.metadata.namespace, {"status": status}, _content_type=STRATEGIC_MERGE
                )
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                problem: Exception = exc
                if exc.status is not None and exc.status < 500 and exc.status != 429:
                    break
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                problem = exc
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        log.warning("cannot update status of %s: %s", pod.metadata.name, problem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the pods of a local control plane as processes.")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--node-name", default="schedexec-local")
    parser.add_argument("--images", type=Path, default=Path(os.environ.get("NODE_AGENT_IMAGES", DEFAULT_IMAGES)))
    parser.add_argument("--parallelism", type=int, default=int(os.environ.get("NODE_AGENT_PARALLELISM", "8")))
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s node-agent %(message)s")
    api = config.new_client_from_config(config_file=options.kubeconfig)
    agent = NodeAgent(api, options.state_dir, options.node_name, load_images(options.images), options.parallelism)
    agent.register()
    log.info("node %s ready on %s (parallelism %d)", options.node_name, socket.gethostname(), options.parallelism)
    agent.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
