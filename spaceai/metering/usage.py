"""Reading the ledger: rows and totals by key, model and time range (API and CLI share it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from spaceai.keys import nanos_to_usd
from spaceai.storage.tables import usage


def _parse_when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO 8601 date or time, got {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _row(r: Any) -> dict[str, Any]:
    """A ledger row as the API shows it. ``overhead_ms`` is the gateway's own share of the
    latency: what was not spent on upstreams (attempts, the backoff between them, a stream
    until it ended). It, like the routing fields, is null in rows written before 0006."""
    created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
    upstream = r.upstream_ms
    return {
        "id": r.id,
        "request_id": r.request_id,
        "key_id": r.key_id,
        "model": r.model,
        "provider": r.provider,
        "endpoint": r.endpoint,
        "status": r.status,
        "http_status": r.http_status,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cached_tokens": r.cached_tokens,
        "cost": nanos_to_usd(r.cost_nanos),
        "streamed": bool(r.streamed),
        "latency_ms": round(r.latency_ms, 3),
        "ttft_ms": round(r.ttft_ms, 3) if r.ttft_ms is not None else None,
        "model_requested": r.model_requested,
        "deployment": r.deployment,
        "retries": r.retries,
        "fallbacks": r.fallbacks,
        "upstream_ms": round(upstream, 3) if upstream is not None else None,
        "overhead_ms": round(max(0.0, r.latency_ms - upstream), 3)
        if upstream is not None else None,
        "error": r.error,
        "created_at": created.isoformat(),
    }


def query_usage(engine: sa.Engine, key_id: str | None = None, model: str | None = None,
                since: str | None = None, until: str | None = None, limit: int = 100,
                offset: int = 0) -> dict[str, Any]:
    """``{"data": [rows], "totals": {...}, "by_key_model": [...]}`` for the filters given."""
    conds = []
    if key_id:
        conds.append(usage.c.key_id == key_id)
    if model:
        conds.append(usage.c.model == model)
    if (s := _parse_when(since)) is not None:
        conds.append(usage.c.created_at >= s)
    if (u := _parse_when(until)) is not None:
        conds.append(usage.c.created_at < u)
    where = sa.and_(sa.true(), *conds)
    limit = max(1, min(limit, 10_000))
    totals_q = sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(usage.c.prompt_tokens), 0),
        sa.func.coalesce(sa.func.sum(usage.c.completion_tokens), 0),
        sa.func.coalesce(sa.func.sum(usage.c.cost_nanos), 0),
    ).where(where)
    groups_q = (
        sa.select(usage.c.key_id, usage.c.model, sa.func.count(),
                  sa.func.sum(usage.c.prompt_tokens), sa.func.sum(usage.c.completion_tokens),
                  sa.func.sum(usage.c.cost_nanos))
        .where(where).group_by(usage.c.key_id, usage.c.model)
        .order_by(usage.c.key_id, usage.c.model)
    )
    rows_q = (sa.select(usage).where(where).order_by(usage.c.id.desc())
              .limit(limit).offset(offset))
    with engine.connect() as conn:
        n, p, c, cost = conn.execute(totals_q).one()
        groups = conn.execute(groups_q).all()
        rows = conn.execute(rows_q).all()
    return {
        "object": "list",
        "data": [_row(r) for r in rows],
        "totals": {"requests": int(n), "prompt_tokens": int(p), "completion_tokens": int(c),
                   "cost": nanos_to_usd(int(cost))},
        "by_key_model": [
            {"key_id": g[0], "model": g[1], "requests": int(g[2]), "prompt_tokens": int(g[3] or 0),
             "completion_tokens": int(g[4] or 0), "cost": nanos_to_usd(int(g[5] or 0))}
            for g in groups
        ],
        "limit": limit,
        "offset": offset,
        "has_more": offset + len(rows) < int(n),
    }
