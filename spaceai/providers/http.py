"""The pooled HTTP client every remote provider shares, with timeouts and error mapping."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from typing import Any

import aiohttp

from spaceai.catalog import ModelConfig
from spaceai.providers.deadline import timed_out
from spaceai.providers.transport import IDLE_EXPIRY_S, MAX_IDLE_PER_ORIGIN, Response, Transport
from spaceai.types import UpstreamError


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait per ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def upstream_failure(status: int, message: str, model: ModelConfig,
                     retry_after: float | None = None) -> UpstreamError:
    """An upstream HTTP error as the client should see it (never echoing credentials)."""
    cred = model.credential()
    if cred and message:
        message = message.replace(cred, "***")
    prefix = f"model {model.id}: upstream returned {status}"
    if status in (401, 403):
        return UpstreamError(502, f"{prefix}: the gateway's credential for this model was "
                             "rejected; ask the operator to check it", code="upstream_auth_failed")
    if status == 429:
        return UpstreamError(429, f"{prefix}: {message or 'rate limited'}", type="rate_limit_error",
                             code="upstream_rate_limited", retryable=True, retry_after=retry_after)
    if status in (408, 409) or status >= 500:
        out_status = 503 if status in (503, 529) else 502
        return UpstreamError(out_status, f"{prefix}: {message or 'server error'}",
                             code="upstream_error", retryable=True, retry_after=retry_after)
    if status == 404:
        return UpstreamError(502, f"{prefix}: {message or 'not found'}", code="upstream_not_found")
    if status == 413:
        return UpstreamError(413, f"{prefix}: {message or 'request too large'}",
                             type="invalid_request_error", code="request_too_large")
    return UpstreamError(400, f"{prefix}: {message or 'bad request'}",
                         type="invalid_request_error", code="upstream_invalid_request")


class BoundedConnector(aiohttp.TCPConnector):
    """aiohttp's pool, keeping at most ``max_idle`` idle connections per host (aiohttp itself
    keeps every connection it released until its keep-alive timeout)."""

    def __init__(self, *, max_idle: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_idle = max_idle

    def _release(self, key, protocol, *, should_close: bool = False) -> None:  # noqa: ANN001
        super()._release(key, protocol, should_close=should_close)
        idle = self._conns.get(key)
        while idle is not None and len(idle) > self.max_idle:
            stale, _ = idle.popleft()
            stale.close()

    def idle_count(self) -> int:
        """Connections kept idle, over every host."""
        return sum(len(idle) for idle in self._conns.values())


class HttpClient:
    """The upstream connection pools: the lean transport, and an aiohttp session.

    Both keep at most ``max_idle`` idle connections per origin and close those idle for longer
    than ``idle_s``; aiohttp also opens at most ``max_per_host`` at once to one host (0: no
    limit), queueing the requests beyond them.
    """

    def __init__(self, max_idle: int = MAX_IDLE_PER_ORIGIN, idle_s: float = IDLE_EXPIRY_S,
                 max_per_host: int = 0) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.transport = Transport(max_idle=max_idle, idle_s=idle_s)
        self.idle_s = idle_s
        self.max_per_host = max_per_host

    async def send(self, model: ModelConfig, path: str, headers: tuple[tuple[str, str], ...],
                   body: bytes, deadline: float) -> Response:
        """POST ``body`` to the model's upstream; the answer once its headers arrived, by loop
        time ``deadline``.

        Connection failures and timeouts become retryable :class:`UpstreamError` s.
        """
        try:
            return await self.transport.request(
                model.base_url, "POST", path, headers, body,
                connect_timeout=model.connect_timeout_s, deadline=deadline)
        except TimeoutError:
            raise timed_out(model, "no response headers in time") from None
        except OSError as exc:
            raise self.connection_error(exc, model) from None

    async def read(self, resp: Response, model: ModelConfig, deadline: float) -> bytes:
        """The whole body of ``resp`` by loop time ``deadline``; a cut or a stall becomes an
        :class:`UpstreamError`."""
        try:
            return await resp.read(deadline)
        except TimeoutError:
            raise timed_out(model, f"no complete answer within {model.timeout_s:g} s") from None
        except OSError as exc:
            raise self.connection_error(exc, model) from None

    async def start(self) -> None:
        if self.session is None:
            connector = BoundedConnector(max_idle=self.transport.max_idle, limit=0,
                                         limit_per_host=self.max_per_host, ttl_dns_cache=300,
                                         keepalive_timeout=self.idle_s)
            self.session = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                                 skip_auto_headers=("User-Agent",))

    async def close(self) -> None:
        self.transport.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    @staticmethod
    def connection_error(exc: BaseException, model: ModelConfig) -> UpstreamError:
        if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
            return timed_out(model, "read timeout")
        if isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or (
                isinstance(exc, OSError) and not isinstance(exc, ConnectionError)):
            return UpstreamError(502, f"model {model.id}: cannot connect to upstream "
                                 f"({type(exc).__name__})", code="upstream_unreachable",
                                 retryable=True)
        return UpstreamError(502, f"model {model.id}: upstream connection failed "
                             f"({type(exc).__name__})", code="upstream_error", retryable=True)
