"""The tables. Money is stored as integer nano-dollars (1e-9 USD) so sums are exact."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

NANOS_PER_USD = 1_000_000_000

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("models", sa.JSON, nullable=True),
    sa.Column("budget_nanos", sa.BigInteger, nullable=True),
    sa.Column("budget_period", sa.String(16), nullable=True),  # null (lifetime) or "monthly"
    sa.Column("spend_nanos", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # budget alert thresholds in percent (null: the gateway's default, 50/80/100)
    sa.Column("alert_thresholds", sa.JSON, nullable=True),
    # request/response bodies logged for this key (null: the gateway's SPACEAI_LOG_BODIES)
    sa.Column("log_bodies", sa.Boolean, nullable=True),
)

usage = sa.Table(
    "usage",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("endpoint", sa.String(64), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cached_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cost_nanos", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("http_status", sa.Integer, nullable=False),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("streamed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("latency_ms", sa.Float, nullable=False, server_default="0"),
    sa.Column("ttft_ms", sa.Float, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # how it was routed (null in rows written before migration 0006): the model asked for
    # (``model`` is the one that served), the upstream that served, retries and fallbacks
    # taken, and the time spent waiting on upstreams (the rest of ``latency_ms`` is the
    # gateway's own)
    sa.Column("model_requested", sa.String(200), nullable=True),
    sa.Column("deployment", sa.String(200), nullable=True),
    sa.Column("retries", sa.Integer, nullable=True),
    sa.Column("fallbacks", sa.Integer, nullable=True),
    sa.Column("upstream_ms", sa.Float, nullable=True),
)

sa.Index("ux_usage_request_id", usage.c.request_id, unique=True)
sa.Index("ix_usage_key_created", usage.c.key_id, usage.c.created_at)
sa.Index("ix_usage_created", usage.c.created_at)
sa.Index("ix_usage_model_created", usage.c.model, usage.c.created_at)

# rows the database refused even after repair: kept verbatim, never silently dropped
usage_dead_letters = sa.Table(
    "usage_dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# stored Responses API answers (``store: true``), owned by the key that made them; the
# conversation a ``previous_response_id`` continues is ``context`` + ``body.output``
responses = sa.Table(
    "responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),  # the response object, as answered
    sa.Column("input_items", sa.JSON, nullable=False),  # this request's input items
    sa.Column("context", sa.JSON, nullable=False),  # every item the model saw, in order
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

sa.Index("ix_responses_created", responses.c.created_at)
sa.Index("ix_responses_key", responses.c.key_id)

# the ledger summed per UTC hour and day, key and model (and "*" for all), kept by the ledger
# writer in the same transaction as the rows (spaceai/metering/rollup.py): overviews never
# scan the ledger
usage_rollup = sa.Table(
    "usage_rollup",
    metadata,
    sa.Column("span_hours", sa.Integer, primary_key=True),  # 1 or 24
    sa.Column("start_hour", sa.Integer, primary_key=True),  # hours since the epoch, UTC
    sa.Column("key_id", sa.String(32), primary_key=True),  # "" no key, "*" every key
    sa.Column("model", sa.String(200), primary_key=True),  # "*" every model
    sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("errors", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("prompt_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("completion_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cost_nanos", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("latency_ms_sum", sa.Float, nullable=False, server_default="0"),
    *[sa.Column(f"lat_{i:02d}", sa.BigInteger, nullable=False, server_default="0")
      for i in range(40)],
)

# budget alerts: one row per key, budget period and threshold crossed. The row is the claim
# (a unique index), so of several processes that see the crossing exactly one sends it.
budget_alerts = sa.Table(
    "budget_alerts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("period", sa.String(16), nullable=False),  # "all" or the UTC month "2026-11"
    sa.Column("threshold", sa.Integer, nullable=False),  # percent of the budget
    sa.Column("spend_nanos", sa.BigInteger, nullable=False),
    sa.Column("budget_nanos", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(500), nullable=True),
    # renewed at each delivery attempt: an undelivered alert whose lease is old lost its sender
    sa.Column("lease_at", sa.DateTime(timezone=True), nullable=True),
)
sa.Index("ux_budget_alerts_once", budget_alerts.c.key_id, budget_alerts.c.period,
         budget_alerts.c.threshold, unique=True)

# request and response bodies, only when the operator turns them on (SPACEAI_LOG_BODIES or a
# key's log_bodies), secrets redacted, purged after SPACEAI_LOG_BODIES_DAYS (spaceai/bodies.py)
request_bodies = sa.Table(
    "request_bodies",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("request", sa.Text, nullable=True),  # the request's JSON
    sa.Column("response", sa.Text, nullable=True),  # the answer's JSON, or a stream's text
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_request_bodies_created", request_bodies.c.created_at)
