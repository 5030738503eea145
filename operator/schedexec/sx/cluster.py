"""The one module of `kubectl sx` that talks to the API server, through the official `kubernetes` client.

The connection is found as kubectl finds it: `--kubeconfig`, else $KUBECONFIG (colon-separated files
merged), else ~/.kube/config, with `--context` choosing a context; the namespace is `-n`, else the
context's, else `default`. With no kubeconfig at all, inside a pod, the pod's service account is used
(in-cluster). Every refusal comes out as kubectl prints it, one line (`Error from server (NotFound):
scheduledexecutions.schedexec.io "x" not found`; Forbidden names the verb and resource, as the API server's
message does), and an unreachable cluster as one line naming the server: `ClusterError`, never a traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from schedexec import manifests, models

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""The Job controller's label on a Job's pods."""
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REQUEST_TIMEOUT = 30
"""Seconds a single request may take (log streams excepted)."""


class ClusterError(Exception):
    """A request that did not do what was asked, as one line for stderr."""


class NotFound(ClusterError):
    """The object asked for does not exist (HTTP 404): kubectl's `Error from server (NotFound)` line."""


def api_error_line(status: int, reason: str | None, body: str | bytes | None) -> str:
    """kubectl's line for an API server refusal: `Error from server (Reason): message`, from the
    metav1.Status the server sent (its message names the resource, and for Forbidden the verb and user)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("kind") == "Status":
        cause = document.get("reason") or reason or str(status)
        message = document.get("message") or text
    else:
        cause, message = reason or str(status), text.strip() or f"HTTP {status}"
    return f"Error from server ({cause}): {' '.join(str(message).split())}"


def unreachable_line(host: str, cause: BaseException) -> str:
    """kubectl's line for a cluster it cannot reach."""
    return f"Unable to connect to the server {host}: {' '.join(str(cause).split())}"


class Cluster:
    """Calls in one namespace, with errors as `ClusterError` lines."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.host = str(api.configuration.host)

    def _call(self, function: Any, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        """`function(*args, **kwargs)`; with `missing_ok` None for a 404."""
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return function(*args, **kwargs)
        except ApiException as exc:
            line = api_error_line(exc.status, exc.reason, exc.body)
            if exc.status == 404:
                if missing_ok:
                    return None
                raise NotFound(line) from exc
            raise ClusterError(line) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(unreachable_line(self.host, exc)) from exc

    def plain(self, thing: Any) -> Any:
        """A client model as the API server's JSON (camelCase), for the pure modules."""
        return self.api.sanitize_for_serialization(thing)  # type: ignore[no-untyped-call]

    # --- executions ---------------------------------------------------------------------------------------
    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            self.custom.get_namespaced_custom_object, models.GROUP, models.VERSION, self.namespace, models.PLURAL, name
        )
        return found

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._call(
            self.custom.create_namespaced_custom_object,
            models.GROUP,
            models.VERSION,
            self.namespace,
            models.PLURAL,
            {**body, "metadata": {**body.get("metadata", {}), "namespace": self.namespace}},
        )
        return created

    def cancel(self, name: str) -> dict[str, Any]:
        patched: dict[str, Any] = self._call(
            self.custom.patch_namespaced_custom_object,
            models.GROUP,
            models.VERSION,
            self.namespace,
            models.PLURAL,
            name,
            {"spec": {"cancel": True}},
        )
        return patched

    def events(self, execution: Mapping[str, Any]) -> list[dict[str, Any]]:
        uid = (execution.get("metadata") or {}).get("uid", "")
        found = self._call(self.core.list_namespaced_event, self.namespace, field_selector=f"involvedObject.uid={uid}")
        return [self.plain(event) for event in found.items]

    def config_map(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.plain(self._call(self.core.read_namespaced_config_map, name, self.namespace))
        return found

    # --- runs: Jobs, pods, logs ----------------------------------------------------------------------------
    def jobs_of_run(self, index: int) -> list[dict[str, Any]]:
        """The Jobs labelled as run `index` of some execution in the namespace (runlogs picks the owner's)."""
        found = self._call(
            self.batch.list_namespaced_job, self.namespace, label_selector=f"{manifests.RUN_LABEL}={index}"
        )
        return [self.plain(job) for job in found.items]

    def job(self, name: str) -> dict[str, Any] | None:
        found = self._call(self.batch.read_namespaced_job, name, self.namespace, missing_ok=True)
        return None if found is None else dict(self.plain(found))

    def pods_of_job(self, job: str) -> list[dict[str, Any]]:
        found = self._call(self.core.list_namespaced_pod, self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}")
        return [self.plain(pod) for pod in found.items]

    def log(self, pod: str, *, follow: bool) -> Iterator[bytes]:
        """The run container's log, chunk by chunk; with `follow` until the container ends."""
        response = self._call(
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            container=manifests.CONTAINER,
            follow=follow,
            _preload_content=False,
            _request_timeout=None if follow else REQUEST_TIMEOUT,
        )
        try:
            yield from response.stream(4096, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterError(unreachable_line(self.host, exc)) from exc
        finally:
            response.release_conn()


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    """The cluster kubectl would talk to with the same flags and environment."""
    configuration = client.Configuration()
    files = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    have_file = any(Path(p).expanduser().is_file() for p in files.split(os.pathsep) if p)
    if kubeconfig and not Path(kubeconfig).expanduser().is_file():
        raise ClusterError(f"error: stat {kubeconfig}: no such file or directory")
    try:
        if have_file:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=files, context=context, client_configuration=configuration
            )
            chosen = namespace or _context_namespace(files, context)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            chosen = namespace or _in_cluster_namespace()
        else:
            raise ClusterError(
                "error: no cluster to talk to: no kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config) "
                "and not running in a pod"
            )
    except config.ConfigException as exc:
        raise ClusterError(f"error: {' '.join(str(exc).split())}") from exc
    configuration.retries = 1  # an unreachable server is reported in seconds, not after urllib3's three retries
    return Cluster(client.ApiClient(configuration), chosen)


def _context_namespace(files: str, context: str | None) -> str:
    contexts, active = config.list_kube_config_contexts(config_file=files)  # type: ignore[no-untyped-call]
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def _in_cluster_namespace() -> str:
    try:
        return IN_CLUSTER_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"
