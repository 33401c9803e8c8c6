"""Anthropic errors <-> the gateway's errors.

Anthropic answers ``{"type": "error", "error": {"type": ..., "message": ...}}`` both as an
HTTP error body and as an ``error`` event inside a stream; both are read here and mapped by
the one rule set every provider shares (:mod:`spaceai.providers.errors`). The other direction,
a gateway error in Anthropic's shape, is for the ``/v1/messages`` surface.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from spaceai.catalog import ModelConfig
from spaceai.providers.errors import error_body, upstream_error
from spaceai.types import GatewayError, UpstreamError, Usage

# how Anthropic words a prompt over the model's context window (an invalid_request_error)
_CONTEXT_TOO_LONG = "prompt is too long"


def anthropic_error(model: ModelConfig, body: Any, status: int | None = None, *,
                    headers: Mapping[str, str] | None = None,
                    usage: Usage | None = None) -> UpstreamError:
    """The :class:`UpstreamError` for an Anthropic error: an HTTP error answer (``status``,
    raw ``body`` bytes, ``headers``) or an ``error`` event or error object (``status`` None)."""
    if isinstance(body, (bytes, bytearray)):
        body = error_body(body)
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return upstream_error(model, status, body if isinstance(body, str) else None,
                              headers=headers, usage=usage)
    message = err.get("message") if isinstance(err.get("message"), str) else None
    too_long = bool(message) and message.lower().startswith(_CONTEXT_TOO_LONG)
    return upstream_error(model, status, message, error_type=err.get("type"),
                          error_code="context_length_exceeded" if too_long else None,
                          headers=headers, usage=usage)


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
