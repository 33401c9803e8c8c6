"""A lean HTTP/1.1 client for upstream calls: keep-alive pools, httptools parsing, deadlines.

The request path calls an upstream once per request, so this is where a gateway spends much
of its time. A general client (aiohttp) builds request and response objects, trace hooks,
cookie handling and a timer per request; this one writes a precomputed header block and the
body in one ``transport.write``, parses the answer with llhttp (httptools), and reuses
connections, LIFO, per origin. It speaks exactly what upstream APIs need: POST or GET with a
body, a complete or a streamed answer (chunked or not), plain TCP or TLS.

Every wait takes an absolute deadline (``loop.time()``), bounded by one timer handle, so a
caller bounds a whole attempt however slowly bytes trickle in. The pools are bounded: at most
``max_idle`` connections are kept per origin, and one idle longer than ``idle_s`` is closed
(checked on checkout, and by one sweep timer that runs only while connections are idle).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from urllib.parse import urlsplit

import httptools

_MAX_BUFFER = 1 << 20  # pause reading past 1 MiB of unread body
MAX_IDLE_PER_ORIGIN = 256
IDLE_EXPIRY_S = 30.0


class UpstreamClosed(ConnectionError):
    """The connection closed before the answer was complete."""


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def _wait(fut: asyncio.Future, deadline: float | None):  # noqa: ANN202
    """Await ``fut``, failing it with TimeoutError at loop time ``deadline`` (no extra task)."""
    if deadline is None:
        return await fut
    handle = asyncio.get_running_loop().call_at(deadline, _expire, fut)
    try:
        return await fut
    finally:
        handle.cancel()


class _Connection(asyncio.Protocol):
    """One upstream connection; carries one request at a time."""

    __slots__ = ("transport", "parser", "status", "headers", "_name", "chunks", "buffered",
                 "complete", "keep_alive", "closed", "error", "waiter", "head_waiter", "paused",
                 "served", "idle_since", "origin")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.error: BaseException | None = None
        self.served = 0
        self.idle_since = 0.0
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
        self.origin.open += 1

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"invalid HTTP from upstream: {exc}"))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.origin.open -= 1
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

    def __init__(self, conn: _Connection, pool: Pool) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn = conn
        self._pool = pool
        self._done = False

    async def receive(self, deadline: float | None) -> bytes:
        """The body bytes that arrived since the last call (waiting for some until loop time
        ``deadline``, then TimeoutError); ``b""`` once the body is complete."""
        conn = self._conn
        while True:
            if conn.chunks:
                data = b"".join(conn.chunks) if len(conn.chunks) > 1 else conn.chunks[0]
                conn.chunks.clear()
                conn.buffered = 0
                if conn.paused:
                    conn.paused = False
                    conn.transport.resume_reading()
                return data
            if conn.complete:
                return b""
            if conn.error is not None:
                raise conn.error
            conn.waiter = asyncio.get_running_loop().create_future()
            await _wait(conn.waiter, deadline)

    async def read(self, deadline: float | None) -> bytes:
        """The whole body, complete by loop time ``deadline`` (else TimeoutError)."""
        parts = []
        while data := await self.receive(deadline):
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with the answer: keep the connection for the next request if it can be."""
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed and conn.error is None:
            conn._reset()
            self._pool.keep(conn)
        else:
            conn.transport.close()

    def close(self) -> None:
        """Abandon the answer (client gone, error): the connection is closed at once."""
        if not self._done:
            self._done = True
            self._conn.transport.close()


