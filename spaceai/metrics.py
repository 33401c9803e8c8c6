"""Prometheus metrics of the request path, with label children bound once per model/status.

Each process counts its own requests: with ``spaceai serve --workers N`` a scrape of
``/metrics`` sees the worker that answered it. To aggregate across workers, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before starting: prometheus-client then
keeps the values in shared files and ``/metrics`` sums every worker's.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left

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
    """One model's metrics: what requests add is kept in plain numbers and handed to the
    Prometheus children in one go (:func:`flush`): a request pays for a few additions, not
    for eight locked increments and a histogram walk."""

    __slots__ = ("model", "tokens_in", "tokens_out", "cost", "latency", "ttft", "statuses",
                 "n_in", "n_out", "usd", "latency_counts", "latency_sum", "ttft_counts",
                 "ttft_sum")

    def __init__(self, model: str) -> None:
        self.model = model
        self.tokens_in = TOKENS.labels(model, "in")
        self.tokens_out = TOKENS.labels(model, "out")
        self.cost = COST.labels(model)
        self.latency = LATENCY.labels(model)
        self.ttft = TTFT.labels(model)
        self._clear()

    def _clear(self) -> None:
        self.statuses: dict[str, int] = {}
        self.n_in = self.n_out = 0
        self.usd = 0.0
        self.latency_counts = [0] * (len(_LATENCY_BUCKETS) + 1)  # the last: +Inf
        self.latency_sum = 0.0
        self.ttft_counts = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.ttft_sum = 0.0

    def flush(self) -> None:
        for status, n in self.statuses.items():
            _request_counter(self.model, status).inc(n)
        if self.n_in:
            self.tokens_in.inc(self.n_in)
        if self.n_out:
            self.tokens_out.inc(self.n_out)
        if self.usd:
            self.cost.inc(self.usd)
        _add_observations(self.latency, self.latency_counts, self.latency_sum)
        _add_observations(self.ttft, self.ttft_counts, self.ttft_sum)
        self._clear()


def _add_observations(histogram: Histogram, counts: list[int], total: float) -> None:
    """What ``observe`` would have added for each value counted in ``counts`` (by bucket)."""
    if not any(counts):
        return
    histogram._sum.inc(total)
    for bucket, n in zip(histogram._buckets, counts, strict=True):
        if n:
            bucket.inc(n)


def _request_counter(model: str, status: str) -> Counter:
    counter = _requests.get((model, status))
    if counter is None:
        counter = _requests[(model, status)] = REQUESTS.labels(model, status)
    return counter


_models: dict[str, _ModelMetrics] = {}
_pending: set[_ModelMetrics] = set()
_requests: dict[tuple[str, str], Counter] = {}
_refusals = {"requests": RATE_LIMIT_REFUSALS.labels("requests"),
             "tokens": RATE_LIMIT_REFUSALS.labels("tokens")}
_in_flight = 0
_MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_flush_timer: asyncio.TimerHandle | None = None
FLUSH_S = 1.0  # with several workers: how stale another worker's figures may be at a scrape


def flush() -> None:
    """Hand what requests counted to the Prometheus metrics (before each scrape; and, with
    several workers sharing them, within ``FLUSH_S`` of each request)."""
    global _flush_timer
    _flush_timer = None
    IN_FLIGHT.set(_in_flight)
    while _pending:
        _pending.pop().flush()


def _schedule_flush() -> None:
    global _flush_timer
    if _flush_timer is None:
        try:
            _flush_timer = asyncio.get_running_loop().call_later(FLUSH_S, flush)
        except RuntimeError:  # no loop (a script): at once
            flush()


def request_started() -> None:
    global _in_flight
    _in_flight += 1


def request_finished(model: str, status: str, prompt_tokens: int, completion_tokens: int,
                     cost_usd: float, latency_s: float, ttft_s: float | None) -> None:
    """Count one finished request (called exactly once per admitted request)."""
    global _in_flight
    _in_flight -= 1
    m = _models.get(model)
    if m is None:
        m = _models[model] = _ModelMetrics(model)
    m.statuses[status] = m.statuses.get(status, 0) + 1
    m.n_in += prompt_tokens
    m.n_out += completion_tokens
    m.usd += cost_usd
    m.latency_counts[bisect_left(_LATENCY_BUCKETS, latency_s)] += 1
    m.latency_sum += latency_s
    if ttft_s is not None:
        m.ttft_counts[bisect_left(_LATENCY_BUCKETS, ttft_s)] += 1
        m.ttft_sum += ttft_s
    _pending.add(m)
    if _MULTIPROCESS:
        _schedule_flush()


def request_refused(model: str, code: str | None, kind: str) -> None:
    """Count a request refused at admission (budget or rate limit)."""
    _request_counter(model, "refused").inc()
    if code == "insufficient_quota":
        BUDGET_REFUSALS.inc()
    elif kind in _refusals:
        _refusals[kind].inc()


def exposition() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text exposition."""
    flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
