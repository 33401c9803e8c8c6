"""The pooled HTTP client every remote provider shares, with timeouts and error mapping."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from typing import Any

import aiohttp

from spaceai.catalog import ModelConfig
from spaceai.providers.transport import Response, Transport
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


def timed_out(model: ModelConfig, what: str) -> UpstreamError:
    return UpstreamError(504, f"model {model.id}: upstream timed out ({what})", type="timeout",
                         code="upstream_timeout", retryable=True)


class HttpClient:
    """The upstream connection pools: the lean transport, and an aiohttp session."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.transport = Transport()

    async def send(self, model: ModelConfig, path: str, headers: tuple[tuple[str, str], ...],
                   body: bytes) -> Response:
        """POST ``body`` to the model's upstream; the answer once its headers arrived.

        Connection failures and timeouts become retryable :class:`UpstreamError` s.
        """
        first_byte = model.first_byte_timeout_s or model.timeout_s
        try:
            return await self.transport.request(
                model.base_url, "POST", path, headers, body,
                connect_timeout=model.connect_timeout_s, first_byte_timeout=first_byte)
        except TimeoutError:
            raise timed_out(model, f"no response within {first_byte:g} s") from None
        except OSError as exc:
            raise self.connection_error(exc, model) from None

    async def read(self, resp: Response, model: ModelConfig) -> bytes:
        """The whole body of ``resp``; a cut or a stall becomes an :class:`UpstreamError`."""
        try:
            return await resp.read(model.timeout_s)
        except TimeoutError:
            raise timed_out(model, "read timeout") from None
        except OSError as exc:
            raise self.connection_error(exc, model) from None

    async def start(self) -> None:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
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
