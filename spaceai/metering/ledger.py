"""The usage ledger: one row per request, however it ended, and never lost.

A request's row is appended to this process's spool file (one write, into the page cache)
before its answer completes, so it survives the death of any process. A writer process
(``ledger_process``) tails the spool and inserts the rows into the database, idempotently on
the request id, adding their cost to the keys' spend in the same transaction. When the writer
dies it is started again and carries on from its committed offset; when a gateway process dies,
the next one to start writes what its spool held before it admits traffic (:meth:`recover`).
``close()`` waits for the writer to commit everything, so a graceful shutdown leaves nothing.
"""

from __future__ import annotations

import io
import logging
import operator
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
import sqlalchemy as sa

from spaceai import metrics
from spaceai.metering import layouts, ledger_process
from spaceai.metering.ledger_process import target_of
from spaceai.metering.spool import Spool, orphans, spool_dir

log = logging.getLogger("spaceai.ledger")


@dataclass(slots=True)
class UsageRecord:
    """One request's ledger row. A field added here needs a new spool layout
    (:data:`layouts.LAYOUTS`), so that spools written before stay readable."""

    request_id: str
    key_id: str | None
    model: str
    provider: str
    endpoint: str
    # ok | error | upstream_error | timeout | client_disconnected | refused | invalid_request
    status: str
    http_status: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_nanos: int = 0
    error: str | None = None
    streamed: bool = False
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    model_requested: str | None = None  # the model the client asked for (``model`` served)
    deployment: str | None = None  # the upstream that served it (scheme://host:port)
    retries: int | None = None  # attempts after the first on a model, over the whole chain
    fallbacks: int | None = None  # models of the fallback chain moved on to
    upstream_ms: float | None = None  # spent on upstreams: every attempt, backoff, the stream
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


_row_of = operator.attrgetter(*layouts.FIELDS)
_AT = layouts.FIELDS.index("created_at")


