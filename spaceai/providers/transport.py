"""A lean HTTP/1.1 client for upstream calls: keep-alive pools, httptools parsing, timeouts.

The request path calls an upstream once per request, so this is where a gateway spends much
of its time. A general client (aiohttp) builds request and response objects, trace hooks,
cookie handling and a timer per request; this one writes a precomputed header block and the
body in one ``transport.write``, parses the answer with llhttp (httptools), and reuses
connections, LIFO, per origin. It speaks exactly what upstream APIs need: POST or GET with a
body, a complete or a streamed answer (chunked or not), plain TCP or TLS.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

_MAX_BUFFER = 1 << 20  # pause reading past 1 MiB of unread body


class UpstreamClosed(ConnectionError):
    """The connection closed before the answer was complete."""


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def _wait(fut: asyncio.Future, timeout: float | None):  # noqa: ANN202
    """Await ``fut``, failing it with TimeoutError after ``timeout`` seconds (no extra task)."""
    if timeout is None:
        return await fut
    handle = asyncio.get_running_loop().call_later(timeout, _expire, fut)
    try:
        return await fut
    finally:
        handle.cancel()


class _Connection(asyncio.Protocol):
    """One upstream connection; carries one request at a time."""

    __slots__ = ("transport", "parser", "status", "headers", "_name", "chunks", "buffered",
                 "complete", "keep_alive", "closed", "error", "waiter", "head_waiter", "paused",
                 "served")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.error: BaseException | None = None
        self.served = 0
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self._name = ""
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.waiter: asyncio.Future | None = None
        self.head_waiter: asyncio.Future | None = None
        self.paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"invalid HTTP from upstream: {exc}"))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            self._fail(exc or UpstreamClosed("upstream closed the connection"))

    def pause_writing(self) -> None:  # bodies are small; nothing to throttle
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_waiter is not None and not self.head_waiter.done():
            self.head_waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _MAX_BUFFER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        for fut in (self.head_waiter, self.waiter):
            if fut is not None and not fut.done():
                fut.set_exception(exc)


class Response:
    """An upstream answer: status and headers at once, the body complete or as a stream."""

    __slots__ = ("status", "headers", "_conn", "_pool", "_done")

    def __init__(self, conn: _Connection, pool: list[_Connection]) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn = conn
        self._pool = pool
        self._done = False

    async def iter_chunks(self, read_timeout: float | None) -> AsyncIterator[bytes]:
        """The body as it arrives; each wait bounded by ``read_timeout``."""
        conn = self._conn
        loop = asyncio.get_running_loop()
        while True:
            if conn.chunks:
                data = b"".join(conn.chunks) if len(conn.chunks) > 1 else conn.chunks[0]
                conn.chunks.clear()
                conn.buffered = 0
                if conn.paused:
                    conn.paused = False
                    conn.transport.resume_reading()
                yield data
                continue
            if conn.complete:
                return
            if conn.error is not None:
                raise conn.error
            conn.waiter = loop.create_future()
            await _wait(conn.waiter, read_timeout)

    async def read(self, read_timeout: float | None) -> bytes:
        """The whole body."""
        parts = [chunk async for chunk in self.iter_chunks(read_timeout)]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with the answer: keep the connection for the next request if it can be."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed and conn.error is None:
            conn._reset()
            self._pool.append(conn)
        else:
            conn.transport.close()

    def close(self) -> None:
        """Abandon the answer (client gone, error): the connection is closed at once."""
        if not self._done:
            self._done = True
            self._conn.transport.close()


class Origin:
    """Where requests go (scheme, host, port) and the idle connections to it."""

    __slots__ = ("host", "port", "ssl", "host_header", "idle", "prefix")

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if tls else 80)
        self.ssl = ssl.create_default_context() if tls else None
        default = (tls and self.port == 443) or (not tls and self.port == 80)
        self.host_header = self.host if default else f"{self.host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self.idle: list[_Connection] = []


class Transport:
    """Connection pools per origin; ``request`` sends and waits for the answer's headers."""

    def __init__(self) -> None:
        self._origins: dict[str, Origin] = {}
        self._heads: dict[tuple[str, str, str, tuple], bytes] = {}

    def origin(self, base_url: str) -> Origin:
        origin = self._origins.get(base_url)
        if origin is None:
            origin = self._origins[base_url] = Origin(base_url)
        return origin

    def _head(self, origin: Origin, method: str, path: str,
              headers: tuple[tuple[str, str], ...]) -> bytes:
        key = (origin.host_header, method, path, headers)
        head = self._heads.get(key)
        if head is None:
            lines = [f"{method} {origin.prefix}{path} HTTP/1.1", f"Host: {origin.host_header}",
                     *(f"{k}: {v}" for k, v in headers)]
            head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
            if len(self._heads) > 1024:
                self._heads.clear()
            self._heads[key] = head
        return head

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                _Connection, origin.host, origin.port, ssl=origin.ssl,
                server_hostname=origin.host if origin.ssl else None)
        return conn

    async def request(self, base_url: str, method: str, path: str,
                      headers: tuple[tuple[str, str], ...], body: bytes, *,
                      connect_timeout: float, first_byte_timeout: float | None) -> Response:
        """Send a request; return once the answer's status and headers arrived.

        Raises OSError (cannot connect, connection lost) or TimeoutError.
        """
        origin = self.origin(base_url)
        payload = self._head(origin, method, path, headers) + b"%d\r\n\r\n" % len(body) + body
        loop = asyncio.get_running_loop()
        while True:
            reused = False
            conn = None
            while origin.idle:
                candidate = origin.idle.pop()
                if not candidate.closed:
                    conn, reused = candidate, True
                    break
            if conn is None:
                conn = await self._connect(origin, connect_timeout)
            conn.head_waiter = loop.create_future()
            conn.transport.write(payload)
            try:
                await _wait(conn.head_waiter, first_byte_timeout)
            except TimeoutError:
                conn.transport.close()
                raise
            except OSError:
                conn.transport.close()
                if reused and conn.status == 0 and not conn.chunks:
                    continue  # the server had closed this idle connection: try a fresh one
                raise
            except BaseException:
                conn.transport.close()
                raise
            conn.served += 1
            return Response(conn, origin.idle)

    def close(self) -> None:
        for origin in self._origins.values():
            for conn in origin.idle:
                if conn.transport is not None:
                    conn.transport.close()
            origin.idle.clear()
