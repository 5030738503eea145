"""A fake of the vendor APIs the XSOAR integrations under test call, counting every call.

Why: the integrations in tests/thirdparty/demisto-content run unmodified, so they talk to their vendor's
HTTP API; CI reaches no vendor. This server answers the endpoints those integrations use, checks the
credentials they must send, and counts each call by route, so a test can say "the create call happened
exactly once". It is plain standard library, so it runs in the test process (tests/runner) or as a pod
from the XSOAR test image (tests/node): `python fakevendor.py PORT`.

- Arcanna.AI (ArcannaAI.py): `POST /api/v1/events/` creates an event; `GET /api/v1/events/<job>/<id>`
  says `pending_inference` until it was asked READY_AFTER times (for ever for an id starting with
  `never`), then the inference; an event id starting with `missing` answers 500. Every call needs the
  header `x-arcanna-api-key: <API_KEY>`.
- CAPE sandbox (CapeSandbox.py): `POST /apiv2/api-token-auth/` trades USERNAME/PASSWORD for a token;
  `POST /apiv2/tasks/create/url/` creates a task (a URL containing `refused` is refused with CAPE's
  `error: true`); `GET /apiv2/tasks/status/<id>/` says `running` until asked READY_AFTER times (never for
  a URL containing `never`), then `reported`; `GET /apiv2/tasks/view/<id>/` and the report follow. Every
  call but the token's needs `Authorization: Token <the token>`.
- `GET /calls` answers the counts, `{"<METHOD> <route>": n}`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

API_KEY = "arcanna key with spaces "
USERNAME = "analyst"
PASSWORD = "cape pass"
TOKEN = "cape-token-1"
READY_AFTER = int(os.environ.get("FAKEVENDOR_READY_AFTER", "3"))

ROUTES = [
    ("POST", re.compile(r"^/api/v1/events/$"), "arcanna-create"),
    ("GET", re.compile(r"^/api/v1/events/(?P<job>[^/]+)/(?P<event>[^/]+)$"), "arcanna-status"),
    ("POST", re.compile(r"^/apiv2/api-token-auth/$"), "cape-token"),
    ("POST", re.compile(r"^/apiv2/tasks/create/url/$"), "cape-create"),
    ("GET", re.compile(r"^/apiv2/tasks/status/(?P<task>\d+)/$"), "cape-status"),
    ("GET", re.compile(r"^/apiv2/tasks/view/(?P<task>\d+)/$"), "cape-view"),
    ("GET", re.compile(r"^/apiv2/tasks/get/report/(?P<task>\d+)/json/zip/$"), "cape-report"),
]


class Vendor:
    """The fake's state: calls by route, Arcanna's events, CAPE's tasks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.polls: Counter[str] = Counter()
        self.tasks: dict[int, str] = {}

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        for verb, pattern, route in ROUTES:
            match = pattern.match(path)
            if verb == method and match:
                with self.lock:
                    self.calls[f"{method} {route}"] += 1
                    return getattr(self, route.replace("-", "_"))(headers, body, **match.groupdict())
        if method == "GET" and path == "/calls":
            with self.lock:
                return 200, dict(self.calls)
        return 404, {"detail": f"no route {method} {path}"}

    def arcanna_create(self, headers: Any, body: bytes) -> tuple[int, Any]:
        if headers.get("x-arcanna-api-key") != API_KEY:
            return 401, {"detail": "bad api key"}
        event = json.loads(body)
        return 201, {
            "event_id": f"ev-{self.calls['POST arcanna-create']}",
            "job_id": event["job_id"],
            "status": "pending_inference",
            "ingest_timestamp": "2026-12-07T11:00:00Z",
        }

    def arcanna_status(self, headers: Any, body: bytes, job: str, event: str) -> tuple[int, Any]:
        if headers.get("x-arcanna-api-key") != API_KEY:
            return 401, {"detail": "bad api key"}
        if event.startswith("missing"):
            return 500, {"detail": f"event {event} is unknown to job {job}"}
        self.polls[event] += 1
        if self.polls[event] < READY_AFTER or event.startswith("never"):
            return 200, {"event_id": event, "status": "pending_inference"}
        return 200, {"event_id": event, "status": "OK", "result": "escalate_alert", "confidence_score": 0.93}

    def cape_token(self, headers: Any, body: bytes) -> tuple[int, Any]:
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if (form.get("username"), form.get("password")) != (USERNAME, PASSWORD):
            return 400, {"non_field_errors": ["Unable to log in with provided credentials."]}
        return 200, {"token": TOKEN}

    def _cape_denied(self, headers: Any) -> tuple[int, Any] | None:
        if headers.get("Authorization") != f"Token {TOKEN}":
            return 401, {"detail": "Invalid token."}
        return None

    def cape_create(self, headers: Any, body: bytes) -> tuple[int, Any]:
        if denied := self._cape_denied(headers):
            return denied
        url = parse_qs(body.decode()).get("url", [""])[0]
        if "refused" in url:
            return 200, {"error": True, "error_value": f"URL {url} refused by the sandbox policy"}
        task = len(self.tasks) + 1
        self.tasks[task] = url
        return 200, {"error": False, "data": {"task_ids": [task]}}

    def cape_status(self, headers: Any, body: bytes, task: str) -> tuple[int, Any]:
        if denied := self._cape_denied(headers):
            return denied
        self.polls[f"task-{task}"] += 1
        never = "never" in self.tasks.get(int(task), "")
        ready = not never and self.polls[f"task-{task}"] >= READY_AFTER
        return 200, {"error": False, "data": "reported" if ready else "running"}

    def cape_view(self, headers: Any, body: bytes, task: str) -> tuple[int, Any]:
        if denied := self._cape_denied(headers):
            return denied
        return 200, {
            "error": False,
            "data": {"id": int(task), "target": self.tasks.get(int(task)), "status": "reported"},
        }

    def cape_report(self, headers: Any, body: bytes, task: str) -> tuple[int, Any]:
        if denied := self._cape_denied(headers):
            return denied
        return 200, b"PK\x05\x06" + bytes(18)  # an empty zip archive


def serve(port: int, host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, Vendor]:
    """Start the fake in a daemon thread; the server (`.server_address`, `.shutdown()`) and its state."""
    vendor = Vendor()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, payload = vendor.handle(self.command, self.path.split("?")[0], self.headers, body)
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json"
            )
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: Any) -> None:
            print(f"fakevendor: {format % args}", file=sys.stderr)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, vendor


if __name__ == "__main__":
    running, _ = serve(int(sys.argv[1]) if len(sys.argv) > 1 else 8080, "0.0.0.0")
    threading.Event().wait()
