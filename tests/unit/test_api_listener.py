"""The REST API's listener (issue 25, item 7) on a real uvicorn server on 127.0.0.1, spoken to with raw sockets.

What is tested here happens below the ASGI app, where FastAPI's TestClient does not reach: which address
a request comes from (X-Forwarded-For), how long a connection may take to send its headers, how many
connections are served at once. Each server is uvicorn configured by `server.options`, as `schedexec api`
runs it, on an ephemeral port, in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schedexec.api import server
from schedexec.api.app import BodyLimit, create_app
from schedexec.api.cache import ExecutionCache
from schedexec.api.errors import ApiError
from schedexec.settings import ApiSettings
from tests.support import self_signed_cert, trusting
from tests.unit.api_fake import FakeKube
from tests.unit.test_api_app import SETTINGS

SLACK = 1.5
"""Seconds a deadline may be late on a loaded test machine (the event loop's timers are not exact)."""


@contextlib.contextmanager
def listening(app: Any, settings: ApiSettings, tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    """`app` served as `schedexec api` serves it (but on 127.0.0.1 and a free port, in a thread), over TLS
    with `tls` (certificate and key files); the port."""
    cert, key = (str(tls[0]), str(tls[1])) if tls else (None, None)
    options = {**server.options(settings, cert, key), "host": "127.0.0.1", "port": 0, "log_level": "warning"}
    served = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=served.run, name="uvicorn", daemon=True)
    thread.start()
    started = time.monotonic()
    while not served.started:
        assert thread.is_alive() and time.monotonic() - started < 10, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield served.servers[0].sockets[0].getsockname()[1]
    finally:
        served.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def api(settings: ApiSettings) -> Iterator[int]:
    """The schedexec REST API (on an in-memory Kubernetes) served with `settings`; the port."""
    kube = FakeKube()
    with listening(create_app(settings, kube, ExecutionCache(kube)), settings) as port:
        yield port


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def request(path: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: schedexec", *headers, "", ""]
    return "\r\n".join(lines).encode()


def answer(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of the next response on `connection` (with a Content-Length)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"the server closed the connection without answering: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = connection.recv(65536)
        assert chunk, "the server closed the connection in the middle of an answer"
        body += chunk
    return int(status_line.split()[1]), headers, body


def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request on a connection of its own."""
    with connect(port) as connection:
        connection.sendall(data)
        return answer(connection)


def closed_by_server(connection: socket.socket, within: float) -> float:
    """Seconds until the server closed `connection` (read EOF or reset), failing past `within`."""
    started = time.monotonic()
    connection.settimeout(within)
    try:
        while connection.recv(65536):
            pass
    except TimeoutError:
        pytest.fail(f"the connection is still open after {within}s")
    except (ConnectionResetError, ssl.SSLEOFError):  # closed without a goodbye: closed
        pass
    return time.monotonic() - started


# --- forwarded headers: believed only from the configured proxies --------------------------------


def junk(i: int, forwarded: str) -> bytes:
    """A poll with a token never seen (each costs a TokenReview), claiming to come from `forwarded`."""
    return request("/v2/exec/poll/0000-0001", f"Authorization: Bearer junk-{i}", f"X-Forwarded-For: {forwarded}")


BUDGET = SETTINGS.model_copy(update={"review_burst_per_client": 3, "reviews_per_second_per_client": 0.01})


def test_a_spoofed_x_forwarded_for_does_not_buy_a_new_review_budget() -> None:
    """Through a port-forward or a mesh sidecar every client comes from 127.0.0.1, which uvicorn believed."""
    with api(BUDGET) as port:
        statuses = [exchange(port, junk(i, f"203.0.113.{i}"))[0] for i in range(6)]
    assert statuses == [401] * 3 + [429] * 3, "every address named in X-Forwarded-For shares the peer's budget"


def test_x_forwarded_for_is_believed_from_a_configured_proxy() -> None:
    with api(BUDGET.model_copy(update={"trusted_proxies": ["127.0.0.0/8"]})) as port:
        statuses = [exchange(port, junk(i, f"203.0.113.{i}"))[0] for i in range(6)]
        assert statuses == [401] * 6, "each client behind the proxy has a budget of its own"
        statuses = [exchange(port, junk(i, "203.0.113.77"))[0] for i in range(6, 10)]
        assert statuses == [401] * 3 + [429]
        _, _, body = exchange(port, junk(10, "203.0.113.77"))
        assert b"from 203.0.113.77" in body, "the 429 names the client, not the proxy"


async def client_address(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app answering the address its request came from."""
    if scope["type"] == "http":
        address = scope["client"][0].encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(address))]}
        )
        await send({"type": "http.response.body", "body": address})


@pytest.fixture(scope="module")
def echo() -> Iterator[int]:
    settings = ApiSettings(plain_http=True)
    with listening(client_address, settings) as port:
        yield port


