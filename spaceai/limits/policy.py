"""What a request may cost, and how a refusal or an admission is told to the client.

Shared by the in-process and the Redis controls so both reserve, refuse and report alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from spaceai.catalog import ModelConfig
from spaceai.keys import KeyRecord
from spaceai.metering.tokens import prompt_sizes
from spaceai.storage.tables import NANOS_PER_USD, api_keys, usage
from spaceai.types import ChatRequest, GatewayError

WINDOW_MS = 60_000  # rpm and tpm are counted over a sliding minute
DEFAULT_MAX_OUTPUT_TOKENS = 4096


def max_output_tokens(model: ModelConfig, req: ChatRequest, prompt_tokens: int) -> int:
    """The most completion tokens this request may produce."""
    if req.max_tokens:
        return int(req.max_tokens)
    if model.max_output_tokens:
        return int(model.max_output_tokens)
    if model.context_window:
        return max(1, min(DEFAULT_MAX_OUTPUT_TOKENS, int(model.context_window) - prompt_tokens))
    return DEFAULT_MAX_OUTPUT_TOKENS


def reservation(model: ModelConfig, req: ChatRequest,
                chain: Sequence[ModelConfig] = ()) -> tuple[int, int]:
    """(nano-dollars, tokens) to reserve: the most the request can cost, and its token estimate.

    The cost is an upper bound: the prompt's largest possible count (see
    :func:`max_prompt_tokens`) and the most output it may produce, priced at the dearest model
    it can reach (``chain``: the model and its fallbacks), so no fallback can overspend.
    The tokens (for tpm limits, corrected at settle) use the ordinary estimate.
    """
    estimate, bound = prompt_sizes(req)
    bound = max(estimate, bound)
    output = max_output_tokens(model, req, estimate)
    nanos = (math.ceil(bound * model.input_price * NANOS_PER_USD)
             + math.ceil(output * model.output_price * NANOS_PER_USD))
    for m in chain:
        if m is not model:
            nanos = max(nanos, math.ceil(bound * m.input_price * NANOS_PER_USD) + math.ceil(
                max_output_tokens(m, req, estimate) * m.output_price * NANOS_PER_USD))
    return nanos, estimate + output


def reservation_ttl_ms(model: ModelConfig) -> int:
    """How long an unsettled reservation is held before it is presumed lost (process crash)."""
    attempts = (model.max_retries + 1) * (1 + len(model.fallbacks))
    return int((model.timeout_s * attempts + 120) * 1000)


def current_period(key: KeyRecord, at: datetime | None = None) -> str:
    """The budget period a key's spend counts in: "all", or the UTC month ("2026-05")."""
    if key.budget_period == "monthly":
        return (at or datetime.now(UTC)).strftime("%Y-%m")
    return "all"


def period_start(period: str) -> datetime | None:
    if period == "all":
        return None
    year, month = period.split("-")
    return datetime(int(year), int(month), 1, tzinfo=UTC)


def spend_in_db(engine: sa.Engine, key_id: str, period: str) -> int:
    """The key's recorded spend for ``period`` (blocking: run it off the event loop)."""
    start = period_start(period)
    with engine.connect() as conn:
        if start is None:
            value = conn.execute(
                sa.select(api_keys.c.spend_nanos).where(api_keys.c.id == key_id)).scalar()
        else:
            value = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(usage.c.cost_nanos), 0))
                .where(usage.c.key_id == key_id, usage.c.created_at >= start)).scalar()
    return int(value or 0)


def is_limited(key: KeyRecord) -> bool:
    return key.budget_nanos is not None or key.rpm is not None or key.tpm is not None


# ------------------------------------------------------------------ refusals and headers


def insufficient_quota(key: KeyRecord, spend: int, reserved: int, need: int) -> GatewayError:
    left = max(0, key.budget_nanos - spend - reserved) / NANOS_PER_USD
    return GatewayError(
        429,
        f"You exceeded your current quota: this key's budget is ${key.budget_nanos / NANOS_PER_USD:g}"
        f" and ${left:.6f} of it is left, but this request could cost up to "
        f"${need / NANOS_PER_USD:.6f}. Lower max_tokens or ask for a larger budget.",
        type="insufficient_quota", code="insufficient_quota",
        headers={"x-should-retry": "false"})


def rate_limited(kind: str, limit: int, used: int, need: int, retry_ms: int,
                 headers: list[tuple[bytes, bytes]]) -> GatewayError:
    """A 429 ``rate_limit_exceeded`` for ``kind`` "requests" or "tokens", as OpenAI words it."""
    unit = "RPM" if kind == "requests" else "TPM"
    what = "1" if kind == "requests" else str(need)
    message = (f"Rate limit reached for this key on {kind} per min ({unit}): Limit {limit}, "
               f"Used {used}, Requested {what}. Please try again in {format_duration(retry_ms)}.")
    if kind == "tokens" and need > limit:
        message = (f"Request too large for this key on tokens per min (TPM): Limit {limit}, "
                   f"Requested {need}. Lower max_tokens or the prompt's size.")
    err = GatewayError(429, message, type=kind, code="rate_limit_exceeded")
    err.headers.update({k.decode(): v.decode() for k, v in headers})
    err.headers["retry-after"] = str(max(1, math.ceil(retry_ms / 1000)))
    err.headers["retry-after-ms"] = str(max(0, retry_ms))
    if kind == "tokens" and need > limit:
        err.headers["x-should-retry"] = "false"
    return err


def format_duration(ms: int) -> str:
    """OpenAI's reset format: "20ms", "1s", "6m0s"."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


def limit_headers(key: KeyRecord, requests_used: int, requests_reset_ms: int,
                  tokens_used: int, tokens_reset_ms: int) -> list[tuple[bytes, bytes]]:
    """The ``x-ratelimit-*`` headers for the key's limits (none for a limit it lacks)."""
    out: list[tuple[bytes, bytes]] = []
    if key.rpm is not None:
        out += [(b"x-ratelimit-limit-requests", str(key.rpm).encode()),
                (b"x-ratelimit-remaining-requests", str(max(0, key.rpm - requests_used)).encode()),
                (b"x-ratelimit-reset-requests", format_duration(requests_reset_ms).encode())]
    if key.tpm is not None:
        out += [(b"x-ratelimit-limit-tokens", str(key.tpm).encode()),
                (b"x-ratelimit-remaining-tokens", str(max(0, key.tpm - tokens_used)).encode()),
                (b"x-ratelimit-reset-tokens", format_duration(tokens_reset_ms).encode())]
    return out
