"""The meter of one request: prices its usage, settles its budget reservation, writes its row.

``finish`` is idempotent: whichever way a request ends (answer, error, timeout, client gone),
exactly one usage row is written and the reservation settled exactly once.
"""

from __future__ import annotations

import time

from spaceai import metrics
from spaceai.catalog import Catalog, ModelConfig
from spaceai.keys import KeyRecord
from spaceai.limits import Admission, Control
from spaceai.limits.policy import max_output_tokens
from spaceai.metering.ledger import Ledger, UsageRecord
from spaceai.metering.tokens import estimate_prompt_tokens
from spaceai.router import Route
from spaceai.storage.tables import NANOS_PER_USD
from spaceai.types import ChatRequest, GatewayError, Usage


def cost_nanos(model: ModelConfig, usage: Usage) -> int:
    """The exact cost in nano-dollars of ``usage`` at the model's catalog prices."""
    return round(usage.prompt_tokens * model.input_price * NANOS_PER_USD) + round(
        usage.completion_tokens * model.output_price * NANOS_PER_USD
    )


def usd(nanos: int) -> float:
    return nanos / NANOS_PER_USD


def usd_header(nanos: int) -> bytes:
    """The cost as a plain decimal string (never exponent notation), exact to the nano-dollar."""
    whole, frac = divmod(nanos, NANOS_PER_USD)
    text = f"{whole}.{frac:09d}".rstrip("0")
    return (text + "0" if text.endswith(".") else text).encode()


def status_of(err: GatewayError) -> str:
    if err.status == 504:
        return "timeout"
    if err.status == 499:
        return "client_disconnected"
    return "upstream_error" if err.status >= 500 or err.status == 429 else "error"


class Meter:
    """Measures one admitted request and records it exactly once."""

    __slots__ = ("ledger", "control", "request_id", "key", "model", "req", "admission", "endpoint",
                 "started", "first_token_at", "done", "cost", "route")

    def __init__(self, ledger: Ledger, control: Control, request_id: str, key: KeyRecord,
                 model: ModelConfig, req: ChatRequest, admission: Admission, endpoint: str,
                 started: float) -> None:
        self.ledger = ledger
        self.control = control
        self.request_id = request_id
        self.key = key
        self.model = model
        self.req = req
        self.admission = admission
        self.endpoint = endpoint
        self.started = started
        self.first_token_at: float | None = None
        self.done = False
        self.cost = 0
        self.route = Route()  # filled in by the router
        metrics.request_started()

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    async def finish(self, served: ModelConfig, usage: Usage, status: str, http_status: int,
                     error: str | None = None) -> int:
        """Price, settle and record the request; returns its cost in nano-dollars."""
        if self.done:
            return self.cost
        self.done = True
        if usage.problem:
            # the upstream's counts cannot be trusted: bill the most the request could cost
            error = f"{usage.problem}; billed the reservation"
            usage.prompt_tokens = estimate_prompt_tokens(self.req)
            usage.completion_tokens = max_output_tokens(served, self.req, usage.prompt_tokens)
            usage.cached_tokens = usage.cache_creation_tokens = 0
            self.cost = max(self.admission.reserved_nanos, cost_nanos(served, usage))
        else:
            if usage.completion_tokens and not usage.prompt_tokens:
                # a stream cut before upstream reported its counts: the prompt was consumed
                usage.prompt_tokens = estimate_prompt_tokens(self.req)
            self.cost = cost_nanos(served, usage)
        now = time.perf_counter()
        route = self.route
        upstream_s = route.upstream_s
        if self.req.stream and route.routed_at:  # a stream waits on upstream until it ends
            upstream_s += now - route.routed_at
        self.ledger.record(UsageRecord(
            request_id=self.request_id,
            key_id=self.key.id,
            model=served.id,
            provider=served.provider,
            endpoint=self.endpoint,
            status=status,
            http_status=http_status,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_nanos=self.cost,
            error=error[:500] if error else None,
            streamed=self.req.stream,
            latency_ms=(now - self.started) * 1000,
            ttft_ms=(self.first_token_at - self.started) * 1000 if self.first_token_at else None,
            model_requested=self.model.id,
            deployment=route.deployment,
            retries=route.retries,
            fallbacks=route.fallbacks,
            upstream_ms=upstream_s * 1000,
        ), (self.admission.id, self.admission.period))
        await self.control.settle(self.admission, usage.total_tokens, self.cost)
        metrics.request_finished(
            served.id, status, usage.prompt_tokens, usage.completion_tokens, usd(self.cost),
            now - self.started,
            self.first_token_at - self.started if self.first_token_at else None)
        return self.cost


def turned_away_status(http_status: int) -> str:
    """The ledger status of a request answered ``http_status`` before it was admitted."""
    if http_status in (402, 403, 429):  # a budget, a rate limit, a model the key may not use
        return "refused"
    return "invalid_request" if http_status < 500 else "error"


def record_turned_away(ledger: Ledger, catalog: Catalog, request_id: str, key: KeyRecord,
                       endpoint: str, started: float, asked: str | None, stream: bool,
                       exc: BaseException) -> None:
    """The ledger row (and metrics) of a known key's request turned away before admission:
    bad input, a model it may not use, a budget or rate-limit refusal. It reached no model,
    cost nothing and charged no budget, but the operator sees the client that fails.

    ``model`` is the catalog model asked for, or empty for a name the catalog does not know
    (which ``model_requested`` keeps), so made-up names add no rollup rows.
    """
    if isinstance(exc, GatewayError):
        http_status, error = exc.status, exc.message
    else:
        http_status, error = 500, f"internal error: {type(exc).__name__}"
    status = turned_away_status(http_status)
    model = catalog.get(asked) if asked else None
    ledger.record(UsageRecord(
        request_id=request_id, key_id=key.id, model=model.id if model else "",
        provider=model.provider if model else "", endpoint=endpoint, status=status,
        http_status=http_status, error=error[:500], streamed=stream,
        latency_ms=(time.perf_counter() - started) * 1000,
        model_requested=asked[:200] if asked else None,  # a client's text: its column's size
        retries=0, fallbacks=0, upstream_ms=0.0))
    if http_status == 429 and model is not None and isinstance(exc, GatewayError):
        metrics.request_refused(model.id, exc.code, exc.type)
