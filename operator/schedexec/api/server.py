"""How the REST API meets the network: uvicorn, told whom to believe and how long to wait.

uvicorn's defaults are made for a server behind a proxy on the same host,
and the API is not one:

- It believes `X-Forwarded-For` from 127.0.0.1 and ::1. Behind a
  `kubectl port-forward` or a mesh sidecar every client arrives from there,
  so each request could name its own client address, and with it a fresh
  review budget (`limits.Buckets` rate-limits reviews per client address).
  Here forwarded headers are believed only from the proxies listed in
  `SCHEDEXEC_API_TRUSTED_PROXIES`, none by default.
- It has no timeout for a request's headers, nor for its body:
  `timeout_keep_alive` covers the silence between two requests and is
  cancelled by any byte, so a client that sends a header line (or a byte
  of its body) now and then holds its connection for ever. `Deadlines`
  closes a connection whose request line and headers are not complete
  `header_timeout_seconds` after it opened (or after the first byte of its
  next request), or whose body is not complete `body_timeout_seconds` after
  its headers, read or not (the rest of a body sent after a refusal too).
  It is uvicorn's httptools protocol (the one `http="auto"` picks,
  httptools being a dependency) with a timer armed and disarmed from the
  parser's own callbacks (`on_message_begin`, `on_headers_complete`,
  `on_message_complete`) and uvicorn's `on_response_complete`, so it adds
  no second parser and nothing private.
- It serves any number of connections. `limit_concurrency` bounds them
  (and the requests in progress): a request that arrives past the bound is
  answered 503 with `Connection: close`. Connections still sending a
  request count too, which the deadlines keep short.

`options` is the decision (pure, tested field by field); `serve` only runs it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from schedexec.settings import ApiSettings

log = logging.getLogger("schedexec.api")


class Deadlines(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose client is too slow to send a request:
    its request line and headers must be complete within `header_timeout` seconds (counted from the
    connection's opening for its first request, from the first byte of the next one after that), its body
    within `body_timeout` seconds of its headers, whether the API reads that body or answers without it
    (a refusal). What the API does meanwhile, and its answer, are not timed here: a request the API is
    slow to answer is not the client's doing."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    """Both set per server by `deadline_protocol`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: asyncio.TimerHandle | None = None
        self.in_body = False
        """Between a request's headers and the end of its body: bytes now are body, not headers."""
        self.answered = False
        """The request whose headers came last is answered: if its body is still coming, it comes after a
        refusal, and uvicorn's keep-alive timer (armed at the answer) is cancelled by its first byte."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start(self.header_timeout, "request headers")

    def data_received(self, data: bytes) -> None:
        if not self.in_body:  # the first bytes of a request (or line breaks before one)
            self._start(self.header_timeout, "request headers")
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start(self.header_timeout, "request headers")  # one that began in the bytes of the last

    def on_headers_complete(self) -> None:
        self._stop()
        self.in_body, self.answered = True, False
        self._start(self.body_timeout, "request body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop()
        self.in_body = False
        super().on_message_complete()
        if self.answered:  # the body ended after its answer: nothing else bounds the wait for the next request
            self._start(self.header_timeout, "request headers")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.answered = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def _start(self, timeout: float, awaited: str) -> None:
        """Close the connection if `awaited` is not complete in `timeout` seconds, unless a deadline runs."""
        if self.deadline is None:
            self.deadline = self.loop.call_later(timeout, self._expired, awaited, timeout)

    def _stop(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self, awaited: str, timeout: float) -> None:
        self.deadline = None
        if not self.transport.is_closing():
            address = self.client[0] if self.client else "a client"
            log.warning("closing a connection from %s: no complete %s within %ss", address, awaited, timeout)
            self.transport.close()


def deadline_protocol(header_timeout: float, body_timeout: float) -> type[Deadlines]:
    """`Deadlines` with these timeouts: uvicorn makes a protocol from its class and its own arguments
    only, so the timeouts travel on a class of their own."""
    return type("Deadlines", (Deadlines,), {"header_timeout": header_timeout, "body_timeout": body_timeout})


def options(settings: ApiSettings, cert: str | None, key: str | None) -> dict[str, Any]:
    """uvicorn.Config's keyword arguments for `settings` (and the TLS files, None for plain HTTP)."""
    trusted = [str(network) for network in settings.trusted_proxies]
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": settings.access_log,
        "ssl_certfile": cert,
        "ssl_keyfile": key,
        "http": deadline_protocol(settings.header_timeout_seconds, settings.body_timeout_seconds),
        "ws": "none",  # the API has no WebSocket route: an upgrade is an ordinary request
        # without trusted proxies the middleware is left out: no address it could believe, and no
        # FORWARDED_ALLOW_IPS from the environment (uvicorn's fallback) to change that behind our back
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted,
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        # uvicorn refuses a request once the open connections, this one included, reach the limit
        # (or the requests in progress do): one more, so that max_connections are served
        "limit_concurrency": settings.max_connections + 1,
    }


def serve(app: Any, settings: ApiSettings, cert: str | None = None, key: str | None = None) -> None:
    """Serve `app` with `settings` until stopped."""
    uvicorn.Server(uvicorn.Config(app, **options(settings, cert, key))).run()
