"""Budget alerts: a webhook call when a key's spend crosses a share of its budget.

Only when ``SPACEAI_ALERT_WEBHOOK`` is set (otherwise nothing runs). A background task looks,
every ``alert_poll_s``, at the keys this process has served whose spend changed, and for each
threshold crossed (the key's own ``alert_thresholds``, else ``SPACEAI_ALERT_THRESHOLDS``,
default 50/80/100 %) claims the alert by inserting its ``budget_alerts`` row: the row is unique
per key, budget period and threshold, so of several processes exactly one sends it, once. The
webhook gets JSON with a Slack-compatible ``text`` and the figures; a failed call is retried
with backoff, and the outcome (sent, attempts, last error) stays in the row for the console. An
alert whose sender died before delivering it (its lease, renewed at each attempt, is a minute
old) is taken over by another process, once (compare and set on the lease).

Daily spend reports (``SPACEAI_ALERT_DAILY_REPORT``): once a UTC day is over, one process
claims its report the same way (a ``budget_alerts`` row with key ``*``, the day as period and
threshold 0) and posts the day's spend, requests, errors and tokens, with the keys and models
that spent most, read from the usage rollup. ``POST /admin/reports/daily`` sends one on demand.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import sqlalchemy as sa

from spaceai.background import stop
from spaceai.keys import KeyRecord, nanos_to_usd, now, parse_thresholds
from spaceai.limits.policy import current_period
from spaceai.storage.tables import api_keys, budget_alerts, usage_rollup

if TYPE_CHECKING:
    from spaceai.gateway import Gateway

log = logging.getLogger("spaceai.alerts")
ATTEMPTS = 5
FIRST_BACKOFF_S = 0.5
LEASE_S = 60.0  # an undelivered alert untouched this long lost its sender: another takes it
ORPHAN_SCAN_S = 5.0
REPORT_KEY = "*"  # key_id of a daily report's row (every key); its threshold is 0
TOP = 5  # keys and models named in a daily report


def crossed(spend: int, budget: int, thresholds: tuple[int, ...] | list[int]) -> list[int]:
    """The thresholds (percent) that ``spend`` has reached of ``budget``."""
    if budget <= 0:
        return list(thresholds) if spend >= 0 else []
    return [t for t in thresholds if spend * 100 >= budget * t]


def message(key_id: str, key_name: str | None, threshold: int, spend: int, budget: int,
            period: str) -> dict:
    """The webhook's JSON: Slack's ``text``, and the figures for anything else."""
    name = f"'{key_name}' ({key_id})" if key_name else key_id
    scope = "this month" if period != "all" else "in total"
    text = (f":warning: SpaceAI budget alert: key {name} has spent "
            f"${nanos_to_usd(spend):.6f} of its ${nanos_to_usd(budget):.6f} budget {scope} "
            f"({threshold}% threshold reached).")
    return {"text": text, "key_id": key_id, "key_name": key_name, "threshold": threshold,
            "spend": nanos_to_usd(spend), "budget": nanos_to_usd(budget), "period": period}


def day_figures(engine: sa.Engine, day: date) -> dict[str, Any]:
    """The spend of UTC ``day`` from the rollup's day rows: totals, then the keys and models
    that spent most (blocking)."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) // 3600
    r = usage_rollup.c
    cols = (sa.func.sum(r.requests), sa.func.sum(r.errors), sa.func.sum(r.prompt_tokens),
            sa.func.sum(r.completion_tokens), sa.func.sum(r.cost_nanos))
    where = (r.span_hours == 24, r.start_hour == start)
    with engine.connect() as conn:
        total = conn.execute(sa.select(*cols).where(
            *where, r.key_id == "*", r.model == "*")).one()
        by_key = conn.execute(sa.select(r.key_id, *cols).where(*where, r.key_id != "*")
                              .group_by(r.key_id).order_by(cols[4].desc()).limit(TOP)).all()
        by_model = conn.execute(sa.select(r.model, *cols).where(*where, r.model != "*")
                                .group_by(r.model).order_by(cols[4].desc()).limit(TOP)).all()
        names = dict(conn.execute(sa.select(api_keys.c.id, api_keys.c.name).where(
            api_keys.c.id.in_([k[0] for k in by_key]))).all())

    def figures(row: Any) -> dict[str, Any]:
        return {"requests": int(row[0] or 0), "errors": int(row[1] or 0),
                "prompt_tokens": int(row[2] or 0), "completion_tokens": int(row[3] or 0),
                "cost": nanos_to_usd(int(row[4] or 0))}

    return {"day": day.isoformat(), **figures(total),
            "top_keys": [{"key_id": k[0], "key_name": names.get(k[0]), **figures(k[1:])}
                         for k in by_key],
            "top_models": [{"model": m[0], **figures(m[1:])} for m in by_model]}


