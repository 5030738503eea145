"""How the REST API meets the network: uvicorn, told whom to believe and how long to wait.

uvicorn's defaults are made for a server behind a proxy on the same host,
and the API is not one:

- It believes `X-Forwarded-For` from 127.0.0.1 and ::1. Behind a
  `kubectl port-forward` or a mesh sidecar every client arrives from there,
  so each request could name its own client address, and with it a fresh
  review budget (`limits.Buckets` rate-limits reviews per client address).
  Here forwarded headers are believed only from the proxies listed in
  `SCHEDEXEC_API_TRUSTED_PROXIES`, none by default.
- It has no timeout for a request's headers: `timeout_keep_alive` covers
  the silence between two requests and is cancelled by any byte, so a
  client that sends a header line now and then holds its connection for
  ever. `HeaderDeadline` closes a connection whose request line and headers
  are not complete `header_timeout_seconds` after it opened (or after the
  first byte of its next request), or that still sends the body of a
  request answered without it (a refusal) that long after the answer. It
  is uvicorn's httptools protocol (the one `http="auto"` picks, httptools
  being a dependency) with a timer armed and disarmed from the parser's
  own callbacks (`on_headers_complete`, `on_message_complete`) and
  uvicorn's `on_response_complete`, so it adds no second parser and
  nothing private.
- It serves any number of connections. `limit_concurrency` bounds them
  (and the requests in progress): a request that arrives past the bound is
  answered 503 with `Connection: close`. Connections still sending their
  headers count too, which the header deadline keeps short.

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


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers take longer than
    `header_timeout` seconds: counted from the connection's opening for its first request and from the
    first byte after the previous request's body for the next one. A body the API reads is not timed
    here (its size is bounded, and the API may be slow to read it, not the client to send it), nor is
    the answer; but the rest of a body the API answered without reading (a refusal: 401, 403, 413)
    has the same deadline from the answer on, or a client could hold the connection sending it."""

    header_timeout: float = 10.0
    """Set per server by `deadline_protocol`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_deadline: asyncio.TimerHandle | None = None
        self.in_body = False
        """Between a request's headers and the end of its body: bytes now are body, not headers."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if not self.in_body:  # the first bytes of a request (or of the line breaks before one)
            self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a request that began in the bytes of the one before (pipelined)

    def on_headers_complete(self) -> None:
        self._disarm()
        self.in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.in_body = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.in_body:  # answered before its body was all sent (a refusal): the rest has the same deadline
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self.header_deadline is None:
            self.header_deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _disarm(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _expired(self) -> None:
        self.header_deadline = None
        if not self.transport.is_closing():
            address = self.client[0] if self.client else "a client"
            log.warning(
                "closing a connection from %s: no complete request headers within %ss", address, self.header_timeout
            )
            self.transport.close()


def deadline_protocol(header_timeout: float) -> type[HeaderDeadline]:
    """`HeaderDeadline` with `header_timeout`: uvicorn makes a protocol from its class and its own
    arguments only, so the timeout travels on a class of its own."""
    return type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": header_timeout})


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
        "http": deadline_protocol(settings.header_timeout_seconds),
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
