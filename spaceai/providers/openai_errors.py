"""The errors of an OpenAI-compatible upstream, read from its wire shapes.

OpenAI answers ``{"error": {"message", "type", "param", "code"}}`` as an HTTP error body and
as a ``data:`` line inside a chat stream; a Responses stream sends an ``error`` event with
``code`` and ``message`` at its top level. Compatible servers vary: vLLM's older errors are
top-level (``{"object": "error", "message", "type", "code": 400}``), some send
``{"error": "text"}``, a proxy in front may answer plain text or HTML.
"""

from __future__ import annotations

from typing import Any

from spaceai.catalog import ModelConfig
from spaceai.providers.errors import error_body, upstream_error
from spaceai.types import UpstreamError, Usage


def openai_error(model: ModelConfig, body: Any, status: int | None = None, *,
                 headers: Any = None, usage: Usage | None = None) -> UpstreamError:
    """The :class:`UpstreamError` for an OpenAI-compatible error: an HTTP error answer
    (``status``, raw ``body`` bytes, ``headers``) or a stream's parsed error payload
    (``status`` None)."""
    if isinstance(body, (bytes, bytearray)):
        body = error_body(body)
    err = body.get("error", body) if isinstance(body, dict) else body
    if not isinstance(err, dict):
        return upstream_error(model, status, err if isinstance(err, str) else None,
                              headers=headers, usage=usage)
    return upstream_error(model, status, _text(err.get("message")),
                          error_type=_text(err.get("type")), error_code=_text(err.get("code")),
                          headers=headers, usage=usage)


def _text(value: Any) -> str | None:
    """A string field, or None (vLLM's ``code`` is the HTTP status as a number)."""
    return value if isinstance(value, str) else None
