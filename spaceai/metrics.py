"""Prometheus metrics of the request path, with label children bound once per model/status.

Each process counts its own requests: with ``spaceai serve --workers N`` a scrape of
``/metrics`` sees the worker that answered it. To aggregate across workers, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before starting: prometheus-client then
keeps the values in shared files and ``/metrics`` sums every worker's.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter("spaceai_requests", "Completion requests, by model and how they ended.",
                   ["model", "status"])
TOKENS = Counter("spaceai_tokens", "Tokens metered, by model and direction (in, out).",
                 ["model", "direction"])
COST = Counter("spaceai_cost_usd", "Cost of the requests in USD, by model.", ["model"])
LATENCY = Histogram("spaceai_request_duration_seconds",
                    "Time from request to its last byte, by model.", ["model"],
                    buckets=_LATENCY_BUCKETS)
TTFT = Histogram("spaceai_time_to_first_token_seconds",
                 "Time from request to the first streamed token, by model.", ["model"],
                 buckets=_LATENCY_BUCKETS)
IN_FLIGHT = Gauge("spaceai_requests_in_flight", "Admitted requests not finished yet.",
                  multiprocess_mode="livesum")
BUDGET_REFUSALS = Counter("spaceai_budget_refusals",
                          "Requests refused because the key's budget could not cover them.")
RATE_LIMIT_REFUSALS = Counter("spaceai_rate_limit_refusals",
                              "Requests refused by a key's rate limit, by kind (requests, tokens).",
                              ["kind"])
LEDGER_LAG = Gauge("spaceai_ledger_lag_bytes",
                   "Spooled usage rows not yet committed to the database, in bytes.",
                   multiprocess_mode="livesum")
LEDGER_SPOOL = Gauge("spaceai_ledger_spool_bytes",
                     "Size of this process's ledger spool segments still on disk, in bytes.",
                     multiprocess_mode="livesum")
LEDGER_DEAD_LETTERS = Counter("spaceai_ledger_dead_letters",
                              "Usage rows the database refused even after repair (kept aside).")
LEDGER_WRITER_RESTARTS = Counter("spaceai_ledger_writer_restarts",
                                 "Times the ledger writer process died and was started again.")
LEDGER_REPLAYED = Counter("spaceai_ledger_replayed_rows",
                          "Rows written at start-up from spools that dead processes left.")


class _ModelMetrics:
    __slots__ = ("tokens_in", "tokens_out", "cost", "latency", "ttft")

    def __init__(self, model: str) -> None:
        self.tokens_in = TOKENS.labels(model, "in")
        self.tokens_out = TOKENS.labels(model, "out")
        self.cost = COST.labels(model)
        self.latency = LATENCY.labels(model)
        self.ttft = TTFT.labels(model)


_models: dict[str, _ModelMetrics] = {}
_requests: dict[tuple[str, str], Counter] = {}
_refusals = {"requests": RATE_LIMIT_REFUSALS.labels("requests"),
             "tokens": RATE_LIMIT_REFUSALS.labels("tokens")}


def request_started() -> None:
    IN_FLIGHT.inc()


def request_finished(model: str, status: str, prompt_tokens: int, completion_tokens: int,
                     cost_usd: float, latency_s: float, ttft_s: float | None) -> None:
    """Count one finished request (called exactly once per admitted request)."""
    IN_FLIGHT.dec()
    counter = _requests.get((model, status))
    if counter is None:
        counter = _requests[(model, status)] = REQUESTS.labels(model, status)
    counter.inc()
    m = _models.get(model)
    if m is None:
        m = _models[model] = _ModelMetrics(model)
    if prompt_tokens:
        m.tokens_in.inc(prompt_tokens)
    if completion_tokens:
        m.tokens_out.inc(completion_tokens)
    if cost_usd:
        m.cost.inc(cost_usd)
    m.latency.observe(latency_s)
    if ttft_s is not None:
        m.ttft.observe(ttft_s)


def request_refused(model: str, code: str | None, kind: str) -> None:
    """Count a request refused at admission (budget or rate limit)."""
    counter = _requests.get((model, "refused"))
    if counter is None:
        counter = _requests[(model, "refused")] = REQUESTS.labels(model, "refused")
    counter.inc()
    if code == "insufficient_quota":
        BUDGET_REFUSALS.inc()
    elif kind in _refusals:
        _refusals[kind].inc()


def exposition() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
