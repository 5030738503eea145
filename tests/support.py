"""What tests on the real local control plane share: a handle on the cluster, the operator as a process,
waiting, namespaces, client tokens. Fixtures live in conftest.py and only wire these."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from schedexec import manifests, models
from schedexec_devcluster.controlplane import ControlPlane, die_with_parent

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.2) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last seen: {last!r})")


class LocalCluster:
    """Handles on the running control plane for tests."""

    def __init__(self, plane: ControlPlane, kubectl: Path) -> None:
        self.plane = plane
        self.kubeconfig = plane.kubeconfig_path
        self.kubectl_path = kubectl
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.extensions = client.ApiextensionsV1Api(self.api)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def apply(self, manifest: dict[str, Any] | str, check: bool = True) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        return self.kubectl("apply", "-f", "-", stdin=text, check=check)

    def execution(self, namespace: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            models.GROUP, models.VERSION, namespace, models.PLURAL, name
        )

    def wait_finished(self, namespace: str, name: str, timeout: float = 90.0) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            body = self.execution(namespace, name)
            phase = (body.get("status") or {}).get("phase")
            return body if phase and models.Phase(phase).finished else None

        return wait_for(f"execution {namespace}/{name} to finish", finished, timeout)

    def events(self, namespace: str) -> list[Any]:
        return list(self.core.list_namespaced_event(namespace).items)


def new_namespace(cluster: LocalCluster, prefix: str) -> str:
    """A fresh namespace, once its default ServiceAccount exists (pods need it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_for("the default ServiceAccount", lambda: _service_account_exists(cluster, name), timeout=30)
    return name


API_AUDIENCE = "schedexec"
"""The REST API's default token audience (SCHEDEXEC_API_AUDIENCES)."""


def client_token(cluster: LocalCluster, namespace: str, audience: str | None = API_AUDIENCE) -> str:
    """A token of a new ServiceAccount `client` of `namespace` that may create and get executions there,
    for `audience` (None: the Kubernetes API's own)."""
    cluster.kubectl("create", "serviceaccount", "client", "-n", namespace)
    role = f"sx-{namespace}"
    cluster.kubectl("create", "clusterrole", role, "--verb=create,get", "--resource=scheduledexecutions.schedexec.io")
    account = f"--serviceaccount={namespace}:client"
    cluster.kubectl("create", "rolebinding", "client-sx", "-n", namespace, f"--clusterrole={role}", account)
    audiences = [f"--audience={audience}"] if audience else []
    return cluster.kubectl("create", "token", "client", "-n", namespace, *audiences).stdout.strip()


def rest_countdown(http: Any, namespace: str, timeout: float = 120) -> None:
    """Through the REST API (an httpx.Client with a token): schedule a two-run countdown, poll to 303, read it."""
    body = {
        "data": {"type": "execution", "attributes": {"component": "test", "method": "countdown", "args": {"left": 1}}}
    }
    accepted = http.post("/v2/executions", json=body, params={"namespace": namespace})
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    deadline = time.monotonic() + timeout
    while (polled := http.get(location)).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert polled.status_code == 303, polled.text
    assert http.get(polled.headers["Location"]).json()["data"]["attributes"]["result"] == {"seen": [1, 2]}


def _service_account_exists(cluster: LocalCluster, namespace: str) -> bool:
    try:
        cluster.core.read_namespaced_service_account("default", namespace)
        return True
    except ApiException:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MAX_RUNNING = 3
"""The test operator's run-slot limit, small so that queueing is exercised."""
OVERDUE_GRACE_SECONDS = 10
"""The test operator's watchdog grace (default 60 s), so the watchdog test ends in seconds."""


class Operator:
    """The operator as a real process (`schedexec operator`), killable and restartable."""

    def __init__(self, cluster: LocalCluster, log_dir: Path) -> None:
        self.cluster = cluster
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log = self.log_dir / f"operator-{self.starts}.log"
        env = {
            **os.environ,
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "SCHEDEXEC_MIN_INTERVAL_SECONDS": "1",
            "SCHEDEXEC_METRICS_PORT": "0",
            "SCHEDEXEC_MAX_RUNNING": str(MAX_RUNNING),
            "SCHEDEXEC_OVERDUE_GRACE_SECONDS": str(OVERDUE_GRACE_SECONDS),
            "SCHEDEXEC_LOG_LEVEL": "debug",
            # the node agent serves no pods/log (the kubelet's API): results over 4 KiB are a node-tier matter
            "SCHEDEXEC_MAX_RESULT_BYTES": "0",
            "SCHEDEXEC_LIVENESS_ENDPOINT": f"http://127.0.0.1:{free_port()}/healthz",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "schedexec.cli", "operator"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # never outlives a killed test session
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def logs(self) -> str:
        # in start order (operator-10.log after operator-9.log): a slice from an earlier length is what came since
        started = sorted(self.log_dir.glob("operator-*.log"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        return "".join(p.read_text(errors="replace") for p in started)


def self_signed_cert(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[Path, Path]:
    """A self-signed serving certificate for `hosts` (IP addresses or DNS names) and its key, as PEM files
    (tls.crt, tls.key) in `directory`; the certificate is its own CA, so clients verify with it."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:  # without the package: openssl, as an operator would
        names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts)
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
                *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={hosts[0]}"),
                *("-addext", f"subjectAltName={names}", "-addext", "basicConstraints=critical,CA:TRUE"),
            ],
            check=True,
            capture_output=True,
        )
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    alternatives: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alternatives.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


def keep_large_result(cluster: LocalCluster, namespace: str, name: str, result: Any) -> tuple[dict[str, Any], str]:
    """An execution that succeeded with `result` kept in a ConfigMap, as the operator leaves it (its own
    builder, then the status naming it), and the ConfigMap's name. Only with the operator stopped."""
    cluster.apply(
        {
            "apiVersion": models.API_VERSION,
            "kind": models.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "component": {"image": "ghcr.io/schedexec/test-component:dev"},
                "method": "getMetaModel",
                "module": "m",
            },
        }
    )
    body = cluster.execution(namespace, name)
    text = json.dumps(result, separators=(",", ":"))
    config_map, ref = manifests.result_config_map(models.ScheduledExecution.model_validate(body), text)
    cluster.core.create_namespaced_config_map(namespace, config_map)
    status = {"phase": "Succeeded", "runs": 1, "resultRef": ref.model_dump(mode="json", by_alias=True)}
    cluster.kubectl(
        "patch",
        "sx",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
    return cluster.execution(namespace, name), ref.config_map


def trusting(ca: Path) -> ssl.SSLContext:
    """A TLS client context that trusts `ca` (e.g. a self_signed_cert) only."""
    return ssl.create_default_context(cafile=str(ca))


class Api:
    """A running REST API process, as its clients reach it."""

    def __init__(self, url: str, log: Path, ca: Path) -> None:
        self.url, self.log, self.ca = url, log, ca

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.url, headers=headers, timeout=30, follow_redirects=False, verify=trusting(self.ca)
        )


@contextmanager
def serving_api(cluster: LocalCluster, folder: Path, settings: dict[str, str]) -> Iterator[Api]:
    """`schedexec api` on a free loopback port over TLS (a self-signed certificate in `folder`), with the
    cluster's kubeconfig and the given SCHEDEXEC_API_* settings; stopped on exit, its log in `folder`."""
    port = free_port()
    cert, key = self_signed_cert(folder)
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "SCHEDEXEC_API_PORT": str(port),
        "SCHEDEXEC_API_HOST": "127.0.0.1",
        "SCHEDEXEC_API_TLS_CERT_FILE": str(cert),
        "SCHEDEXEC_API_TLS_KEY_FILE": str(key),
        **settings,
    }
    log = folder / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "schedexec.cli", "api"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = Api(f"https://127.0.0.1:{port}", log, cert)

    def ready() -> bool:
        try:
            return httpx.get(f"{api.url}/readyz", timeout=2, verify=trusting(cert)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for("the REST API to serve", ready, timeout=30)
        yield api
    finally:
        process.terminate()
        process.wait(timeout=15)
