"""The usage ledger: one row per request, however it ended, written off the request path.

Requests append a :class:`UsageRecord` to an in-memory queue (no I/O on the event loop). A
thread hands the queue, in batches, to the writer process (``ledger_process``), which inserts
them and adds each batch's cost to the keys' spend in the same transaction, with its own GIL.
``close()`` drains the queue, so a graceful shutdown (SIGTERM) loses nothing.
"""

from __future__ import annotations

import collections
import logging
import operator
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa

from spaceai.metering.ledger_process import target_of

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
        self._buffer: collections.deque[bytes] = collections.deque()
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
        self._spawn()
        self._thread = threading.Thread(target=self._run, name="spaceai-ledger", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        """Start (or restart) the writer process."""
        kind, target = target_of(self.engine.url)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "spaceai.metering.ledger_process", kind,
             ",".join(_FIELDS), str(_KEY), str(_COST)],
            # the database URL may hold a password: the environment, unlike argv, is private
            env={**os.environ, "SPACEAI_LEDGER_TARGET": target},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _exchange(self, payload: bytes) -> int:
        """Send one frame to the writer; its answer (rows written)."""
        proc = self._process
        proc.stdin.write(len(payload).to_bytes(4, "big") + payload)
        proc.stdin.flush()
        answer = proc.stdout.read(4)
        if len(answer) < 4:
            raise EOFError("ledger writer process ended")
        return int.from_bytes(answer, "big")

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
        self._buffer.append(orjson.dumps(row))  # C-speed now; the hand-over needs no pickling

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
        self._thread.join(timeout=120)
        self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = self._stop.is_set()
            buffer = self._buffer
            while buffer:
                n = min(len(buffer), self.batch_size)
                self._write(n, b"\n".join([buffer.popleft() for _ in range(n)]))
            if stopping:
                try:
                    self._exchange(b"")  # the end
                except (EOFError, OSError):
                    pass
                try:
                    self._process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                return

    def _write(self, n: int, batch: bytes) -> None:
        """Hand one batch (JSON rows, one a line) to the writer process; wait for its answer."""
        for attempt in range(10):
            try:
                self._exchange(batch)
                break
            except (EOFError, OSError):
                # the writer died (killed?): start another and send the batch again
                self.failures += 1
                log.error("ledger writer process is gone (attempt %d): restarting it",
                          attempt + 1)
                self._process.kill()
                self._process.wait()
                self._spawn()
        else:
            log.error("ledger dropped %d rows: no writer process", n)
        with self._idle:
            self.written += n
            self._idle.notify_all()
