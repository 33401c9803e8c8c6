"""The usage ledger: one row per request, however it ended, written off the request path.

Requests append a :class:`UsageRecord` to an in-memory queue (no I/O on the event loop). A
thread hands the queue, in batches, to the writer process (``ledger_process``), which inserts
them and adds each batch's cost to the keys' spend in the same transaction, with its own GIL.
``close()`` drains the queue, so a graceful shutdown (SIGTERM) loses nothing.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import operator
import os
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


class Ledger:
    """Batched, durable-on-shutdown writer of usage rows."""

    def __init__(self, engine: sa.Engine, flush_interval_s: float = 0.2, batch_size: int = 500):
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        # appended by the event loop; handed to the writer process every flush interval
        self._buffer: collections.deque[bytes] = collections.deque()
        self._sqlite = engine.dialect.name == "sqlite"
        self._recorded = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None  # only without a running event loop
        self._pump_done: concurrent.futures.Future | None = None
        self._kick: asyncio.Event | None = None
        self._stopping = False
        self._idle = threading.Condition()
        self.written = 0
        self.failures = 0

    def start(self) -> None:
        """Start the writer process and the hand-over to it.

        In the gateway the hand-over runs on the request loop itself, as one small task: a
        thread of its own would take the GIL from requests every time it woke. Without a
        running loop (scripts, tests) it gets a loop on a thread.
        """
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever,
                                            name="spaceai-ledger", daemon=True)
            self._thread.start()
        self._stopping = False
        self._pump_done = asyncio.run_coroutine_threadsafe(self._pump(), self._loop)

    async def _spawn(self) -> asyncio.subprocess.Process:
        """Start (or restart) the writer process."""
        kind, target = target_of(self.engine.url)
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "spaceai.metering.ledger_process", kind,
            ",".join(_FIELDS), str(_KEY), str(_COST), str(self.batch_size),
            # the database URL may hold a password: the environment, unlike argv, is private
            env={**os.environ, "SPACEAI_LEDGER_TARGET": target},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

    async def _pump(self) -> None:
        self._kick = asyncio.Event()
        self._process = await self._spawn()
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
            self._kick.clear()
            stopping = self._stopping
            buffer = self._buffer
            while buffer:
                n = min(len(buffer), self.batch_size)
                await self._hand_over(n, b"\n".join([buffer.popleft() for _ in range(n)]))
            if stopping:
                try:
                    await self._exchange(b"")  # the end
                    await asyncio.wait_for(self._process.wait(), 30)
                except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError):
                    self._process.kill()
                return

    async def _exchange(self, payload: bytes) -> int:
        """Send one frame to the writer; its answer (rows written)."""
        proc = self._process
        proc.stdin.write(len(payload).to_bytes(4, "big") + payload)
        await proc.stdin.drain()
        return int.from_bytes(await proc.stdout.readexactly(4), "big")

    async def _hand_over(self, n: int, batch: bytes) -> None:
        """Hand one batch (JSON rows, one a line) to the writer process; wait for its answer."""
        for attempt in range(10):
            try:
                await self._exchange(batch)
                break
            except (OSError, EOFError, asyncio.IncompleteReadError):
                # the writer died (killed?): start another and send the batch again
                self.failures += 1
                log.error("ledger writer process is gone (attempt %d): restarting it",
                          attempt + 1)
                try:
                    self._process.kill()
                except ProcessLookupError:
                    pass
                await self._process.wait()
                self._process = await self._spawn()
        else:
            log.error("ledger dropped %d rows: no writer process", n)
        with self._idle:
            self.written += n
            self._idle.notify_all()

    def _wake(self) -> None:
        if self._loop is not None and self._kick is not None:
            self._loop.call_soon_threadsafe(self._kick.set)

    def record(self, rec: UsageRecord) -> None:
        """Queue one row; never blocks.

        The row is made ready for the writer here, a few microseconds spread over the
        requests, so a hand-over is one join and one write, never a burst of Python work.
        """
        row = _row_of(rec)
        if self._sqlite:
            # SQLAlchemy's own SQLite DateTime storage format (naive UTC), so reads parse it
            at = rec.created_at
            if at.tzinfo is not UTC:
                at = at.astimezone(UTC)
            row = row[:_AT] + (at.replace(tzinfo=None).isoformat(" ", "microseconds"),) + row[
                _AT + 1:]
        self._recorded += 1
        self._buffer.append(orjson.dumps(row))  # C-speed now; the hand-over needs no pickling

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row recorded so far is written (tests, the CLI, shutdown).

        Call it from a thread other than the event loop's (``asyncio.to_thread``).
        """
        target = self._recorded
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.written < target:
                self._wake()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        """Write everything still queued, then stop the writer (not from the loop's thread)."""
        if self._pump_done is None:
            return
        self._stopping = True
        self._wake()
        try:
            self._pump_done.result(timeout=120)
        except Exception:  # noqa: BLE001 - closing: log and go on
            log.exception("ledger hand-over ended with an error")
        self._pump_done = None
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()
            self._thread = None
