"""The pooled HTTP client every remote provider shares: deadlines, and connection failures as
retryable errors (an upstream's own error answers are mapped in :mod:`spaceai.providers.errors`)."""

from __future__ import annotations

import asyncio
import socket

from spaceai.catalog import ModelConfig
from spaceai.providers.deadline import timed_out
from spaceai.providers.transport import IDLE_EXPIRY_S, MAX_IDLE_PER_ORIGIN, Response, Transport
from spaceai.types import UpstreamError


class HttpClient:
    """The upstream connection pools every remote provider shares (one lean
    :class:`~spaceai.providers.transport.Transport`), with the deadlines and the error mapping
    of an attempt.

    At most ``max_idle`` idle connections are kept per origin, none idle for longer than
    ``idle_s``; at most ``max_per_host`` are open at once to one origin (0: no limit), the
    requests beyond them waiting for one. ``ca_bundle`` (else ``SPACEAI_CA_BUNDLE``) is the CA
    file TLS upstreams are checked against; a model's own ``ca_bundle`` overrides it.
    """

    def __init__(self, max_idle: int = MAX_IDLE_PER_ORIGIN, idle_s: float = IDLE_EXPIRY_S,
                 max_per_host: int = 0, ca_bundle: str | None = None) -> None:
        self.transport = Transport(max_idle=max_idle, idle_s=idle_s,
                                   max_per_origin=max_per_host, ca_bundle=ca_bundle)
        self.idle_s = idle_s
        self.max_per_host = max_per_host

    async def send(self, model: ModelConfig, path: str, headers: tuple[tuple[str, str], ...],
                   body: bytes, deadline: float, base_url: str | None = None) -> Response:
        """POST ``body`` to the model's upstream (``base_url`` if given); the answer once its
        headers arrived, by loop time ``deadline``.

        Connection failures and timeouts become retryable :class:`UpstreamError` s.
        """
        try:
            return await self.transport.request(
                base_url or model.base_url, "POST", path, headers, body,
                connect_timeout=model.connect_timeout_s, deadline=deadline,
                ca_bundle=model.extra.get("ca_bundle"))
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
        """Nothing to open: connections are made on demand."""

    async def close(self) -> None:
        self.transport.close()

    @staticmethod
    def connection_error(exc: BaseException, model: ModelConfig) -> UpstreamError:
        if isinstance(exc, asyncio.TimeoutError):
            return timed_out(model, "read timeout")
        if isinstance(exc, (ConnectionRefusedError, socket.gaierror)) or (
                isinstance(exc, OSError) and not isinstance(exc, ConnectionError)):
            return UpstreamError(502, f"model {model.id}: cannot connect to upstream "
                                 f"({type(exc).__name__})", code="upstream_unreachable",
                                 retryable=True)
        return UpstreamError(502, f"model {model.id}: upstream connection failed "
                             f"({type(exc).__name__})", code="upstream_error", retryable=True)
