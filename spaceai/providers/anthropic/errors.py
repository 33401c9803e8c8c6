"""Anthropic errors <-> the gateway's OpenAI-shaped errors.

Anthropic answers ``{"type": "error", "error": {"type": ..., "message": ...}}`` both as an
HTTP error body and as an ``error`` event inside a stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from spaceai.providers.http import retry_after_seconds
from spaceai.types import GatewayError, UpstreamError, Usage

# anthropic error type -> (gateway status, OpenAI error type, OpenAI code, retryable)
ERROR_TYPES: dict[str, tuple[int, str, str | None, bool]] = {
    "invalid_request_error": (400, "invalid_request_error", None, False),
    # the client's SpaceAI key was fine: it is the gateway's credential or catalog entry that
    # the upstream refused, so the client sees a 502 that it should not retry
    "authentication_error": (502, "upstream_error", "upstream_auth_failed", False),
    "permission_error": (502, "upstream_error", "upstream_permission_denied", False),
    "not_found_error": (502, "upstream_error", "upstream_not_found", False),
    "request_too_large": (413, "invalid_request_error", "request_too_large", False),
    "rate_limit_error": (429, "rate_limit_error", "rate_limit_exceeded", True),
    "api_error": (500, "server_error", None, True),
    "overloaded_error": (503, "server_error", "overloaded", True),
}

_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_AUTH_MESSAGE = "the upstream provider rejected the configured Anthropic API key"


def upstream_error(
    status: int | None,
    error_type: str | None,
    message: str | None,
    *,
    retry_after: float | None = None,
    secret: str | None = None,
    usage: Usage | None = None,
) -> UpstreamError:
    """An :class:`UpstreamError` for an Anthropic error type (or, lacking one, HTTP status).

    ``secret`` (the API key) is scrubbed from the message; an authentication error never
    repeats the upstream message at all.
    """
    if status in (408, 409):
        # a timeout or a conflict upstream: retried as every provider's are (providers/http.py)
        text = (message or f"upstream returned {status}").replace(secret or "\0", "[redacted]")
        return UpstreamError(502, f"Anthropic: {text}", code="upstream_error", retryable=True,
                             retry_after=retry_after, usage=usage)
    if error_type not in ERROR_TYPES:
        if status in _BY_STATUS:
            error_type = _BY_STATUS[status]
        elif status is not None and status >= 500:
            error_type = "api_error"
        elif status is not None and status >= 400:
            error_type = "invalid_request_error"
        else:
            error_type = "api_error"
    gw_status, oa_type, code, retryable = ERROR_TYPES[error_type]
    if error_type == "authentication_error":
        text = _AUTH_MESSAGE
    else:
        text = message or f"upstream error ({error_type})"
        if secret:
            text = text.replace(secret, "[redacted]")
    if status is not None and status >= 500 and gw_status < 500:
        retryable = True  # an unknown 5xx with an odd body is still a server fault
    return UpstreamError(
        gw_status,
        f"Anthropic: {text}",
        type=oa_type,
        code=code,
        retryable=retryable,
        retry_after=retry_after if retryable else None,
        usage=usage,
    )


def error_from_body(
    status: int,
    body: bytes | dict[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    secret: str | None = None,
) -> UpstreamError:
    """Map an Anthropic HTTP error response (status, raw or parsed body, headers)."""
    err: dict[str, Any] = {}
    if isinstance(body, (bytes, bytearray)):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
    return upstream_error(
        status,
        err.get("type"),
        err.get("message") if isinstance(err.get("message"), str) else None,
        retry_after=retry_after_seconds(headers),
        secret=secret,
    )


def error_from_event(data: dict[str, Any], usage: Usage | None = None) -> UpstreamError:
    """Map an ``error`` event received inside a stream."""
    err = data.get("error") if isinstance(data.get("error"), dict) else {}
    return upstream_error(None, err.get("type"), err.get("message"), usage=usage)


_TO_ANTHROPIC_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def to_anthropic_error(err: GatewayError) -> dict[str, Any]:
    """A gateway error in Anthropic's shape, for the ``/v1/messages`` surface."""
    etype = _TO_ANTHROPIC_TYPE.get(err.status)
    if etype is None:
        etype = "api_error" if err.status >= 500 else "invalid_request_error"
    return {"type": "error", "error": {"type": etype, "message": err.message}}