def report_message(figures: dict[str, Any]) -> dict[str, Any]:
    """A daily report's webhook JSON: Slack's ``text`` and the figures."""
    lines = [f":bar_chart: SpaceAI daily spend {figures['day']} (UTC): "
             f"${figures['cost']:.6f} over {figures['requests']} requests "
             f"({figures['errors']} errors), {figures['prompt_tokens']} prompt and "
             f"{figures['completion_tokens']} completion tokens."]
    for k in figures["top_keys"]:
        name = f"'{k['key_name']}' ({k['key_id']})" if k["key_name"] else k["key_id"] or "no key"
        lines.append(f"- key {name}: ${k['cost']:.6f}, {k['requests']} requests")
    for m in figures["top_models"]:
        lines.append(f"- model {m['model']}: ${m['cost']:.6f}, {m['requests']} requests")
    return {"text": "\n".join(lines), "report": "daily", **figures}


class BudgetAlerts:
    """The alert watcher of one gateway process."""

    def __init__(self, gw: Gateway, url: str, thresholds: str, poll_s: float = 0.5,
                 daily_report: bool = False) -> None:
        self.gw = gw
        self.daily_report = daily_report
        self._reported: date | None = None  # the last day this process saw reported
        self.url = url
        self.default = tuple(parse_thresholds(thresholds) or ())
        self.poll_s = poll_s
        self._seen: dict[str, tuple[str, int, int | None]] = {}  # key -> (period, spend, budget)
        self._task: asyncio.Task | None = None
        self._sending: set[asyncio.Task] = set()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        await stop(self._task)
        if self._sending:
            await asyncio.wait(self._sending, timeout=5)
        if self._session:
            await self._session.close()

    async def _watch(self) -> None:
        last_scan = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.check()
                if self.daily_report:
                    await self.report_yesterday()
                if loop.time() - last_scan >= ORPHAN_SCAN_S:
                    last_scan = loop.time()
                    for alert_id, attempts, payload in await asyncio.to_thread(self._orphans):
                        self._spawn(alert_id, payload, attempts + 1)
            except Exception:  # noqa: BLE001 - the database may be briefly away
                log.warning("budget alert check failed", exc_info=True)

    def _spawn(self, alert_id: int, payload: dict[str, Any], first_attempt: int = 1) -> None:
        task = asyncio.create_task(self._send(alert_id, payload, first_attempt))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    def _orphans(self) -> list[tuple[int, int, dict[str, Any]]]:
        """Undelivered alerts whose sender is gone (an old lease), taken over (blocking)."""
        stale = now() - timedelta(seconds=LEASE_S)
        q = (sa.select(budget_alerts, api_keys.c.name.label("key_name"))
             .select_from(budget_alerts.outerjoin(api_keys,
                                                  api_keys.c.id == budget_alerts.c.key_id))
             .where(budget_alerts.c.sent_at.is_(None), budget_alerts.c.attempts < ATTEMPTS,
                    budget_alerts.c.lease_at < stale))
        taken = []
        with self.gw.engine.connect() as conn:
            rows = conn.execute(q).all()
        for r in rows:
            with self.gw.engine.begin() as conn:  # compare and set: one process takes it
                res = conn.execute(budget_alerts.update().where(
                    budget_alerts.c.id == r.id, budget_alerts.c.lease_at == r.lease_at,
                    budget_alerts.c.sent_at.is_(None)).values(lease_at=now()))
            if res.rowcount == 1:
                payload = (report_message(day_figures(self.gw.engine, date.fromisoformat(
                    r.period))) if r.key_id == REPORT_KEY else message(
                    r.key_id, r.key_name, r.threshold, r.spend_nanos, r.budget_nanos, r.period))
                taken.append((r.id, r.attempts, payload))
        return taken

    async def check(self) -> None:
        """Claim and send the alerts of every key whose spend crossed a threshold."""
        for key in list(self.gw.key_cache.known()):
            if key.budget_nanos is None or key.revoked:
                continue
            thresholds = key.alert_thresholds or self.default
            if not thresholds:
                continue
            period = current_period(key)
            spend = await self.gw.control.spend_nanos(key)
            state = (period, spend, key.budget_nanos)
            if self._seen.get(key.id) == state:
                continue
            due = crossed(spend, key.budget_nanos, thresholds)
            claimed = []
            if due:
                claimed = await asyncio.to_thread(self._claim, key, period, due, spend)
            self._seen[key.id] = state
            for alert_id, threshold in claimed:
                self._spawn(alert_id, message(key.id, key.name, threshold, spend,
                                              key.budget_nanos, period))

    async def report_yesterday(self) -> None:
        """Claim and send the report of the UTC day that ended last, once."""
        day = now().date() - timedelta(days=1)
        if self._reported != day:
            self._reported = day
            await self.report(day)

    async def report(self, day: date, again: bool = False) -> bool:
        """Send ``day``'s spend report, unless one was claimed already (``again``: send a
        new one anyway). Whether this call sent it."""
        figures = await asyncio.to_thread(day_figures, self.gw.engine, day)
        alert_id = await asyncio.to_thread(self._claim_report, day, figures, again)
        if alert_id is None:
            return False
        self._spawn(alert_id, report_message(figures))
        return True

    def _claim_report(self, day: date, figures: dict[str, Any], again: bool) -> int | None:
        """The report row this process won, or None (blocking)."""
        spend = int(round(figures["cost"] * 1e9))
        try:
            with self.gw.engine.begin() as conn:
                if again:
                    conn.execute(budget_alerts.delete().where(
                        budget_alerts.c.key_id == REPORT_KEY,
                        budget_alerts.c.period == day.isoformat()))
                res = conn.execute(budget_alerts.insert().values(
                    key_id=REPORT_KEY, period=day.isoformat(), threshold=0, spend_nanos=spend,
                    budget_nanos=0, created_at=now(), attempts=0, lease_at=now()))
                return res.inserted_primary_key[0]
        except sa.exc.IntegrityError:  # another process (or an earlier call) claimed it
            return None

    def _claim(self, key: KeyRecord, period: str, due: list[int],
               spend: int) -> list[tuple[int, int]]:
        """(alert id, threshold) of the alerts this process won (blocking)."""
        with self.gw.engine.connect() as conn:
            have = set(conn.execute(sa.select(budget_alerts.c.threshold).where(
                budget_alerts.c.key_id == key.id, budget_alerts.c.period == period)).scalars())
        won = []
        for threshold in due:
            if threshold in have:
                continue
            try:
                with self.gw.engine.begin() as conn:
                    res = conn.execute(budget_alerts.insert().values(
                        key_id=key.id, period=period, threshold=threshold, spend_nanos=spend,
                        budget_nanos=key.budget_nanos, created_at=now(), attempts=0,
                        lease_at=now()))
                    won.append((res.inserted_primary_key[0], threshold))
            except sa.exc.IntegrityError:  # another process claimed it first
                continue
        return won

    async def _send(self, alert_id: int, payload: dict[str, Any], first_attempt: int = 1) -> None:
        delay = FIRST_BACKOFF_S
        error = None
        for attempt in range(first_attempt, ATTEMPTS + 1):
            try:
                async with self._session.post(self.url, json=payload) as r:
                    if 200 <= r.status < 300:
                        await asyncio.to_thread(self._record, alert_id, attempt, None)
                        return
                    error = f"HTTP {r.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            await asyncio.to_thread(self._record, alert_id, attempt, error, sent=False)
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        log.error("alert %s (%s) not delivered after %d attempts: %s", alert_id,
                  payload.get("key_id") or payload.get("report"), ATTEMPTS, error)

    def _record(self, alert_id: int, attempts: int, error: str | None,
                sent: bool = True) -> None:
        values: dict[str, Any] = {"attempts": attempts, "last_error": error[:500] if error else None,
                                  "lease_at": now()}
        if sent:
            values["sent_at"] = now()
        with self.gw.engine.begin() as conn:
            conn.execute(budget_alerts.update().where(budget_alerts.c.id == alert_id)
                         .values(**values))


def list_alerts(engine: sa.Engine, limit: int = 200) -> list[dict[str, Any]]:
    """The newest alerts, with their keys' names (blocking)."""
    q = (sa.select(budget_alerts, api_keys.c.name.label("key_name"))
         .select_from(budget_alerts.outerjoin(api_keys, api_keys.c.id == budget_alerts.c.key_id))
         .order_by(budget_alerts.c.id.desc()).limit(limit))
    with engine.connect() as conn:
        rows = conn.execute(q).all()

    def iso(dt: Any) -> str | None:
        if dt is None:
            return None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat()

    return [{"id": r.id, "kind": "daily_report" if r.key_id == REPORT_KEY else "budget",
             "key_id": r.key_id, "key_name": r.key_name, "period": r.period,
             "threshold": r.threshold, "spend": nanos_to_usd(r.spend_nanos),
             "budget": nanos_to_usd(r.budget_nanos), "created_at": iso(r.created_at),
             "sent_at": iso(r.sent_at), "attempts": r.attempts, "last_error": r.last_error}
            for r in rows]
