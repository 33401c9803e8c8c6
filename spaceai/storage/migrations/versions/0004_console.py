"""The console: budget alerts (per-key thresholds, a table of alerts sent), and its rollup: the ledger summed per UTC hour and day, key and model (and "*" for
all keys and models), with a latency histogram.

Existing ledger rows are summed into it here, so the rollup agrees with the ledger from the
start; from then on the ledger writer keeps it (spaceai/metering/rollup.py, whose binning this
file repeats so that it stays valid whatever that module becomes).

Revision ID: 0004
Revises: 0003
"""

import math
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

BINS = 40
_BATCH = 50_000


def _bin(ms: float) -> int:
    if not math.isfinite(ms):
        return BINS - 1 if ms > 0 else 0
    if ms < 1.0:
        return 0
    return min(BINS - 1, 1 + int(2 * math.log2(ms)))


def _hour(value) -> int:  # noqa: ANN001
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() // 3600)


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("alert_thresholds", sa.JSON, nullable=True))
    op.create_table(
        "budget_alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Integer, nullable=False),
        sa.Column("spend_nanos", sa.BigInteger, nullable=False),
        sa.Column("budget_nanos", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("lease_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ux_budget_alerts_once", "budget_alerts", ["key_id", "period", "threshold"],
                    unique=True)
    rollup = op.create_table(
        "usage_rollup",
        sa.Column("span_hours", sa.Integer, primary_key=True),
        sa.Column("start_hour", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("errors", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("cost_nanos", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("latency_ms_sum", sa.Float, nullable=False, server_default="0"),
        *[sa.Column(f"lat_{i:02d}", sa.BigInteger, nullable=False, server_default="0")
          for i in range(BINS)],
    )
    conn = op.get_bind()
    groups: dict[tuple, list] = {}
    result = conn.execute(sa.text(
        "SELECT created_at, key_id, model, status, prompt_tokens, completion_tokens, "
        "cost_nanos, latency_ms FROM usage")).yield_per(_BATCH)
    for at, key, model, status, prompt, completion, cost, latency in result:
        hour = _hour(at)
        ms = float(latency or 0.0)
        for span in (1, 24):
            start = hour - hour % span
            for group in ((span, start, key or "", model), (span, start, "*", "*")):
                acc = groups.setdefault(group, [0, 0, 0, 0, 0, 0.0] + [0] * BINS)
                acc[0] += 1
                acc[1] += status != "ok"
                acc[2] += int(prompt or 0)
                acc[3] += int(completion or 0)
                acc[4] += int(cost or 0)
                acc[5] += ms
                acc[6 + _bin(ms)] += 1
    names = ["requests", "errors", "prompt_tokens", "completion_tokens", "cost_nanos",
             "latency_ms_sum"] + [f"lat_{i:02d}" for i in range(BINS)]
    rows = [{"span_hours": g[0], "start_hour": g[1], "key_id": g[2], "model": g[3],
             **dict(zip(names, acc, strict=True))} for g, acc in groups.items()]
    for i in range(0, len(rows), 1000):
        op.bulk_insert(rollup, rows[i:i + 1000])


def downgrade() -> None:
    op.drop_table("usage_rollup")
    op.drop_index("ux_budget_alerts_once", "budget_alerts")
    op.drop_table("budget_alerts")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("alert_thresholds")
