"""Client connections: deadlines for reading a request, and a cap on how many are open.

uvicorn's httptools protocol closes an idle keep-alive connection (``timeout_keep_alive``)
but waits forever for a request's headers or body, and for the first request of a connection
that never sends one; a client sending a byte now and then holds its socket until the process
runs out of file descriptors. :class:`GatewayHttpProtocol` adds:

* a header deadline (``header_timeout_s``): from the connection's opening, or from the first
  byte of a keep-alive connection's next request, to the end of the headers;
* a body deadline (``body_timeout_s``): from the end of the headers to the end of the body;
* a send deadline (``send_timeout_s``): a client that reads nothing of its answer for that long
  (its socket buffer stays full) is disconnected, which stops the upstream stream feeding it;
* a cap on open connections (``max_connections``): past it, a request is answered 503 with an
  OpenAI-shaped JSON error and the connection is closed, and a connection that sends nothing
  is closed after at most a second.

A request that misses a deadline is answered 408 (if it had started) and its connection
closed. One timer handle per connection carries both deadlines and is re-armed lazily: a
request that moves from headers to body to done only stores floats.

An answer whose length is known (``content-length``: every answer but a stream) leaves in one
write: uvicorn writes the head and the body separately, so :class:`OneWrite` holds the head
until the body follows. Each write is a system call and, on a busy gateway, a packet; this
halves both for every non-streaming answer. A stream's head is never held: a client learns
at once that its request was taken, however long the model takes to its first token.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any, cast

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from spaceai.config import Settings


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The client-connection settings a protocol instance enforces."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    send_timeout_s: float = 60.0
    max_connections: int = 10000


def _error(status: int, message: str, type_: str, code: str) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None,
                                   "code": code}})


_REASONS = {408: b"Request Timeout", 503: b"Service Unavailable"}


def _raw_response(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%s\r\n" % (status, _REASONS[status], len(body), extra)) + body


_HEADER_TIMEOUT = _raw_response(408, _error(
    408, "The request's headers did not arrive in time.", "invalid_request_error",
    "request_timeout"))
_BODY_TIMEOUT = _raw_response(408, _error(
    408, "The request's body did not arrive in time.", "invalid_request_error",
    "request_timeout"))
_OVERLOADED = _error(
    503, "The gateway has too many open connections; retry shortly.", "service_unavailable",
    "too_many_connections")


async def too_many_connections(scope: dict, receive: Any, send: Any) -> None:
    """The ASGI answer past the connection cap: a 503 that closes the connection."""
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"retry-after", b"1"),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": _OVERLOADED})


_IDLE, _HEADERS, _BODY = 0, 1, 2


class OneWrite:
    """A connection's transport that sends the head of a known-length answer together with
    its body. Armed for each request; between a head and its body, the head is held."""

    __slots__ = ("transport", "write", "_held", "is_closing", "get_extra_info",
                 "pause_reading", "resume_reading", "set_protocol", "get_protocol")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._held: bytes | None = None
        self.write = transport.write
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading
        self.set_protocol = transport.set_protocol
        self.get_protocol = transport.get_protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    def arm(self) -> None:
        """The next write may be an answer's head."""
        self.write = self._head

    def _head(self, data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 ") and b"\r\ncontent-length: " in data:
            self._held = data
            self.write = self._body
            return
        self.write = self.transport.write
        self.transport.write(data)

    def _body(self, data: bytes) -> None:
        held, self._held = self._held, None
        self.write = self.transport.write
        self.transport.write(held + data if held is not None else data)

    def flush(self) -> None:
        """Send a held head (an answer that ended without a body: HEAD, 204)."""
        if self._held is not None:
            self._body(b"")

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with read deadlines and a connection cap."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *,
                 limits: ConnectionLimits = ConnectionLimits()) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._phase = _IDLE
        self._read_by = 0.0  # loop time the current phase must end by
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._stalled: asyncio.TimerHandle | None = None  # armed while writing is paused

    # deadlines
    def _expect(self, phase: int, seconds: float) -> None:
        self._phase = phase
        self._read_by = self.loop.time() + seconds
        if self._timer is None or self._read_by < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = self._read_by
            self._timer = self.loop.call_at(self._read_by, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._phase == _IDLE or self.transport is None or self.transport.is_closing():
            return
        if self.loop.time() < self._read_by:  # the deadline moved on: look again then
            self._timer_at = self._read_by
            self._timer = self.loop.call_at(self._read_by, self._check)
            return
        if self._phase == _HEADERS:
            if self.parser is not None and self.headers is not None:
                self.transport.write(_HEADER_TIMEOUT)  # a request had started
        elif self.cycle is not None and not self.cycle.response_started:
            self.transport.write(_BODY_TIMEOUT)
        self.transport.close()

    # uvicorn's protocol
    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self.transport = cast(Any, OneWrite(transport))
        self.headers = cast(Any, None)  # no request started yet
        wait = self.limits.header_timeout_s
        if len(self.connections) > self.limits.max_connections:  # over the cap: no lingering
            wait = min(wait, 1.0)
        self._expect(_HEADERS, wait)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stalled is None:
            self._stalled = self.loop.call_later(self.limits.send_timeout_s,
                                                 self.transport.abort)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != _HEADERS:  # a new connection's deadline runs from its opening
            self._expect(_HEADERS, self.limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._expect(_BODY, self.limits.body_timeout_s)
        self.transport.arm()
        cap = self.limits.max_connections
        if len(self.connections) > cap or len(self.tasks) >= cap:
            app, self.app = self.app, too_many_connections
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = _IDLE
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.transport.flush()
        super().on_response_complete()


def server_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn ``Config`` options that enforce ``settings``' connection limits."""
    limits = ConnectionLimits(header_timeout_s=settings.header_timeout_s,
                              body_timeout_s=settings.body_timeout_s,
                              send_timeout_s=settings.send_timeout_s,
                              max_connections=settings.connection_cap())
    return {"http": functools.partial(GatewayHttpProtocol, limits=limits),
            "timeout_keep_alive": settings.keep_alive_s, "limit_concurrency": None}
