"""Every provider's upstream failures, as the client should see them.

A provider only reads its own wire shape (an HTTP error's status, body and headers, or an
error event inside a stream) into a status, the upstream's error type and code, and its
message; :func:`upstream_error` turns that into the gateway's :class:`UpstreamError` with one
rule set, one message format naming the catalog model, and one redaction of the model's
credential. So a client sees the same status, type, code and retry behaviour whichever
provider failed, and the same failure is retried (or not) the same way.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import orjson

from spaceai.catalog import ModelConfig
from spaceai.types import UpstreamError, Usage


@dataclass(frozen=True, slots=True)
class Rule:
    """What the client hears for one kind of upstream failure.

    ``retryable``: the same deployment may serve on another try (the router backs off and
    retries). ``deployment_fault``: this deployment will keep failing (its key, account or
    upstream model name), but another deployment or a fallback model may serve. ``withheld``
    replaces the upstream's message, for failures only the operator can fix, whose message
    the client cannot act on and that may describe the gateway's account.
    """

    status: int
    type: str
    code: str
    retryable: bool = False
    deployment_fault: bool = False
    withheld: str | None = None


AUTH_FAILED = Rule(502, "upstream_error", "upstream_auth_failed", deployment_fault=True,
                   withheld="the gateway's credential for this model was rejected; ask the "
                            "operator to check it")
QUOTA_EXCEEDED = Rule(502, "upstream_error", "upstream_quota_exceeded", deployment_fault=True,
                      withheld="the upstream account behind this model is out of quota or "
                               "credit; ask the operator to check it")
NOT_FOUND = Rule(502, "upstream_error", "upstream_not_found", deployment_fault=True)
RATE_LIMITED = Rule(429, "rate_limit_error", "upstream_rate_limited", retryable=True)
OVERLOADED = Rule(503, "upstream_error", "upstream_overloaded", retryable=True)
SERVER_ERROR = Rule(502, "upstream_error", "upstream_error", retryable=True)
TOO_LARGE = Rule(413, "invalid_request_error", "request_too_large")
CONTEXT_TOO_LONG = Rule(400, "invalid_request_error", "context_length_exceeded")
INVALID_REQUEST = Rule(400, "invalid_request_error", "upstream_invalid_request")

# Upstream error types and codes that decide the rule whatever the status: the ones a status
# alone cannot tell apart (a 429 that is an empty account, a 400 that is a too-long prompt,
# Anthropic's 529) and those of stream events, which have no status.
BY_KIND: dict[str, Rule] = {
    # OpenAI (error.type / error.code)
    "invalid_api_key": AUTH_FAILED,
    "insufficient_quota": QUOTA_EXCEEDED,
    "context_length_exceeded": CONTEXT_TOO_LONG,
    "model_not_found": NOT_FOUND,
    "server_error": SERVER_ERROR,
    "rate_limit_exceeded": RATE_LIMITED,
    # Anthropic (error.type), https://docs.anthropic.com/en/api/errors
    "invalid_request_error": INVALID_REQUEST,
    "authentication_error": AUTH_FAILED,
    "permission_error": AUTH_FAILED,
    "billing_error": QUOTA_EXCEEDED,
    "not_found_error": NOT_FOUND,
    "request_too_large": TOO_LARGE,
    "rate_limit_error": RATE_LIMITED,
    "api_error": SERVER_ERROR,
    "timeout_error": SERVER_ERROR,
    "overloaded_error": OVERLOADED,
}

# kinds that are only a label of their HTTP status (OpenAI types every 4xx, even a 401,
# invalid_request_error): they decide only when there is no status, as inside a stream
_GENERIC = frozenset({"invalid_request_error", "server_error", "api_error"})


def _rule_for_status(status: int) -> Rule:
    """The rule of an HTTP error status whose body named no decisive error type."""
    if status in (401, 403):
        return AUTH_FAILED
    if status == 402:
        return QUOTA_EXCEEDED
    if status == 404:
        return NOT_FOUND
    if status == 413:
        return TOO_LARGE
    if status == 429:
        return RATE_LIMITED
    if status in (503, 529):
        return OVERLOADED
    if status in (408, 409) or status >= 500:
        return SERVER_ERROR
    return INVALID_REQUEST


def _rule_for(status: int | None, error_type: str | None, error_code: str | None) -> Rule:
    """The rule for an upstream failure: a decisive error code or type first, then the HTTP
    status; a stream's error event without a known type is a server fault."""
    for kind in (error_code, error_type):
        if kind in BY_KIND and (status is None or kind not in _GENERIC):
            return BY_KIND[kind]
    return SERVER_ERROR if status is None else _rule_for_status(status)


def upstream_error(
    model: ModelConfig,
    status: int | None,
    message: str | None,
    *,
    error_type: str | None = None,
    error_code: str | None = None,
    headers: Any = None,
    usage: Usage | None = None,
) -> UpstreamError:
    """The :class:`UpstreamError` a client sees for an upstream failure of ``model``.

    ``status`` is the upstream's HTTP error status, ``None`` for an error event inside a
    stream (or an error object in a 2xx answer); ``error_type``/``error_code`` are the
    upstream's own words for the failure, when it gave any.
    The model's credential never appears in the message; a retryable failure keeps the
    upstream's Retry-After (``headers``) for the router's back-off and the client.
    """
    rule = _rule_for(status, error_type, error_code)
    where = "upstream sent an error" if status is None else f"upstream returned {status}"
    text = rule.withheld or _redact(message or "", model) or rule.code.replace("_", " ")
    return UpstreamError(
        rule.status,
        f"model {model.id}: {where}: {text}",
        type=rule.type,
        code=rule.code,
        retryable=rule.retryable,
        deployment_fault=rule.deployment_fault,
        retry_after=_retry_after_seconds(headers) if rule.retryable else None,
        usage=usage,
    )


def _redact(message: str, model: ModelConfig) -> str:
    """``message`` without the model's credential in it."""
    cred = model.credential()
    return message.replace(cred, "[redacted]") if cred and message else message


def error_body(raw: bytes) -> Any:
    """An HTTP error body: its JSON, else the start of its text (a proxy's HTML page, a
    plain-text error), for a provider to read its error fields from."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode("utf-8", "replace").strip()


def _retry_after_seconds(headers: Any) -> float | None:
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
