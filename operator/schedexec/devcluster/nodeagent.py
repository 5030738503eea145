"""A kubelet stand-in that runs pods as local processes (test/dev infrastructure only).

There is no container runtime on the machines schedexec is tested on, yet the
operator must be tested against a real Job controller and real pods. This
agent registers one Ready Node, binds every unscheduled pod to it (there is
no scheduler), and runs each pod's single container as a local process,
reporting through the API what a kubelet would: phase, container state,
exit code, reason, timestamps and the termination message.

Conventions (see docs/local-cluster.md):
- Images are mapped to local commands by images.yaml beside this file (or
  the file named by --images / NODE_AGENT_IMAGES): an entry gives the image's
  entrypoint and environment. `{python}` and `{repo}` are substituted. A pod's
  `command` replaces the entrypoint and `args` are appended, as in Kubernetes.
  An image with no entry leaves the pod Pending with reason ErrImagePull.
- Each pod gets a directory under the state dir; its absolute paths (volume
  mounts, the termination message path) live under `<pod dir>/root`, whose
  path the process finds in $NODE_AGENT_POD_ROOT. Secret, configMap and
  emptyDir volumes are materialised there; stdout and stderr go to
  `<pod dir>/container.log`.
- The termination message is truncated to 4096 bytes; with
  FallbackToLogsOnError an empty message on failure becomes the log's tail
  (2048 bytes, 80 lines), as the kubelet does.
- activeDeadlineSeconds and pod deletion kill the process (SIGTERM, then
  SIGKILL after the grace period).

Not supported: more than one container, init containers, restarts
(restartPolicy is treated as Never), probes, hostPath/projected/PVC volumes,
runAsUser and readOnlyRootFilesystem (processes run as the agent's user).
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
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
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": "16Gi", "pods": "1000"}
        body = {
            "metadata": {
                "name": self.node_name,
                "labels": {"kubernetes.io/hostname": self.node_name, "schedexec.io/node-agent": "true"},
            }
        }
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
        self.core.patch_node_status(self.node_name, status)

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
                self.bind(pod)
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
        with self.slots:
            try:
                self.execute(pod)
            except Exception as exc:
                log.exception("pod %s/%s failed in the agent", pod.metadata.namespace, pod.metadata.name)
                self.report(pod, "Failed", {"exitCode": 128, "reason": "StartError", "message": str(exc)[:1024]})

    def execute(self, pod: Any) -> None:
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
            return
        container = spec.containers[0]
        image = resolve_image(self.images, container.image)
        if image is None:
            self.waiting(
                pod, "ErrImagePull", f"image {container.image!r} is not mapped in the node agent's images file"
            )
            return
        pod_dir = self.state_dir / "pods" / f"{meta.namespace}_{meta.name}_{meta.uid}"
        root = pod_dir / "root"
        root.mkdir(parents=True, exist_ok=True)
        self.materialise_volumes(pod, root)
        message_path = root / (container.termination_message_path or "/dev/termination-log").lstrip("/")
        message_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root),
            **image.env,
            **self.container_env(pod, container),
            POD_ROOT_VARIABLE: str(root),
        }
        argv = (container.command or image.entrypoint) + (container.args or [])
        if not argv:
            self.report(pod, "Failed", {"exitCode": 128, "reason": "StartError", "message": "no command to run"})
            return
        if self.stopping[meta.uid].is_set():
            return
        log_path = pod_dir / "container.log"
        started = now()
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
        self.report(pod, "Running", None, started=started)
        outcome = self.wait(pod, process)
        exit_code = process.returncode if process.returncode >= 0 else 128 - process.returncode
        message = termination_message(message_path, log_path, exit_code, container.termination_message_policy or "File")
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "message": message,
            "startedAt": started,
            "finishedAt": now(),
        }
        with self.lock:
            self.processes.pop(meta.uid, None)
        if outcome == "deleted":
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
        namespace = pod.metadata.namespace
        mounts = {m.name: m.mount_path for m in pod.spec.containers[0].volume_mounts or []}
        for volume in pod.spec.volumes or []:
            if volume.name not in mounts:
                continue
            target = root / mounts[volume.name].lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            if volume.secret is not None:
                secret = self.core.read_namespaced_secret(volume.secret.secret_name, namespace)
                for key, value in (secret.data or {}).items():
                    (target / key).write_bytes(base64.b64decode(value))
                    (target / key).chmod(0o444)
            elif volume.config_map is not None:
                config_map = self.core.read_namespaced_config_map(volume.config_map.name, namespace)
                for key, value in (config_map.data or {}).items():
                    (target / key).write_text(value)

    def container_env(self, pod: Any, container: Any) -> dict[str, str]:
        namespace = pod.metadata.namespace
        env: dict[str, str] = {}
        for var in container.env or []:
            source = var.value_from
            if source is None:
                env[var.name] = var.value or ""
            elif source.secret_key_ref is not None:
                ref = source.secret_key_ref
                secret = self.core.read_namespaced_secret(ref.name, namespace).data or {}
                if ref.key in secret:
                    env[var.name] = base64.b64decode(secret[ref.key]).decode()
            elif source.config_map_key_ref is not None:
                ref = source.config_map_key_ref
                config_map = self.core.read_namespaced_config_map(ref.name, namespace).data or {}
                if ref.key in config_map:
                    env[var.name] = config_map[ref.key]
            elif source.field_ref is not None:
                env[var.name] = {
                    "metadata.name": pod.metadata.name,
                    "metadata.namespace": namespace,
                    "metadata.uid": pod.metadata.uid,
                    "spec.nodeName": self.node_name,
                    "status.podIP": "127.0.0.1",
                }.get(source.field_ref.field_path, "")
        return env

    # --- status --------------------------------------------------------------------

    def waiting(self, pod: Any, reason: str, message: str) -> None:
        self.patch_status(
            pod,
            {
                "phase": "Pending",
                "containerStatuses": [
                    self.container_status(pod, {"waiting": {"reason": reason, "message": message}}, ready=False)
                ],
            },
        )

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
            "conditions": [
                {
                    "type": t,
                    "status": "True" if running or t == "PodScheduled" else "False",
                    "lastTransitionTime": now(),
                }
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [self.container_status(pod, state, ready=running)],
        }
        if started is not None:
            status["startTime"] = started
        if pod_reason is not None:
            status["reason"], status["message"] = pod_reason, pod_message
        self.patch_status(pod, status)

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
                self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})
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
