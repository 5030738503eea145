"""Stops an operator at one exact point: its run's Job created, the status that names the run not written.

The operator creates a run's Job, then writes the status that names it
(schedexec.decisions). To kill it between the two every time, not when a
race happens to be won, `StatusWriteHold` serves a validating admission
webhook for `scheduledexecutions/status` in one namespace from the test
process. While armed, the first status write that names a new current run
is held: `on_hold` runs while the API server waits for the answer (the test
kills the operator there), then the write is refused, so it never lands.
Disarmed, every write passes. The webhook uses the local API server's own
serving certificate (valid for 127.0.0.1) and fails open (failurePolicy
Ignore), so nothing outside the namespace is touched and a dead test process
leaves the API server working.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

from schedexec import models
from tests.support import LocalCluster


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the API server dropping a connection (e.g. mid-handshake) is no concern of the test


@dataclass(frozen=True)
class HeldWrite:
    """A status write held and refused: the run it would have named, and the execution as it stays."""

    execution: str
    job: str
    index: int
    before: Mapping[str, Any]
    """The execution as stored (the write never landed): what a restarted operator starts from."""


class StatusWriteHold:
    """The webhook, from `with StatusWriteHold(...)` on; `arm()` holds the next write that names a new run."""

    def __init__(
        self,
        cluster: LocalCluster,
        namespace: str,
        on_hold: Callable[[HeldWrite], None],
    ) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.on_hold = on_hold
        self.name = f"schedexec-chaos-hold-{namespace}"
        self.held: list[HeldWrite] = []
        self._armed = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        certs = cluster.plane.layout.certs
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(certs.apiserver_cert), str(certs.apiserver_key))
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._ca = certs.ca_cert.read_bytes()
        self._admission = client.AdmissionregistrationV1Api(cluster.api)

    def __enter__(self) -> StatusWriteHold:
        threading.Thread(target=self._server.serve_forever, name="status-hold", daemon=True).start()
        port = self._server.server_address[1]
        self._admission.create_validating_webhook_configuration(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": self.name},
                "webhooks": [
                    {
                        "name": "status-hold.chaos.schedexec.io",
                        "clientConfig": {
                            "url": f"https://127.0.0.1:{port}/hold",
                            "caBundle": base64.b64encode(self._ca).decode(),
                        },
                        "rules": [
                            {
                                "apiGroups": [models.GROUP],
                                "apiVersions": [models.VERSION],
                                "operations": ["UPDATE"],
                                "resources": [f"{models.PLURAL}/status"],
                                "scope": "Namespaced",
                            }
                        ],
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
                        "failurePolicy": "Ignore",
                        "sideEffects": "None",
                        "admissionReviewVersions": ["v1"],
                        "timeoutSeconds": 10,
                    }
                ],
            }
        )
        return self

    def __exit__(self, *_: object) -> None:
        self._armed.clear()
        try:
            self._admission.delete_validating_webhook_configuration(self.name)
        finally:
            self._server.shutdown()
            self._server.server_close()

    def arm(self) -> None:
        """Hold the next status write that names a new run."""
        self._done.clear()
        self._armed.set()

    def wait_held(self, timeout: float) -> bool:
        """Whether a write was held (and `on_hold` returned) within `timeout` seconds of `arm()`."""
        return self._done.wait(timeout)

    # --- the webhook -----------------------------------------------------------------------------

    def review(self, request: Mapping[str, Any]) -> tuple[bool, str]:
        """(allowed, message) for one admission request."""
        new, old = request.get("object") or {}, request.get("oldObject") or {}
        named = ((new.get("status") or {}).get("currentRun") or {}).get("job")
        before = ((old.get("status") or {}).get("currentRun") or {}).get("job")
        if not named or named == before or not self._armed.is_set():
            return True, ""
        held = HeldWrite(
            execution=new["metadata"]["name"],
            job=named,
            index=int(new["status"]["currentRun"]["index"]),
            before=old,
        )
        with self._lock:  # one write held at a time; others pass meanwhile
            if not self._armed.is_set():
                return True, ""
            self._armed.clear()
            self.held.append(held)
            try:
                self.on_hold(held)
            finally:
                self._done.set()
        return False, f"held by the chaos test: the operator was killed before it could write run {held.index}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hold = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review.get("request") or {}
                allowed, message = hold.review(request)
                answer: dict[str, Any] = {"uid": request.get("uid"), "allowed": allowed}
                if message:
                    answer["status"] = {"code": 409, "message": message}
                body = json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        return Handler
