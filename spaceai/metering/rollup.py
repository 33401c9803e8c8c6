"""The usage rollup: ledger rows summed per UTC hour and day, key and model, for fast overviews.

The ledger writer (:mod:`spaceai.metering.ledger_process`) adds every row it newly inserts to
its rollup rows in the same transaction, so the rollup and the ledger always agree. Each row
counts in four rollup rows: its hour and its day (``span_hours`` 1 and 24, ``start_hour`` the
first hour of the span), each for its key and model and for all of them (key and model ``*``).
An overview then reads at most a few thousand rows, whatever the ledger's size.
Latency percentiles come from a log histogram of ``BINS`` counters per rollup row: bin 0 holds
latencies under 1 ms, bin ``i`` (1 <= i < BINS - 1) holds ``[2**((i-1)/2), 2**(i/2))`` ms, and
the last bin everything from ``2**((BINS-2)/2)`` ms (about 9 minutes) up. A percentile read
from it is interpolated inside one bin, so it is within a factor of sqrt(2) of the exact one.

Imports nothing heavy: the writer process uses it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

BINS = 40
BIN_COLUMNS = tuple(f"lat_{i:02d}" for i in range(BINS))
SUM_COLUMNS = ("requests", "errors", "prompt_tokens", "completion_tokens", "cost_nanos",
               "latency_ms_sum")
GROUP_COLUMNS = ("span_hours", "start_hour", "key_id", "model")
TABLE = "usage_rollup"
NO_KEY = ""  # key_id of rows without a key
ALL = "*"  # key_id and model of the rows summing every key and model
SPANS = (1, 24)


def latency_bin(ms: float) -> int:
    """The histogram bin of a latency in milliseconds."""
    if not math.isfinite(ms):
        return BINS - 1 if ms > 0 else 0
    if ms < 1.0:
        return 0
    return min(BINS - 1, 1 + int(2 * math.log2(ms)))


def bin_bounds(i: int) -> tuple[float, float]:
    """The [low, high) latency range in ms of bin ``i``."""
    if i == 0:
        return 0.0, 1.0
    return 2 ** ((i - 1) / 2), 2 ** (i / 2)


def percentile(counts: list[int] | tuple[int, ...], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram, in ms; None when it is empty."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            low, high = bin_bounds(i)
            frac = (rank - seen) / n
            if i == 0:
                return round(high * frac, 3)
            if i == BINS - 1:
                return round(low, 3)
            return round(low * (high / low) ** frac, 3)  # geometric inside the bin
        seen += n
    return round(bin_bounds(BINS - 1)[0], 3)


def hour_of(created_at: object) -> int:
    """Hours since the epoch (UTC) of a row's ``created_at`` (datetime or ISO text)."""
    dt = created_at if isinstance(created_at, datetime) else datetime.fromisoformat(
        str(created_at).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() // 3600)


def is_error(status: object) -> bool:
    """Whether a ledger row counts as an error: anything that did not end ``ok``."""
    return status != "ok"


def aggregate(rows: list, index: dict[str, int]) -> dict[tuple, list]:
    """Per-hour sums of ledger rows (sequences, field positions in ``index``).

    Returns ``{(hour, key_id, model): [requests, errors, prompt, completion, cost_nanos,
    latency_ms_sum, bin_0, ..., bin_{BINS-1}]}``.
    """
    at, key, model, status = index["created_at"], index["key_id"], index["model"], index["status"]
    prompt, completion = index["prompt_tokens"], index["completion_tokens"]
    cost, latency = index["cost_nanos"], index["latency_ms"]
    out: dict[tuple, list] = {}
    width = len(SUM_COLUMNS) + BINS
    for r in rows:
        group = (hour_of(r[at]), r[key] or NO_KEY, r[model])
        acc = out.get(group)
        if acc is None:
            acc = out[group] = [0] * width
            acc[5] = 0.0
        ms = float(r[latency] or 0.0)
        acc[0] += 1
        acc[1] += is_error(r[status])
        acc[2] += int(r[prompt] or 0)
        acc[3] += int(r[completion] or 0)
        acc[4] += int(r[cost] or 0)
        acc[5] += ms
        acc[6 + latency_bin(ms)] += 1
    return out


def expand(hourly: dict[tuple, list]) -> dict[tuple, list]:
    """The rollup rows' increments, ``{(span_hours, start_hour, key_id, model): sums}``."""
    out: dict[tuple, list] = {}
    for (hour, key, model), acc in hourly.items():
        for span in SPANS:
            start = hour - hour % span
            for group in ((span, start, key, model), (span, start, ALL, ALL)):
                have = out.get(group)
                if have is None:
                    out[group] = list(acc)
                else:
                    for i, v in enumerate(acc):
                        have[i] += v
    return out


def upsert_sql(mark: str) -> str:
    """The statement adding one group's increments to its rollup row (SQLite and PostgreSQL)."""
    cols = GROUP_COLUMNS + SUM_COLUMNS + BIN_COLUMNS
    adds = ", ".join(f"{c} = {TABLE}.{c} + excluded.{c}" for c in SUM_COLUMNS + BIN_COLUMNS)
    return (f"INSERT INTO {TABLE} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))}) "
            f"ON CONFLICT ({', '.join(GROUP_COLUMNS)}) DO UPDATE SET {adds}")


def upsert_params(groups: dict[tuple, list]) -> list[tuple]:
    """The upserts' parameters, in one order for every writer (so two never deadlock)."""
    return [(*group, *groups[group]) for group in sorted(groups)]
