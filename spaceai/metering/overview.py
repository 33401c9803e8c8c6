"""Reading the rollup and the ledger for the console: overviews over time, the request log.

The overview never scans the ledger: it sums ``usage_rollup`` rows (per hour or day, key and
model) of its window, so it answers in milliseconds however many requests were made.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from spaceai.keys import nanos_to_usd
from spaceai.metering import rollup
from spaceai.metering.usage import _parse_when, _row
from spaceai.storage.tables import api_keys, usage, usage_rollup

WINDOWS = {"24h": 24, "7d": 7 * 24, "30d": 30 * 24}
BUCKETS = {"hour": 1, "day": 24}
DEFAULT_BUCKET = {"24h": "hour", "7d": "day", "30d": "day"}
_SUMS = [usage_rollup.c[c] for c in rollup.SUM_COLUMNS]
_BINS = [usage_rollup.c[c] for c in rollup.BIN_COLUMNS]


def _iso_hour(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).isoformat()


def _figures(sums: Any) -> dict[str, Any]:
    """Figures of one group from its summed columns (the SUM_COLUMNS, then the bins)."""
    n, errors, prompt, completion, cost, latency = (sums[i] or 0 for i in range(6))
    bins = [int(v or 0) for v in sums[6:6 + rollup.BINS]]
    return {"requests": int(n), "errors": int(errors), "prompt_tokens": int(prompt),
            "completion_tokens": int(completion), "cost": nanos_to_usd(int(cost)),
            "avg_latency_ms": round(float(latency) / n, 3) if n else None,
            "p50_latency_ms": rollup.percentile(bins, 0.5),
            "p95_latency_ms": rollup.percentile(bins, 0.95), "_bins": bins}


def overview(engine: sa.Engine, window: str = "24h", bucket: str | None = None,
             key_id: str | None = None, model: str | None = None, split: str | None = None,
             now: float | None = None) -> dict[str, Any]:
    """Spend, requests, errors, tokens and latency per time bucket, per key and per model.

    ``split`` (``key_id`` or ``model``) adds ``series``: cost and requests per bucket for each
    key or model.
    """
    if split not in (None, "key_id", "model"):
        raise ValueError("split must be key_id or model")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {', '.join(WINDOWS)}")
    bucket = bucket or DEFAULT_BUCKET[window]
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
    size = BUCKETS[bucket]
    count = -(-WINDOWS[window] // size)
    current = int((time.time() if now is None else now) // 3600) // size
    first = (current - count + 1) * size  # hour the first bucket starts
    r = usage_rollup.c
    filters = []
    if key_id:
        filters.append(r.key_id == key_id)
    if model:
        filters.append(r.model == model)
    detail = [r.key_id != rollup.ALL, *filters]
    in_buckets = [r.span_hours == size, r.start_hour >= first]
    # over time: the rows summing every key and model, unless the overview is filtered
    over_time = [*in_buckets, *detail] if filters else [*in_buckets, r.key_id == rollup.ALL]
    # by key and by model over the window: its whole days from day rows, the rest from hours
    whole_days = -(-first // 24) * 24
    in_window = sa.or_(sa.and_(r.span_hours == 24, r.start_hour >= whole_days),
                       sa.and_(r.span_hours == 1, r.start_hour >= first,
                               r.start_hour < whole_days))
    sums = [sa.func.sum(c) for c in _SUMS + _BINS]
    with engine.connect() as conn:
        by_time = conn.execute(sa.select(r.start_hour, *sums).where(*over_time)
                               .group_by(r.start_hour)).all()
        by_key = conn.execute(sa.select(r.key_id, *sums).where(in_window, *detail)
                              .group_by(r.key_id)).all()
        by_model = conn.execute(sa.select(r.model, *sums).where(in_window, *detail)
                                .group_by(r.model)).all()
        rows = []
        if split:
            column = r.key_id if split == "key_id" else r.model
            rows = conn.execute(sa.select(r.start_hour, column, sa.func.sum(r.cost_nanos),
                                          sa.func.sum(r.requests))
                                .where(*in_buckets, *detail).group_by(r.start_hour, column)).all()
        names = dict(conn.execute(sa.select(api_keys.c.id, api_keys.c.name)).all())
    slots = {(int(row[0]) - first) // size: row[1:] for row in by_time}
    empty = [0] * (len(rollup.SUM_COLUMNS) + rollup.BINS)
    buckets = []
    totals_acc = [0] * len(empty)
    for i in range(count):
        row = slots.get(i, empty)
        totals_acc = [a + (b or 0) for a, b in zip(totals_acc, row, strict=True)]
        figures = _figures(row)
        del figures["_bins"]
        buckets.append({"start": _iso_hour(first + i * size), **figures})
    totals = _figures(totals_acc)
    del totals["_bins"]

    def groups(rows: list, label: str) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            figures = _figures(r[1:])
            del figures["_bins"]
            ident = r[0] if label == "model" else (r[0] or None)
            entry = {label: ident, **figures}
            if label == "key_id":
                entry["name"] = names.get(r[0])
            out.append(entry)
        return sorted(out, key=lambda g: (-(g["cost"] or 0), -g["requests"]))

    series: dict[str, dict[str, list]] = {}
    for start, ident, cost, n in rows:
        i = (int(start) - first) // size
        s = series.setdefault(ident or "", {"cost_nanos": [0] * count, "requests": [0] * count})
        s["cost_nanos"][i] += int(cost or 0)
        s["requests"][i] += int(n or 0)
    return {
        "object": "overview",
        "window": window,
        "bucket": bucket,
        "since": _iso_hour(first),
        "key": key_id,
        "model": model,
        "buckets": buckets,
        "totals": totals,
        "by_key": groups(by_key, "key_id"),
        "by_model": groups(by_model, "model"),
        "split": split,
        "series": [{split: ident or None, "cost": [nanos_to_usd(c) for c in v["cost_nanos"]],
                    "requests": v["requests"]} for ident, v in sorted(series.items())],
        "names": {k: v for k, v in names.items()},
    }


def request_log(engine: sa.Engine, key_id: str | None = None, model: str | None = None,
                status: str | None = None, since: str | None = None, until: str | None = None,
                before: int | None = None, limit: int = 50) -> dict[str, Any]:
    """Ledger rows, newest first, ``limit`` at a time; ``before`` (a row id) pages back.

    ``model`` matches the model asked for or the one that served. ``status`` is ``ok``, ``error`` (anything not ok), a row status (``refused``, ``timeout``,
    ...) or an HTTP status code.
    """
    conds = []
    if key_id:
        conds.append(usage.c.key_id == key_id)
    if model:  # asked for, or served (by a fallback)
        conds.append(sa.or_(usage.c.model == model, usage.c.model_requested == model))
    if status:
        if status.isdigit():
            conds.append(usage.c.http_status == int(status))
        elif status == "error":
            conds.append(usage.c.status != "ok")
        else:
            conds.append(usage.c.status == status)
    if (s := _parse_when(since)) is not None:
        conds.append(usage.c.created_at >= s)
    if (u := _parse_when(until)) is not None:
        conds.append(usage.c.created_at < u)
    if before is not None:
        conds.append(usage.c.id < before)
    limit = max(1, min(limit, 500))
    q = (sa.select(usage, api_keys.c.name.label("key_name"))
         .select_from(usage.outerjoin(api_keys, api_keys.c.id == usage.c.key_id))
         .where(sa.and_(sa.true(), *conds)).order_by(usage.c.id.desc()).limit(limit + 1))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    data = [{**_row(r), "key_name": r.key_name} for r in rows[:limit]]
    return {"object": "list", "data": data, "has_more": len(rows) > limit,
            "next_before": data[-1]["id"] if len(rows) > limit else None}


def last_used(engine: sa.Engine) -> dict[str, str | None]:
    """When each key was last used (its newest ledger row), by key id."""
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.select(api_keys.c.id)).all()]
        out = {}
        for key_id in ids:  # one index probe per key: (key_id, created_at)
            at = conn.execute(sa.select(sa.func.max(usage.c.created_at))
                              .where(usage.c.key_id == key_id)).scalar()
            if isinstance(at, str):
                at = datetime.fromisoformat(at)
            if at is not None and at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            out[key_id] = at.isoformat() if at is not None else None
    return out
