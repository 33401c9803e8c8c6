"""A lean HTTP/1.1 client for upstream calls: keep-alive pools, httptools parsing, deadlines.

The request path calls an upstream once per request, so this is where a gateway spends much
of its time. A general client (aiohttp) builds request and response objects, trace hooks,
cookie handling and a timer per request; this one writes a precomputed header block and the
body in one ``transport.write``, parses the answer with llhttp (httptools), and reuses
connections, LIFO, per origin. It speaks what upstream APIs need, and what real networks do to them:

* a complete or streamed answer, chunked, with a content-length, or ended by the close of the
  connection; ``1xx`` interim answers are skipped; a ``gzip`` or ``deflate`` body is decoded
  (``Accept-Encoding: identity`` is asked for, but some servers compress anyway);
* plain TCP or TLS (SNI, the system CAs or a CA bundle: ``SPACEAI_CA_BUNDLE``, or a model's
  ``ca_bundle``), IPv6 literals (``http://[::1]:8000``);
* ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` from the environment: an https upstream is
  reached through a ``CONNECT`` tunnel, an http one by sending the absolute URL to the proxy;
* at most ``max_per_origin`` connections open at once to one origin (0: no cap); a request
  beyond it waits for one to come back, within its own deadline.

Resending: a request is sent again (once) only when the server cannot have acted on it: the
pooled connection it was written to had been *reused* (kept alive from an earlier answer) and
closed at once (within ``resend_window_s``, 1 s, of the write) without sending back a single
byte. That is the keep-alive race, a server closing an idle connection as the request crosses
it. A connection found closed while idle is never written to. Once any byte of an answer
arrived, on a fresh connection, or when the server held the request a while before closing,
the failure is the caller's: a POST that the server may have read and begun is never resent.

Every wait takes an absolute deadline (``loop.time()``), bounded by one timer handle, so a
caller bounds a whole attempt however slowly bytes trickle in. The pools are bounded: at most
``max_idle`` connections are kept per origin, and one idle longer than ``idle_s`` is closed
(checked on checkout, and by one sweep timer that runs only while connections are idle).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import os
import ssl
import urllib.request
import zlib
from urllib.parse import unquote, urlsplit

import httptools

_MAX_BUFFER = 1 << 20  # pause reading past 1 MiB of unread body
MAX_IDLE_PER_ORIGIN = 256
IDLE_EXPIRY_S = 30.0
RESEND_WINDOW_S = 1.0  # a reused connection closed this soon after the write: the keep-alive race


class UpstreamClosed(ConnectionError):
    """The connection closed before the answer was complete."""


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


async def _wait(fut: asyncio.Future, deadline: float | None):  # noqa: ANN202
    """Await ``fut``, failing it with TimeoutError at loop time ``deadline`` (no extra task)."""
    if deadline is None:
        return await fut
    handle = fut.get_loop().call_at(deadline, _expire, fut)
    try:
        return await fut
    finally:
        handle.cancel()


class _Connection(asyncio.Protocol):
    """One upstream connection; carries one request at a time."""

    __slots__ = ("transport", "parser", "status", "headers", "chunks", "buffered",
                 "complete", "keep_alive", "closed", "error", "waiter", "head_waiter", "paused",
                 "served", "idle_since", "origin", "received", "interim", "counted", "lost_at",
                 "loop")

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.counted = False
        self.lost_at = 0.0
        self.error: BaseException | None = None
        self.served = 0
        self.idle_since = 0.0
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: collections.deque[bytes] = collections.deque()
        self._reset()

    def _reset(self) -> None:
        """Ready for the next request (the parser goes on to the connection's next answer)."""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks.clear()
        self.buffered = 0
        self.complete = False
        self.keep_alive = False
        self.waiter: asyncio.Future | None = None
        self.head_waiter: asyncio.Future | None = None
        self.paused = False
        self.received = 0  # bytes of the current answer
        self.interim = False  # parsing a 1xx answer

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.counted:  # a TLS tunnel through a proxy is made twice
            self.counted = True
            self.origin.open += 1

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamClosed(f"invalid HTTP from upstream: {exc}"))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.lost_at = self.loop.time()
        if self.counted:
            self.origin.open -= 1
            self.origin.wake()
        if not self.complete and exc is None and self._ends_at_close():
            self.complete = True  # a body delimited by the close of the connection
            self.keep_alive = False
            self._wake()
        if not self.complete:
            self._fail(exc or UpstreamClosed("upstream closed the connection"))

    def _ends_at_close(self) -> bool:
        headers = self.headers
        return (self.status >= 200 and "content-length" not in headers
                and "chunked" not in headers.get("transfer-encoding", "").lower())

    def pause_writing(self) -> None:  # bodies are small; nothing to throttle
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue, 103 Early Hints)
            self.interim = True
            return
        self.status = status
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
        if self.interim:
            self.interim = False
            return
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

    __slots__ = ("status", "headers", "_conn", "_pool", "_done", "_decoder")

    def __init__(self, conn: _Connection, pool: Pool) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn = conn
        self._pool = pool
        self._done = False
        encoding = conn.headers.get("content-encoding", "").strip().lower()
        self._decoder = _Decoder(encoding) if encoding in _Decoder.WBITS else None

    async def receive(self, deadline: float | None) -> bytes:
        """The body bytes that arrived since the last call (waiting for some until loop time
        ``deadline``, then TimeoutError); ``b""`` once the body is complete. A ``gzip`` or
        ``deflate`` body comes decoded."""
        conn = self._conn
        while True:
            if conn.chunks:
                data = b"".join(conn.chunks) if len(conn.chunks) > 1 else conn.chunks[0]
                conn.chunks.clear()
                conn.buffered = 0
                if conn.paused:
                    conn.paused = False
                    conn.transport.resume_reading()
                if self._decoder is not None:
                    data = self._decoder.decode(data)
                    if not data:
                        continue
                return data
            if conn.complete:
                if self._decoder is not None:
                    data, self._decoder = self._decoder.flush(), None
                    if data:
                        return data
                return b""
            if conn.error is not None:
                raise conn.error
            conn.waiter = conn.loop.create_future()
            await _wait(conn.waiter, deadline)

    async def read(self, deadline: float | None) -> bytes:
        """The whole body, complete by loop time ``deadline`` (else TimeoutError)."""
        conn = self._conn
        if conn.complete and self._decoder is None and not conn.paused:  # all here already
            chunks = conn.chunks
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            conn.buffered = 0
            return data
        parts = []
        while data := await self.receive(deadline):
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with the answer, however it went: the connection is kept for the next request
        if its body was read to the end (and it may be kept), else closed. Callers need not
        track which."""
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


class _Decoder:
    """Decodes a ``gzip`` or ``deflate`` body as it arrives (``deflate`` with or without its
    zlib wrapper: servers send both)."""

    WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}

    __slots__ = ("_z", "_raw_fallback")

    def __init__(self, encoding: str) -> None:
        self._z = zlib.decompressobj(self.WBITS[encoding])
        self._raw_fallback = encoding == "deflate"

    def decode(self, data: bytes) -> bytes:
        try:
            out = self._z.decompress(data)
        except zlib.error:
            if not self._raw_fallback:
                raise UpstreamClosed("undecodable compressed body from upstream") from None
            self._raw_fallback = False  # a raw deflate stream, without the zlib header
            self._z = zlib.decompressobj(-15)
            return self.decode(data)
        self._raw_fallback = False
        return out

    def flush(self) -> bytes:
        return self._z.flush()


class Pool:
    """The idle connections to one origin: LIFO, at most ``max_idle``, none older than
    ``idle_s`` (the oldest are at the left)."""

    __slots__ = ("idle", "max_idle", "idle_s", "_owner", "waiters")

    def __init__(self, owner: Transport) -> None:
        self.idle: collections.deque[_Connection] = collections.deque()
        self.max_idle = owner.max_idle
        self.idle_s = owner.idle_s
        self._owner = owner
        self.waiters: collections.deque[asyncio.Future] = collections.deque()

    def wake(self) -> None:
        """A connection came back or closed: the first request waiting for one tries again."""
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

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
        if self.waiters:
            self.wake()

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
    """Where requests go (scheme, host, port, the proxy on the way), and the pool of
    connections to it."""

    __slots__ = ("host", "port", "ssl", "host_header", "prefix", "open", "connecting",
                 "proxy", "proxy_auth", "limit")

    def __init__(self, base_url: str, owner: Transport, ca_bundle: str | None = None) -> None:
        super().__init__(owner)
        parts = urlsplit(base_url)
        tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if tls else 80)
        self.ssl = owner.ssl_context(ca_bundle) if tls else None
        default = (tls and self.port == 443) or (not tls and self.port == 80)
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        self.host_header = host if default else f"{host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self.open = 0  # connections open to this origin, in use or idle
        self.connecting = 0
        self.limit = owner.max_per_origin
        self.proxy: tuple[str, int] | None = None
        self.proxy_auth: str | None = None
        proxy_url = owner.proxy_for(parts.scheme, self.host)
        if proxy_url:
            proxy = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
            self.proxy = (proxy.hostname or "127.0.0.1", proxy.port or 80)
            if proxy.username:
                creds = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
                self.proxy_auth = "Basic " + base64.b64encode(creds.encode()).decode()
            if not tls:  # plain HTTP through a proxy: the request line names the whole URL
                self.prefix = f"http://{self.host_header}{self.prefix}"


class ProxyError(ConnectionError):
    """The proxy refused to open a tunnel to the upstream."""


class _Tunnel(asyncio.Protocol):
    """The answer of a proxy to ``CONNECT``, read up to the end of its head."""

    def __init__(self) -> None:
        self.data = b""
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if b"\r\n\r\n" in self.data and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ProxyError("the proxy closed the connection"))


class Transport:
    """Connection pools per origin; ``request`` sends and waits for the answer's headers."""

    def __init__(self, max_idle: int = MAX_IDLE_PER_ORIGIN,
                 idle_s: float = IDLE_EXPIRY_S, max_per_origin: int = 0,
                 ca_bundle: str | None = None, trust_env: bool = True,
                 resend_window_s: float = RESEND_WINDOW_S) -> None:
        self.max_idle = max_idle
        self.resend_window_s = resend_window_s
        self.idle_s = idle_s
        self.max_per_origin = max_per_origin
        self.ca_bundle = ca_bundle or os.environ.get("SPACEAI_CA_BUNDLE") or None
        self.proxies = urllib.request.getproxies_environment() if trust_env else {}
        self._contexts: dict[str | None, ssl.SSLContext] = {}
        self._origins: dict[tuple[str, str | None], Origin] = {}
        self._heads: dict[tuple[str, str, str, str, tuple], bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweep: asyncio.TimerHandle | None = None

    def origin(self, base_url: str, ca_bundle: str | None = None) -> Origin:
        key = (base_url, ca_bundle)
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = Origin(base_url, self, ca_bundle)
        return origin

    def ssl_context(self, ca_bundle: str | None) -> ssl.SSLContext:
        """The TLS context that trusts ``ca_bundle`` (else the gateway's, else the system's)."""
        cafile = ca_bundle or self.ca_bundle
        ctx = self._contexts.get(cafile)
        if ctx is None:
            ctx = self._contexts[cafile] = ssl.create_default_context(cafile=cafile)
        return ctx

    def proxy_for(self, scheme: str, host: str) -> str | None:
        """The proxy URL for an upstream on ``host``, per ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
        ``NO_PROXY`` (None: straight there)."""
        proxy = self.proxies.get(scheme)
        if not proxy:
            return None
        if self.proxies.get("no") and urllib.request.proxy_bypass_environment(
                host, self.proxies):
            return None
        return proxy

    def stats(self) -> dict[str, tuple[int, int]]:
        """Per origin: (connections open, connections idle in the pool)."""
        return {url: (o.open, len(o.idle)) for (url, _), o in self._origins.items()}

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
        key = (origin.prefix, origin.host_header, method, path, headers)
        head = self._heads.get(key)
        if head is None:
            lines = [f"{method} {origin.prefix}{path} HTTP/1.1", f"Host: {origin.host_header}",
                     "Accept-Encoding: identity", *(f"{k}: {v}" for k, v in headers)]
            if origin.proxy_auth and origin.ssl is None:
                lines.append(f"Proxy-Authorization: {origin.proxy_auth}")
            head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
            if len(self._heads) > 1024:
                self._heads.clear()
            self._heads[key] = head
        return head

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            if origin.proxy is None or origin.ssl is None:  # straight, or plain HTTP to a proxy
                host, port = origin.proxy or (origin.host, origin.port)
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin), host, port, ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl else None)
                return conn
            return await self._tunnel(origin)

    async def _tunnel(self, origin: Origin) -> _Connection:
        """A TLS connection to ``origin`` through its proxy's ``CONNECT`` tunnel."""
        loop = asyncio.get_running_loop()
        raw, tunnel = await loop.create_connection(_Tunnel, *origin.proxy)
        try:
            auth = f"Proxy-Authorization: {origin.proxy_auth}\r\n" if origin.proxy_auth else ""
            target = origin.host_header if ":" in origin.host_header.rpartition("]")[2] else (
                f"{origin.host_header}:{origin.port}")
            raw.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n"
                      .encode("latin-1"))
            await tunnel.done
            status_line = tunnel.data.split(b"\r\n", 1)[0].split()
            if len(status_line) < 2 or not status_line[1].startswith(b"2"):
                raise ProxyError(f"the proxy refused the tunnel: {status_line[1:2]!r}")
            conn = _Connection(origin)
            tls = await loop.start_tls(raw, conn, origin.ssl, server_hostname=origin.host)
        except BaseException:
            raw.close()
            raise
        conn.connection_made(tls)
        return conn

    async def _open(self, origin: Origin, connect_timeout: float, deadline: float,
                    loop: asyncio.AbstractEventLoop) -> _Connection | None:
        """A new connection, or None after waiting for one to come back (at the cap)."""
        if origin.limit and origin.open + origin.connecting >= origin.limit:
            fut = loop.create_future()
            origin.waiters.append(fut)
            try:
                await _wait(fut, deadline)
            except BaseException:
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    origin.wake()  # woken, then cancelled: pass the turn on
                fut.cancel()
                raise
            return None
        origin.connecting += 1
        try:
            return await self._connect(
                origin, min(connect_timeout, max(deadline - loop.time(), 0)))
        finally:
            origin.connecting -= 1
            if origin.waiters:
                origin.wake()

    async def request(self, base_url: str, method: str, path: str,
                      headers: tuple[tuple[str, str], ...], body: bytes, *,
                      connect_timeout: float, deadline: float,
                      ca_bundle: str | None = None) -> Response:
        """Send a request; return once the answer's status and headers arrived.

        Connecting takes at most ``connect_timeout`` seconds, and everything must be done by
        loop time ``deadline``. Raises OSError (cannot connect, connection lost) or
        TimeoutError.
        """
        origin = self.origin(base_url, ca_bundle)
        payload = self._head(origin, method, path, headers) + b"%d\r\n\r\n" % len(body) + body
        loop = self._loop = asyncio.get_running_loop()
        resent = False
        while True:
            conn = origin.checkout(loop.time())
            reused = conn is not None
            if conn is None:
                conn = await self._open(origin, connect_timeout, deadline, loop)
                if conn is None:
                    continue
            conn.head_waiter = loop.create_future()
            conn.transport.write(payload)
            sent_at = loop.time()
            try:
                await _wait(conn.head_waiter, deadline)
            except TimeoutError:
                conn.transport.close()
                raise
            except OSError:
                conn.transport.close()
                if (reused and not resent and conn.received == 0
                        and conn.lost_at - sent_at < self.resend_window_s):
                    resent = True  # the keep-alive race: the server never read it (see top)
                    continue
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
