"""A fake of the Petstore API elastic.io's petstore component calls, reachable the way the component reaches
the real one: as an HTTPS proxy.

The component (elasticio/petstore-component-nodejs, lib/petstoreClient.js) has its API's address written in
its code, `https://petstore.elastic.io/v2`, and calls it with the `request` library, which honours
HTTPS_PROXY. So the fake is an HTTP proxy that answers CONNECT itself: it terminates TLS with a self-signed
certificate for petstore.elastic.io (the component's process runs with NODE_TLS_REJECT_UNAUTHORIZED=0, the test's
only change to its environment) and serves, behind it, the three endpoints the component uses:
`GET /v2/user/me` (verifyCredentials), `GET /v2/pet/statuses` (the getStatusModel select model) and, for
completeness, `GET /v2/pet/findByStatus`. Every endpoint wants the header `api-key: <API_KEY>` (401 otherwise),
as the real API does with its documented key `secret`. `calls` counts the requests by path.
"""

from __future__ import annotations

import collections
import datetime
import json
import socketserver
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

API_KEY = "secret"
"""The Petstore API's documented key (component.json's note: "Please use 'secret' as API key")."""
HOST = "petstore.elastic.io"
STATUSES = ["available", "pending", "sold"]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "petstore.crt", directory / "petstore.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class _Api(BaseHTTPRequestHandler):
    """The Petstore API behind the TLS the proxy terminated."""

    server: Any  # the FakePetstore (set by the proxy handler)

    def do_GET(self) -> None:
        self.server.calls[self.path.split("?")[0]] += 1
        if self.headers.get("api-key") != API_KEY:
            self._answer(401, {"code": 401, "type": "error", "message": "Unauthorized"})
        elif self.path == "/v2/user/me":
            self._answer(200, {"id": 1, "username": "elasticio"})
        elif self.path == "/v2/pet/statuses":
            self._answer(200, STATUSES)
        elif self.path.startswith("/v2/pet/findByStatus"):
            self._answer(200, [{"id": 7, "name": "Rex", "status": self.path.rpartition("=")[2]}])
        else:
            self._answer(404, {"code": 404, "message": "Not Found"})

    def _answer(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Proxy(socketserver.StreamRequestHandler):
    """CONNECT petstore.elastic.io:443, then the API over TLS on the same connection."""

    server: FakePetstore

    def handle(self) -> None:
        request_line = self.rfile.readline(65536).decode("latin-1")
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass
        method, target = [*request_line.split(), "", ""][:2]
        if method != "CONNECT" or target.partition(":")[0] != HOST:
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        tls = self.server.tls.wrap_socket(self.connection, server_side=True)
        _Api(tls, self.client_address, self.server)


class FakePetstore(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Proxy)
        self.calls: collections.Counter[str] = collections.Counter()
        self._certs = tempfile.TemporaryDirectory(prefix="fake-petstore-")
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(*_self_signed(Path(self._certs.name)))
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def proxy_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._certs.cleanup()
