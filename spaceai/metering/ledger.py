"""The usage ledger: one row per request, however it ended, written off the request path.

Requests append a :class:`UsageRecord` to an in-memory queue (no I/O on the event loop); a
writer thread inserts them in batches and adds each batch's cost to the keys' spend in the same
transaction. ``close()`` drains the queue, so a graceful shutdown (SIGTERM) loses nothing.
"""

from __future__ import annotations

import collections
import logging
import operator
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

log = logging.getLogger("spaceai.ledger")



@dataclass(slots=True)
class UsageRecord:
    request_id: str
    key_id: str | None
    model: str
    provider: str
    endpoint: str
    status: str  # ok | error | upstream_error | timeout | client_disconnected | refused
    http_status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_nanos: int = 0
    error: str | None = None
    streamed: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


_FIELDS = tuple(UsageRecord.__dataclass_fields__)
_row_of = operator.attrgetter(*_FIELDS)
_AT, _KEY, _COST = (_FIELDS.index(f) for f in ("created_at", "key_id", "cost_nanos"))
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


class Ledger:
    """Batched, durable-on-shutdown writer of usage rows."""

    def __init__(self, engine: sa.Engine, flush_interval_s: float = 0.2, batch_size: int = 500):
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        # appended by the event loop, drained by the writer: the writer sleeps between
        # flushes instead of waking for every row, so requests never wait for it
        self._buffer: collections.deque[tuple] = collections.deque()
        self._sqlite = engine.dialect.name == "sqlite"
        self._recorded = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self.written = 0
        self.failures = 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="spaceai-ledger", daemon=True)
        self._thread.start()

    def record(self, rec: UsageRecord) -> None:
        """Queue one row; never blocks.

        The row is made ready for the driver here, a few microseconds spread over the
        requests, so the writer thread only hands whole batches to the driver (whose C loop
        lets go of the GIL) and never holds up the event loop with a burst of Python work.
        """
        row = _row_of(rec)
        if self._sqlite:
            # SQLAlchemy's own SQLite DateTime storage format (naive UTC), so reads parse it
            row = row[:_AT] + (rec.created_at.astimezone(UTC).strftime(_SQLITE_TIME),) + row[
                _AT + 1:]
        self._recorded += 1
        self._buffer.append(row)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row recorded so far is written (tests, the CLI, shutdown)."""
        target = self._recorded
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self.written < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
                self._wake.set()
        return True

    def close(self) -> None:
        """Write everything still queued, then stop the writer."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)
        self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = self._stop.is_set()
            buffer = self._buffer
            while buffer:
                n = min(len(buffer), self.batch_size)
                self._write([buffer.popleft() for _ in range(n)])
            if stopping:
                return

    @property
    def _insert_sql(self) -> str:
        """The INSERT in the driver's own parameter style, built once: the batch goes to the
        driver as plain tuples, with no per-row statement compilation."""
        sql = getattr(self, "_sql", None)
        if sql is None:
            style = self.engine.dialect.paramstyle
            marks = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": None}.get(style)
            if marks is None:
                marks_list = [f":{name}" if style == "named" else f":{i + 1}"
                              for i, name in enumerate(_FIELDS)]
            else:
                marks_list = [marks] * len(_FIELDS)
            sql = self._sql = (f"INSERT INTO usage ({', '.join(_FIELDS)}) "
                               f"VALUES ({', '.join(marks_list)})")
        return sql

    def _write(self, batch: list[tuple]) -> None:
        spend: dict[str, int] = defaultdict(int)
        for row in batch:
            if row[_KEY] and row[_COST]:
                spend[row[_KEY]] += row[_COST]
        rows = batch
        if self.engine.dialect.paramstyle == "named":
            rows = [dict(zip(_FIELDS, r, strict=True)) for r in batch]
        mark = "?" if self.engine.dialect.paramstyle == "qmark" else "%s"
        update = f"UPDATE api_keys SET spend_nanos = spend_nanos + {mark} WHERE id = {mark}"
        for attempt in range(10):
            try:
                # the driver's own connection: one executemany per table, one commit
                conn = self.engine.raw_connection()
                try:
                    cur = conn.cursor()
                    cur.executemany(self._insert_sql, rows)
                    if spend:
                        cur.executemany(update, [(n, k) for k, n in spend.items()])
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
                finally:
                    conn.close()
                break
            except Exception:  # noqa: BLE001 - keep the rows and retry: the ledger is money
                self.failures += 1
                log.exception("ledger write failed (attempt %d), retrying", attempt + 1)
                time.sleep(min(2.0, 0.1 * 2**attempt))
        else:
            log.error("ledger dropped %d rows after repeated failures", len(batch))
        with self._idle:
            self.written += len(batch)
            self._idle.notify_all()