class Ledger:
    """Spooled, crash-proof writer of usage rows."""

    def __init__(self, engine: sa.Engine, flush_interval_s: float = 0.2, batch_size: int = 500,
                 folder: str | None = None, fsync_s: float = 1.0,
                 rotate_bytes: int = 64 * 1024 * 1024) -> None:
        self.engine = engine
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.fsync_s = fsync_s
        self.kind, self._target = target_of(engine.url)
        self._sqlite = self.kind == "sqlite"
        if folder is None and self._sqlite and self._target != ":memory:":
            folder = str(Path(self._target).resolve().parent / ".spaceai-ledger")
        self.folder = spool_dir(folder, self._target)
        self.spool = Spool(self.folder, rotate_bytes)
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()  # the writer's stdin, its restarts, the spool's locks
        self._progress = threading.Condition()
        self._committed: dict[str, int] = {}  # segment -> committed offset, as reported
        self._sizes: dict[str, int] = {}  # sealed segment -> final size
        self._done = 0  # bytes of segments the writer finished
        self._dead_before = 0  # dead letters of writers that are gone
        self._dead = 0
        self._dead_counted = 0
        self._stopping = False
        self._recovered = False
        self.restarts = 0
        self.replayed = 0
        self.on_record = None  # called with each UsageRecord (telemetry), when set

    # ------------------------------------------------------------------ start and stop

    def recover(self) -> list[layouts.SpoolRow]:
        """Write the spools that dead processes left; every row they held (blocking).

        Called at start-up, before the gateway admits traffic, so the spend a process reads
        from the database includes every row a crash left behind.
        """
        self._recovered = True
        found: list[layouts.SpoolRow] = []
        for path, fd in orphans(self.folder):
            try:
                held, fresh = ledger_process.replay(self.kind, self._target, path,
                                                    self.batch_size)
                found += held
                self.replayed += fresh
                metrics.LEDGER_REPLAYED.inc(fresh)
                log.warning("ledger: %d rows recovered from %s (%d were not yet written)",
                            len(held), os.path.basename(path), fresh)
            except FileNotFoundError:  # its own writer finished it meanwhile
                continue
            finally:
                os.close(fd)
        return found

    def start(self) -> None:
        """Recover what dead processes left (if not done yet), then start the writer."""
        if not self._recovered:
            self.recover()
        self._stopping = False
        self.spool.open_segment()
        self._spawn()

    def _spawn(self) -> None:
        """Start (or restart) the writer process, tailing every segment still held."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "spaceai.metering.ledger_process", self.kind, self.folder, str(self.batch_size), str(self.flush_interval_s),
             str(self.fsync_s)],
            # the database URL may hold a password: the environment, unlike argv, is private
            env={**os.environ, "SPACEAI_LEDGER_TARGET": self._target},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self._proc = proc
        for path in list(self.spool.held):
            self._send_to(proc, {"tail": path})
            if path in self._sizes:
                self._send_to(proc, {"seal": path, "size": self._sizes[path]})
        threading.Thread(target=self._watch, args=(proc,), name="spaceai-ledger-watch",
                         daemon=True).start()

    def _send_to(self, proc: subprocess.Popen, command: dict) -> None:
        try:
            proc.stdin.write(orjson.dumps(command) + b"\n")
        except (OSError, ValueError):
            pass  # the writer is gone: its watcher starts another, which is told again

    def _send(self, command: dict) -> None:
        with self._lock:
            if self._proc is not None:
                self._send_to(self._proc, command)

    def _watch(self, proc: subprocess.Popen) -> None:
        """Read the writer's progress; start another writer if it dies."""
        # The pipes are unbuffered (``bufsize=0``, so commands reach the writer at once), and
        # iterating an unbuffered pipe reads one byte per system call, each handing the GIL
        # to and back from the event loop: read the reports buffered, a line at a time.
        for line in io.BufferedReader(proc.stdout):
            try:
                report = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            with self._progress:
                self._committed.update(report["at"])
                for path in report["done"]:
                    self._done += self._sizes.pop(path, self._committed.get(path, 0))
                    self._committed.pop(path, None)
                self._dead = self._dead_before + report["dead"]
                self._progress.notify_all()
            for path in report["done"]:
                with self._lock:
                    self.spool.release(path)
            if self._dead > self._dead_counted:
                metrics.LEDGER_DEAD_LETTERS.inc(self._dead - self._dead_counted)
                self._dead_counted = self._dead
            self._update_gauges()
        proc.wait()
        with self._lock:
            if self._stopping or self._proc is not proc:
                return
            self.restarts += 1
            self._dead_before = self._dead
            metrics.LEDGER_WRITER_RESTARTS.inc()
            log.error("ledger writer process died (exit %s): starting another; no row is lost,"
                      " they wait in the spool", proc.returncode)
            time.sleep(min(1.0, 0.05 * self.restarts))
            self._spawn()

    def close(self) -> None:
        """Write every row spooled so far, then stop the writer (blocking)."""
        if self._proc is None:
            return
        with self._lock:
            self._stopping = True
            self._seal()
            self._send_to(self._proc, {"stop": 1})
        try:
            self._proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            log.error("ledger writer did not finish in 120 s; the rest stays in the spool and "
                      "is written at the next start")
            self._proc.kill()
        self._proc = None
        with self._lock:
            self.spool.close()

    def _seal(self) -> None:
        path, size = self.spool.path, self.spool.size
        self._sizes[path] = size
        self._send_to(self._proc, {"seal": path, "size": size})

    # ------------------------------------------------------------------ the request path

    def record(self, rec: UsageRecord, reservation: tuple[str, str] | None = None) -> None:
        """Spool one row (one write to the page cache); it is safe once this returns.

        ``reservation`` (admission id, budget period) lets a process that recovers the row
        after a crash settle its budget reservation exactly once.
        """
        if self.on_record is not None:
            self.on_record(rec)
        row = _row_of(rec)
        if self._sqlite:
            # SQLAlchemy's own SQLite DateTime storage format (naive UTC), so reads parse it
            at = rec.created_at
            if at.tzinfo is not UTC:
                at = at.astimezone(UTC)
            row = row[:_AT] + (at.replace(tzinfo=None).isoformat(" ", "microseconds"),) + row[
                _AT + 1:]
        self.spool.append(layouts.encode(row, reservation))
        if self.spool.size >= self.spool.rotate_bytes:
            self._rotate()

    def _rotate(self) -> None:
        with self._lock:
            self._seal()
            path = self.spool.open_segment()
            self._send_to(self._proc, {"tail": path})

    # ------------------------------------------------------------------ progress

    def committed(self) -> int:
        """Bytes of this process's spool committed to the database."""
        with self._progress:
            return self._done + sum(self._committed.values())

    def lag(self) -> int:
        """Bytes spooled and not yet in the database."""
        return self.spool.appended - self.committed()

    def _update_gauges(self) -> None:
        lag = self.lag()
        metrics.LEDGER_LAG.set(lag)
        metrics.LEDGER_SPOOL.set(self.spool.appended - self._done)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row spooled so far is in the database (tests, the CLI, shutdown).

        Call it from a thread other than the event loop's (``asyncio.to_thread``).
        """
        target = self.spool.appended
        deadline = time.monotonic() + timeout
        self._send({"flush": 1})
        with self._progress:
            while self._done + sum(self._committed.values()) < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(min(left, 0.05))
        return True

    def health(self) -> dict:
        """The ledger's state for /health/ready."""
        proc = self._proc
        return {"writer": "ok" if proc is not None and proc.poll() is None else "down",
                "lag_bytes": self.lag(), "spool_bytes": self.spool.appended - self._done,
                "dead_letters": self._dead, "writer_restarts": self.restarts,
                "recovered_rows": self.replayed}