class Pool:
    """The idle connections to one origin: LIFO, at most ``max_idle``, none older than
    ``idle_s`` (the oldest are at the left)."""

    __slots__ = ("idle", "max_idle", "idle_s", "_owner")

    def __init__(self, owner: Transport) -> None:
        self.idle: collections.deque[_Connection] = collections.deque()
        self.max_idle = owner.max_idle
        self.idle_s = owner.idle_s
        self._owner = owner

    def checkout(self, now: float) -> _Connection | None:
        """The most recently used live connection, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > self.idle_s:  # and so are all the older ones
                conn.transport.close()
                self.expire(now)
                return None
            return conn
        return None

    def keep(self, conn: _Connection) -> None:
        conn.idle_since = self._owner.loop_time()
        self.idle.append(conn)
        if len(self.idle) > self.max_idle:
            self.idle.popleft().transport.close()
        self._owner.arm_sweep()

    def expire(self, now: float) -> None:
        """Close the connections idle for longer than ``idle_s``."""
        idle = self.idle
        while idle and (idle[0].closed or now - idle[0].idle_since > self.idle_s):
            idle.popleft().transport.close()

    def close(self) -> None:
        while self.idle:
            conn = self.idle.pop()
            if conn.transport is not None:
                conn.transport.close()


class Origin(Pool):
    """Where requests go (scheme, host, port), and the pool of connections to it."""

    __slots__ = ("host", "port", "ssl", "host_header", "prefix", "open")

    def __init__(self, base_url: str, owner: Transport) -> None:
        super().__init__(owner)
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if tls else 80)
        self.ssl = ssl.create_default_context() if tls else None
        default = (tls and self.port == 443) or (not tls and self.port == 80)
        self.host_header = self.host if default else f"{self.host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self.open = 0  # connections open to this origin, in use or idle


class Transport:
    """Connection pools per origin; ``request`` sends and waits for the answer's headers."""

    def __init__(self, max_idle: int = MAX_IDLE_PER_ORIGIN,
                 idle_s: float = IDLE_EXPIRY_S) -> None:
        self.max_idle = max_idle
        self.idle_s = idle_s
        self._origins: dict[str, Origin] = {}
        self._heads: dict[tuple[str, str, str, tuple], bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep: asyncio.TimerHandle | None = None

    def origin(self, base_url: str) -> Origin:
        origin = self._origins.get(base_url)
        if origin is None:
            origin = self._origins[base_url] = Origin(base_url, self)
        return origin

    def stats(self) -> dict[str, tuple[int, int]]:
        """Per origin: (connections open, connections idle in the pool)."""
        return {url: (o.open, len(o.idle)) for url, o in self._origins.items()}

    def loop_time(self) -> float:
        return self._loop.time()

    def arm_sweep(self) -> None:
        """Make sure one timer will close the connections that stay idle too long."""
        if self._sweep is None and self._loop is not None:
            self._sweep = self._loop.call_later(self.idle_s / 2, self._run_sweep)

    def _run_sweep(self) -> None:
        self._sweep = None
        now = self._loop.time()
        for origin in self._origins.values():
            origin.expire(now)
        if any(origin.idle for origin in self._origins.values()):
            self.arm_sweep()

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
                lambda: _Connection(origin), origin.host, origin.port, ssl=origin.ssl,
                server_hostname=origin.host if origin.ssl else None)
        return conn

    async def request(self, base_url: str, method: str, path: str,
                      headers: tuple[tuple[str, str], ...], body: bytes, *,
                      connect_timeout: float, deadline: float) -> Response:
        """Send a request; return once the answer's status and headers arrived.

        Connecting takes at most ``connect_timeout`` seconds, and everything must be done by
        loop time ``deadline``. Raises OSError (cannot connect, connection lost) or
        TimeoutError.
        """
        origin = self.origin(base_url)
        payload = self._head(origin, method, path, headers) + b"%d\r\n\r\n" % len(body) + body
        loop = self._loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            conn = origin.checkout(now)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, min(connect_timeout, max(deadline - now, 0)))
            conn.head_waiter = loop.create_future()
            conn.transport.write(payload)
            try:
                await _wait(conn.head_waiter, deadline)
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
            return Response(conn, origin)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for origin in self._origins.values():
            origin.close()