forwarded_values = st.lists(
    st.one_of(st.ip_addresses().map(str), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)),
    min_size=1,
    max_size=4,
).map(", ".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(forwarded=forwarded_values, proto=st.sampled_from(["X-Forwarded-For", "x-forwarded-for", "X-Real-IP"]))
def test_no_forwarded_header_changes_the_client_address_by_default(echo: int, forwarded: str, proto: str) -> None:
    status, _, body = exchange(echo, request("/", f"{proto}: {forwarded}"))
    assert (status, body) == (200, b"127.0.0.1")


@pytest.mark.parametrize("entry", ["*", "not-an-address", "10.0.0.1/8", "localhost"])
def test_a_trusted_proxy_is_an_address_or_network_never_everybody(entry: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="trusted_proxies"):
        ApiSettings(trusted_proxies=[entry])


def test_uvicorn_is_given_the_listener_settings() -> None:
    settings = ApiSettings(
        trusted_proxies=["10.0.0.7", "fd00::/8"],
        header_timeout_seconds=3,
        body_timeout_seconds=20,
        keep_alive_timeout_seconds=7,
        max_connections=40,
    )
    options = server.options(settings, "cert.pem", "key.pem")
    assert options["proxy_headers"] is True and options["forwarded_allow_ips"] == ["10.0.0.7/32", "fd00::/8"]
    protocol = options["http"]
    assert issubclass(protocol, server.Deadlines) and (protocol.header_timeout, protocol.body_timeout) == (3, 20)
    assert (options["timeout_keep_alive"], options["limit_concurrency"]) == (7, 41)
    assert (options["ssl_certfile"], options["ssl_keyfile"]) == ("cert.pem", "key.pem")
    assert server.options(ApiSettings(), None, None)["proxy_headers"] is False, "trust nobody by default"
    assert server.Deadlines.header_timeout == 10.0, "the class each server gets is its own"


# --- slow headers: closed within the deadline, while others are served --------------------------

QUICK = ApiSettings(plain_http=True, header_timeout_seconds=0.5)


def test_a_client_sending_its_headers_slowly_is_disconnected_while_a_normal_client_is_served() -> None:
    with api(QUICK) as port, connect(port) as slow:
        slow.sendall(b"GET /livez HTTP/1.1\r\n")
        started = time.monotonic()
        for i in range(4):  # a header line every 0.2 s: what kept uvicorn's keep-alive timer from ever firing
            time.sleep(0.2)
            with contextlib.suppress(OSError):
                slow.sendall(f"X-Slow-{i}: 1\r\n".encode())
            status, _, body = exchange(port, request("/livez"))
            assert (status, body) == (200, b'{"live":true}'), "a normal client is served meanwhile"
        closed_by_server(slow, within=SLACK)
        assert time.monotonic() - started < QUICK.header_timeout_seconds + SLACK


def test_over_tls_too_a_slow_client_is_disconnected_and_a_normal_one_served(tmp_path: Path) -> None:
    """With TLS the protocol sees a connection once its handshake is done; the deadline counts from there."""
    cert, key = self_signed_cert(tmp_path)
    kube = FakeKube()
    with listening(create_app(QUICK, kube, ExecutionCache(kube)), QUICK, (cert, key)) as port:
        context = trusting(cert)
        with context.wrap_socket(connect(port), server_hostname="127.0.0.1") as slow:
            slow.sendall(b"GET /livez HTTP/1.1\r\n")
            with context.wrap_socket(connect(port), server_hostname="127.0.0.1") as normal:
                normal.sendall(request("/livez"))
                assert answer(normal)[:1] == (200,)
            closed_by_server(slow, within=QUICK.header_timeout_seconds + SLACK)


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout() -> None:
    with api(QUICK) as port, connect(port) as silent:
        assert closed_by_server(silent, within=QUICK.header_timeout_seconds + SLACK) >= 0.4


def test_the_next_request_on_a_kept_alive_connection_has_the_same_deadline() -> None:
    settings = QUICK.model_copy(update={"keep_alive_timeout_seconds": 60})
    with api(settings) as port, connect(port) as connection:
        connection.sendall(request("/livez"))
        assert answer(connection)[0] == 200
        time.sleep(1.0)  # idle longer than the header timeout: the keep-alive timeout applies, not it
        connection.sendall(request("/livez"))
        assert answer(connection)[0] == 200, "an idle kept-alive connection is not closed by the header timeout"
        connection.sendall(b"GET /livez HTTP/1.1\r\nHost: schedexec\r\n")  # and never the blank line
        assert closed_by_server(connection, within=settings.header_timeout_seconds + SLACK) >= 0.4


def test_a_slow_request_body_is_not_cut_by_the_header_timeout() -> None:
    """The deadline covers the headers; the body (bounded by its size limit) is the app's to read."""
    with api(QUICK.model_copy(update={"insecure": True})) as port, connect(port) as connection:
        body = b'{"data": {"type": "execution", "attributes": {"component": "nope", "method": "m"}}}'
        connection.sendall(
            request("/v2/executions", "Content-Type: application/json", f"Content-Length: {len(body)}", method="POST")
        )
        for part in (body[:20], body[20:40], body[40:]):
            time.sleep(0.3)
            connection.sendall(part)
        status, _, answered = answer(connection)
        assert status == 404 and b"nope" in answered, "the whole request read and judged"


# --- concurrency: past max_connections, 503 -------------------------------------------------------


def test_past_max_connections_a_request_is_answered_503_and_its_connection_closed() -> None:
    settings = ApiSettings(plain_http=True, max_connections=2, header_timeout_seconds=30)
    with api(settings) as port, connect(port) as held:
        status, _, _ = exchange(port, request("/livez"))
        assert status == 200, "two connections (one held, one asking) are served"
        with connect(port), connect(port) as third:  # accepted in this order: held and the second count
            third.sendall(request("/livez"))
            status, headers, _ = answer(third)
            assert (status, headers["connection"]) == (503, "close")
            closed_by_server(third, within=SLACK)
        served_again = time.monotonic() + 10  # once the server saw the two connections go away
        while (status := exchange(port, request("/livez"))[0]) == 503 and time.monotonic() < served_again:
            time.sleep(0.05)
        assert status == 200, "served again once a connection went away"
        held.sendall(request("/livez"))
        assert answer(held)[0] == 200


# --- bodies: refused within the limit, never read past it -----------------------------------------

SMALL = ApiSettings(plain_http=True, insecure=True, max_body_bytes=100_000, header_timeout_seconds=0.5)


def test_a_declared_length_over_the_limit_is_413_before_any_of_the_body_is_read() -> None:
    with api(SMALL) as port, connect(port) as connection:
        headers = ("Content-Type: application/json", "Content-Length: 100001", "Expect: 100-continue")
        connection.sendall(request("/v2/executions", *headers, method="POST"))
        status, answered, body = answer(connection)  # no "100 Continue" first: the client need send nothing
        assert (status, answered["connection"]) == (413, "close")
        (error,) = json.loads(body)["errors"]
        assert error["detail"] == "the request body exceeds 100000 bytes" and error["meta"] == {"maxBytes": 100_000}
        closed_by_server(connection, within=SLACK)


def test_a_body_sent_slowly_is_cut_at_the_body_deadline_whether_read_or_refused() -> None:
    """The guard answers 401 before the body is read; trickling the rest kept the connection open for ever,
    and so did trickling a body the API reads."""
    settings = SMALL.model_copy(update={"body_timeout_seconds": 1.0})
    with api(settings) as read, api(settings.model_copy(update={"insecure": False})) as refused:
        for port in (read, refused):
            with connect(port) as connection:
                connection.sendall(request("/v2/executions", "Content-Length: 10000", method="POST") + b"{")
                started = time.monotonic()
                if port == refused:
                    assert answer(connection)[0] == 401
                with contextlib.suppress(OSError):
                    for _ in range(int((settings.body_timeout_seconds + SLACK) / 0.2)):
                        connection.sendall(b" ")
                        time.sleep(0.2)
                closed_by_server(connection, within=SLACK)
                assert time.monotonic() - started < settings.body_timeout_seconds + SLACK


def test_after_a_refused_body_arrives_the_next_request_has_the_header_deadline() -> None:
    """The body's bytes cancelled uvicorn's keep-alive timer, armed at the answer: nothing else closes."""
    settings = QUICK.model_copy(update={"keep_alive_timeout_seconds": 60})
    with api(settings) as port, connect(port) as connection:
        connection.sendall(request("/v2/executions", "Content-Length: 100", method="POST") + b"{")
        assert answer(connection)[0] == 401
        time.sleep(0.1)
        connection.sendall(b" " * 99)
        assert closed_by_server(connection, within=settings.header_timeout_seconds + SLACK) >= 0.4


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    settings = QUICK.model_copy(update={"header_timeout_seconds": 30, "keep_alive_timeout_seconds": 1})
    with api(settings) as port, connect(port) as connection:
        connection.sendall(request("/livez"))
        assert answer(connection)[0] == 200
        assert closed_by_server(connection, within=1 + SLACK) >= 0.9


def test_a_request_body_past_the_limit_is_not_received_further() -> None:
    """Chunks of an undeclared length are counted as they come: the one that passes the limit is the last
    one asked for, and the app never sees it."""
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (message := await receive())["more_body"]:
            seen.append(len(message["body"]))

    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"x" * 30_000, "more_body": asked < 100}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/executions", "headers": [], "query_string": b""}
    with pytest.raises(ApiError) as refused:
        asyncio.run(BodyLimit(app, limit=100_000)(scope, receive, send))
    assert (refused.value.status, refused.value.headers) == (413, {"Connection": "close"})
    assert asked == 4 and seen == [30_000] * 3, "120,000 bytes received, 90,000 passed on: nothing more"
