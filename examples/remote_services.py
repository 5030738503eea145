"""The remote systems the example components talk to, as one small HTTP server.

Real HTTP on loopback, for the examples' end-to-end tests and `make demo`:

- a shop: `GET /categories`, `GET /categories/{id}/schema`, `GET /me`
  (all need the header `X-Api-Key: <key>`);
- a malware sandbox: `POST /detonations` submits a file and answers its id;
  `GET /detonations/{id}` answers `running` for the first `polls` polls,
  then `complete` with a verdict;
- a rate-limited API: `GET /quota` answers 429 for the first `limit`
  calls of a client (`?client=`), then 200.

    python examples/remote_services.py --port 18765 --api-key demo-key [--host 10.244.0.1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

CATEGORIES = {"books": "Books", "music": "Music", "garden": "Garden"}
SCHEMAS = {
    "books": {"isbn": {"type": "string"}, "title": {"type": "string"}, "pages": {"type": "integer"}},
    "music": {"artist": {"type": "string"}, "title": {"type": "string"}, "seconds": {"type": "integer"}},
    "garden": {"name": {"type": "string"}, "weightKg": {"type": "number"}},
}


class Remote:
    def __init__(self, api_key: str, polls: int = 2, limit: int = 2) -> None:
        self.api_key = api_key
        self.polls = polls
        self.limit = limit
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.detonations: dict[str, int] = {}
        self.quota_calls: dict[str, int] = {}

    def answer(self, method: str, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] in (["categories"], ["me"]) and headers.get("X-Api-Key") != self.api_key:
            return 401, {"error": "invalid api key"}
        with self.lock:
            if method == "GET" and parts == ["categories"]:
                return 200, CATEGORIES
            if method == "GET" and len(parts) == 3 and parts[0] == "categories" and parts[2] == "schema":
                schema = SCHEMAS.get(parts[1])
                return (
                    (200, {"type": "object", "properties": schema}) if schema else (404, {"error": "no such category"})
                )
            if method == "GET" and parts == ["me"]:
                return 200, {"account": "demo-shop", "plan": "gold"}
            if method == "POST" and parts == ["detonations"]:
                job = f"det-{next(self.ids)}"
                self.detonations[job] = 0
                return 202, {"id": job, "status": "running"}
            if method == "GET" and len(parts) == 2 and parts[0] == "detonations":
                if parts[1] not in self.detonations:
                    return 404, {"error": "no such detonation"}
                self.detonations[parts[1]] += 1
                if self.detonations[parts[1]] <= self.polls:
                    return 200, {"id": parts[1], "status": "running"}
                return 200, {"id": parts[1], "status": "complete", "verdict": "benign", "score": 3}
            if method == "GET" and parts == ["quota"]:
                client = query.get("client", ["anonymous"])[0]
                calls = self.quota_calls[client] = self.quota_calls.get(client, 0) + 1
                if calls <= self.limit:
                    return 429, {"error": "rate limit exceeded"}
                return 200, {"client": client, "calls": calls, "data": "the answer"}
        return 404, {"error": f"no route {method} {path}"}


def serve(remote: Remote, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving on `host` (loopback, or the real node's address for pods) in a daemon thread.

    `server.server_port` tells the port.
    """

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            url = urlparse(self.path)
            status, body = remote.answer(method, url.path, parse_qs(url.query), self.headers)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self._reply("POST")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18765)
    parser.add_argument("--api-key", default="demo-key")
    parser.add_argument("--host", default="127.0.0.1", help="10.244.0.1 on the real node, where pods reach it")
    options = parser.parse_args()
    server = serve(Remote(options.api_key), options.port, options.host)
    print(f"remote services on http://{options.host}:{server.server_port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
