"""What sailor itself produces: a component's own sailor run on this machine's Node.js, the way elastic.io runs
a service method (`node <component>/node_modules/elasticio-sailor-nodejs/runService.js <method>` with the
ELASTICIO_* variables), POSTing to a tiny HTTP catcher. The tests compare what schedexec reports for the same
component, method and cfg with what this catches (tests/node/test_elasticio_native.py)."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

RUN_SERVICE = "node_modules/elasticio-sailor-nodejs/runService.js"


class _Catcher(BaseHTTPRequestHandler):
    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posted.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def sailor_post(
    component: Path,
    method: str,
    cfg: dict[str, Any],
    module: str | None = None,
    function: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The `{status, data}` sailor in `component` POSTs for `method` with `cfg`."""
    catcher = HTTPServer(("127.0.0.1", 0), _Catcher)
    catcher.posted = []  # type: ignore[attr-defined]
    threading.Thread(target=catcher.serve_forever, daemon=True).start()
    variables = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(component),
        "ELASTICIO_POST_RESULT_URL": f"http://127.0.0.1:{catcher.server_address[1]}/",
        "ELASTICIO_CFG": json.dumps(cfg),
        "ELASTICIO_COMPONENT_PATH": "",  # sailor joins it to its working directory, the component's
        "ELASTICIO_API_URI": "http://127.0.0.1:9/",
        "ELASTICIO_API_USERNAME": "host",
        "ELASTICIO_API_KEY": "none",
        "ELASTICIO_API_REQUEST_RETRY_ATTEMPTS": "3",
        "ELASTICIO_API_REQUEST_RETRY_DELAY": "100",
        **({"ELASTICIO_ACTION_OR_TRIGGER": module} if module else {}),
        **({"ELASTICIO_GET_MODEL_METHOD": function} if function else {}),
        **(env or {}),
    }
    try:
        subprocess.run(
            ["node", str(component / RUN_SERVICE), method], env=variables, cwd=component, timeout=120, check=False
        )
    finally:
        catcher.shutdown()
        catcher.server_close()
    (posted,) = catcher.posted  # type: ignore[attr-defined]
    return posted  # type: ignore[no-any-return]
