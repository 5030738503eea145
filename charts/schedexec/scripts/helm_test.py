"""`helm test` of the schedexec chart: one ScheduledExecution, run by the release's operator to Succeeded.

The execution runs the shop example component's selectModel getCategories against this pod, which answers
GET /categories itself, so the test needs no service outside the release. Python's standard library only (the
operator image holds no Kubernetes client of its own): the in-cluster API server, this pod's ServiceAccount token.
Exit 0 when the execution succeeded with the categories served here; 1, printing its status, otherwise. The
execution is deleted either way.
"""

from __future__ import annotations

import http.server
import json
import os
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
CATEGORIES = {"helm-test": "Served by the helm test pod"}
FINAL = {"Succeeded", "Failed", "TimedOut", "Cancelled"}


class Shop(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/categories":
            self.send_error(404)
            return
        body = json.dumps(CATEGORIES).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        print("shop:", format % args, file=sys.stderr, flush=True)


def call(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    with open(f"{ACCOUNT}/token") as token:
        headers = {"Authorization": f"Bearer {token.read().strip()}", "Content-Type": "application/json"}
    request = urllib.request.Request(
        f"https://{host}:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers=headers,
        method=method,
    )
    context = ssl.create_default_context(cafile=f"{ACCOUNT}/ca.crt")
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.load(response)  # type: ignore[no-any-return]


def main() -> int:
    namespace, port = os.environ["SCHEDEXEC_TEST_NAMESPACE"], int(os.environ["SCHEDEXEC_TEST_PORT"])
    timeout = int(os.environ["SCHEDEXEC_TEST_TIMEOUT_SECONDS"])
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), Shop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    collection = f"/apis/schedexec.io/v1alpha1/namespaces/{namespace}/scheduledexecutions"
    body = {
        "apiVersion": "schedexec.io/v1alpha1",
        "kind": "ScheduledExecution",
        "metadata": {"generateName": os.environ["SCHEDEXEC_TEST_NAME"] + "-"},
        "spec": {
            "component": {"image": os.environ["SCHEDEXEC_TEST_IMAGE"]},
            "method": "selectModel",
            "function": "getCategories",
            "args": {"shopUrl": f"http://{os.environ['SCHEDEXEC_TEST_POD_IP']}:{port}"},
            "timeoutSeconds": timeout,
            # set with timeoutSeconds: the CRD defaults it to 300 and refuses a run timeout above the execution's
            "runTimeoutSeconds": min(60, timeout),
        },
    }
    try:
        name = call("POST", collection, body)["metadata"]["name"]
    except urllib.error.HTTPError as exc:
        print(f"could not create the execution: {exc}: {exc.read().decode(errors='replace')}", flush=True)
        return 1
    print(f"created ScheduledExecution {namespace}/{name}", flush=True)
    try:
        deadline = time.monotonic() + timeout + 30
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = call("GET", f"{collection}/{name}").get("status") or {}
            if status.get("phase") in FINAL:
                break
            time.sleep(1)
        if status.get("phase") == "Succeeded" and status.get("result") == CATEGORIES:
            print(f"{namespace}/{name} Succeeded with {json.dumps(status['result'])}", flush=True)
            return 0
        print(f"{namespace}/{name} did not succeed: {json.dumps(status, indent=2)}", flush=True)
        return 1
    finally:
        try:
            call("DELETE", f"{collection}/{name}")
        except urllib.error.URLError as exc:
            print(f"could not delete {namespace}/{name}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
