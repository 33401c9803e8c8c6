"""The ledger's writer process: spooled usage rows into the database, on its own interpreter.

The gateway appends every row to a spool file (see :mod:`spaceai.metering.spool`) before the
request's answer completes. This process tails the spool from its committed offset and inserts
the rows with the driver (sqlite3 or psycopg), adding their cost to the keys' spend and their
figures to the hourly and daily rollup (:mod:`spaceai.metering.rollup`) in the same transaction,
then records the new offset beside the spool (``<segment>.offset``). Because an
insert is idempotent on the request id, replaying rows after any crash never bills twice.

A row the database refuses is repaired first (control characters escaped, numbers and text
bounded to their columns); one it still refuses goes to the ``usage_dead_letters`` table (or,
failing that, to ``dead-letters.jsonl`` beside the spool) and never takes other rows with it. A
database that cannot be reached is retried for as long as it takes: the rows wait in the spool.

It runs as ``python -m spaceai.metering.ledger_process`` and imports nothing heavy. Commands
arrive on stdin as JSON lines (``{"tail": path}``, ``{"seal": path, "size": n}``,
``{"flush": 1}``, ``{"stop": 1}``); progress leaves on stdout as JSON lines
(``{"at": {path: offset}, "done": [paths], "dead": n}``). The end of stdin (the gateway is
gone) makes it write what the spool holds and stop. It ignores SIGINT and SIGTERM: the gateway
decides when it stops, after the last row of a graceful shutdown.
"""

from __future__ import annotations

import logging
import math
import os
import re
import select
import signal
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from spaceai.metering import layouts, rollup

log = logging.getLogger("spaceai.ledger")

# column bounds of the usage table (see storage/tables.py): a row is repaired to fit them
_TEXT = {"request_id": 64, "key_id": 32, "model": 200, "provider": 32, "endpoint": 64,
         "status": 32, "error": 500, "model_requested": 200, "deployment": 200}
_INT32 = {"prompt_tokens", "completion_tokens", "cached_tokens", "http_status"}
_NULLABLE_INT32 = {"retries", "fallbacks"}  # null in rows of layouts before they existed
_INT64 = {"cost_nanos"}
_FLOAT = {"latency_ms"}
_NULLABLE_FLOAT = {"ttft_ms", "upstream_ms"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX32, _MAX64 = 2**31 - 1, 2**63 - 1
_SQL_VARS = 500  # request ids looked up per query
DEAD_LETTER_FILE = "dead-letters.jsonl"


def target_of(url: Any) -> tuple[str, str]:
    """(driver kind, connection target) for a SQLAlchemy URL."""
    if url.get_backend_name() == "sqlite":
        return "sqlite", url.database or ":memory:"
    return "postgresql", url.set(drivername="postgresql").render_as_string(hide_password=False)


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _bounded_int(value: Any, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = int(value)
        except (TypeError, ValueError):
            return 0
    if isinstance(value, float):
        value = int(value) if math.isfinite(value) else 0
    return max(-hi - 1, min(hi, value))


class Store:
    """Idempotent, self-repairing inserts of ledger rows into one database."""

    def __init__(self, kind: str, target: str, spool_dir: str) -> None:
        self.kind = kind
        self.target = target
        self.fields = fields = layouts.FIELDS
        self.spool_dir = spool_dir
        self.width = len(fields)
        self.rid = fields.index("request_id")
        self.key = fields.index("key_id")
        self.cost = fields.index("cost_nanos")
        self.index = {name: i for i, name in enumerate(fields)}
        self._repairs = [self._repairer(name) for name in fields]
        self.db: Any = None
        self.dead = 0

    @staticmethod
    def _repairer(name: str):  # noqa: ANN205
        if name in _TEXT:
            limit = _TEXT[name]
            return lambda v: None if v is None else _escape(str(v))[:limit]
        if name in _INT32:
            return lambda v: _bounded_int(v, _MAX32)
        if name in _NULLABLE_INT32:
            return lambda v: None if v is None else _bounded_int(v, _MAX32)
        if name in _INT64:
            return lambda v: _bounded_int(v, _MAX64)
        if name in _FLOAT or name in _NULLABLE_FLOAT:
            absent = None if name in _NULLABLE_FLOAT else 0.0
            return lambda v: (float(v) if isinstance(v, int | float) and not isinstance(v, bool)
                              and math.isfinite(v) else absent)
        if name == "streamed":
            return bool
        return lambda v: v

    def repair(self, row: list) -> list:
        """The row (values in FIELDS order) with every value fitting its column."""
        return [fix(v) for fix, v in zip(self._repairs, row, strict=False)]

    # ------------------------------------------------------------------ connection

    def _connect(self) -> None:
        if self.kind == "sqlite":
            import sqlite3

            conn = sqlite3.connect(self.target, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")  # as the gateway's own connections (WAL)
            self.mark = "?"
        else:
            import psycopg

            conn = psycopg.connect(self.target, autocommit=True)
            self.mark = "%s"
        marks = ", ".join([self.mark] * self.width)
        self.insert_sql = f"INSERT INTO usage ({', '.join(self.fields)}) VALUES ({marks})"
        self.spend_sql = (f"UPDATE api_keys SET spend_nanos = spend_nanos + {self.mark} "
                          f"WHERE id = {self.mark}")
        self.rollup_sql = rollup.upsert_sql(self.mark)
        self.dead_sql = ("INSERT INTO usage_dead_letters (request_id, payload, reason, created_at)"
                         f" VALUES ({self.mark}, {self.mark}, {self.mark}, {self.mark})")
        self.db = conn

    def _drop(self) -> None:
        try:
            self.db.close()
        except Exception:  # noqa: BLE001
            pass
        self.db = None

    def reachable(self) -> bool:
        try:
            if self.db is None:
                self._connect()
            self.db.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - unreachable, for whatever reason
            self._drop()
            return False

    # ------------------------------------------------------------------ writing

    def _existing(self, cur: Any, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), _SQL_VARS):
            part = ids[i:i + _SQL_VARS]
            if self.kind == "sqlite":
                cur.execute("SELECT request_id FROM usage WHERE request_id IN "
                            f"({', '.join('?' * len(part))})", part)
            else:
                cur.execute("SELECT request_id FROM usage WHERE request_id = ANY(%s)", (part,))
            found.update(r[0] for r in cur.fetchall())
        return found

    def _insert(self, rows: list[list]) -> list[list]:
        """One transaction: the rows not already in the ledger, their keys' spend, the rollup."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE" if self.kind == "sqlite" else "BEGIN")
        try:
            existing = self._existing(cur, list({r[self.rid] for r in rows}))
            fresh, seen = [], existing
            for r in rows:
                if r[self.rid] not in seen:
                    seen.add(r[self.rid])
                    fresh.append(r)
            spend: dict[str, int] = {}
            for r in fresh:
                if r[self.key] and r[self.cost]:
                    spend[r[self.key]] = spend.get(r[self.key], 0) + r[self.cost]
            if fresh:
                cur.executemany(self.insert_sql, fresh)
            if spend:
                cur.executemany(self.spend_sql, [(n, k) for k, n in spend.items()])
            if fresh:
                groups = rollup.expand(rollup.aggregate(fresh, self.index))
                cur.executemany(self.rollup_sql, rollup.upsert_params(groups))
            cur.execute("COMMIT")
            return fresh
        except BaseException:
            try:
                cur.execute("ROLLBACK")
            except Exception:  # noqa: BLE001
                pass
            raise

    def write(self, raw_rows: list[list]) -> list[list]:
        """Write every row (inserted, already there, or dead-lettered); the newly inserted.

        Blocks, retrying, while the database cannot be reached: the rows are safe in the spool.
        """
        rows = [self.repair(r) for r in raw_rows]
        delay = 0.1
        while True:
            try:
                if self.db is None:
                    self._connect()
                return self._insert(rows)
            except Exception as exc:  # noqa: BLE001 - sorted out below: bad row, or no database
                error = exc
            if self.reachable():
                # the database answers, so some row is at fault: write them one by one
                return self._one_by_one(rows, raw_rows, error)
            log.error("ledger database unreachable (%s); %d rows wait in the spool, retrying",
                      type(error).__name__, len(rows))
            time.sleep(delay)
            delay = min(5.0, delay * 2)

    def _one_by_one(self, rows: list[list], raw_rows: list[list], first: Exception) -> list[list]:
        inserted: list[list] = []
        if len(rows) == 1:
            outcomes = [(rows[0], raw_rows[0], first)]
        else:
            outcomes = []
            for row, raw in zip(rows, raw_rows, strict=True):
                try:
                    inserted += self._insert([row])
                except Exception as exc:  # noqa: BLE001
                    outcomes.append((row, raw, exc))
                    if not self.reachable():
                        raise
        for row, raw, exc in outcomes:
            self._dead_letter(row, raw, exc)
        return inserted

    def _dead_letter(self, row: list, raw: list, exc: Exception) -> None:
        """Keep a row the database refused where an operator finds it, and say so."""
        log.error("ledger row %s refused by the database (%s): kept as a dead letter",
                  row[self.rid], exc)
        self._keep(str(row[self.rid]), raw, exc)

    def keep_unreadable(self, line: bytes, exc: Exception) -> None:
        """Keep a spool line no layout of this gateway reads (a newer gateway's row, after a
        downgrade; or a damaged line) as a dead letter, its text verbatim: it is not a row this
        gateway can write, and not one to lose."""
        text = line.decode("utf-8", "replace").rstrip("\n")
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError:
            parsed = None
        rid = (parsed[1] if isinstance(parsed, list) and len(parsed) > 1
               and type(parsed[0]) is int and isinstance(parsed[1], str) else None)
        log.error("unreadable spool line (%s): kept as a dead letter", exc)
        if self.db is None:
            self.reachable()  # connects if it can; else the line goes to the file
        self._keep(rid, text, exc)

    def _keep(self, request_id: str | None, raw: Any, exc: Exception) -> None:
        self.dead += 1
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        payload = orjson.dumps(raw, default=str).decode()
        try:
            cur = self.db.cursor()
            cur.execute(self.dead_sql, (
                None if request_id is None else _escape(request_id)[:64], payload,
                _escape(reason), datetime.now(UTC).isoformat()))
            return
        except Exception:  # noqa: BLE001 - then a file beside the spool
            log.exception("dead-letter table refused the row too; writing it to a file")
        line = orjson.dumps({"row": raw, "reason": reason}, default=str) + b"\n"
        with open(os.path.join(self.spool_dir, DEAD_LETTER_FILE), "ab") as fh:
            fh.write(line)


# ---------------------------------------------------------------------- spool segments


def read_offset(segment: str) -> int:
    try:
        with open(segment + ".offset", "rb") as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


class Segment:
    """One spool file being tailed: what of it is committed, and whether it is complete."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = read_offset(path)
        self.sealed: int | None = None  # the final size, once the gateway moved on
        self.fh = open(path, "rb")  # noqa: SIM115 - held while tailed
        self._mark = os.open(path + ".offset", os.O_WRONLY | os.O_CREAT, 0o600)

    def pending(self, limit: int) -> tuple[list[list], int, list[tuple[bytes, Exception]]]:
        """Up to ``limit`` complete rows (values in FIELDS order) after the committed offset,
        where they end, and the lines among them no layout reads (with why)."""
        self.fh.seek(self.offset)
        rows: list[list] = []
        unreadable: list[tuple[bytes, Exception]] = []
        end = self.offset
        while len(rows) + len(unreadable) < limit:
            line = self.fh.readline()
            if not line.endswith(b"\n"):
                break  # nothing more, or a row still being appended
            end += len(line)
            if line.strip():
                try:
                    rows.append(layouts.decode(orjson.loads(line)).values)
                except (orjson.JSONDecodeError, ValueError) as exc:
                    unreadable.append((line, exc))
        return rows, end, unreadable

    def commit(self, offset: int) -> None:
        self.offset = offset
        os.pwrite(self._mark, b"%020d" % offset, 0)

    def complete(self) -> bool:
        return self.sealed is not None and self.offset >= self.sealed

    def sync(self) -> None:
        os.fsync(self.fh.fileno())

    def remove(self) -> None:
        self.fh.close()
        os.close(self._mark)
        for path in (self.path, self.path + ".offset"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def drain(store: Store, segment: Segment, batch: int) -> list[list]:
    """Write every complete row of ``segment``; the raw rows that were newly inserted."""
    inserted: list[list] = []
    while True:
        rows, end, unreadable = segment.pending(batch)
        if end == segment.offset:
            return inserted
        for line, exc in unreadable:
            store.keep_unreadable(line, exc)
        if rows:
            fresh = {r[store.rid] for r in store.write(rows)}
            inserted += [r for r in rows if r[store.rid] in fresh]
        segment.commit(end)


def replay(kind: str, target: str, path: str,
           batch: int = 500) -> tuple[list[layouts.SpoolRow], int]:
    """Write what an orphaned spool segment holds, then remove it (gateway start-up).

    Returns every row the segment held (for the budget counters, which settle them once)
    and the number written now for the first time.
    """
    store = Store(kind, target, os.path.dirname(path))
    segment = Segment(path)
    try:
        inserted = drain(store, segment, batch)
        segment.fh.seek(0)
        rows = []
        for line in segment.fh:
            if line.endswith(b"\n") and line.strip():
                try:
                    rows.append(layouts.decode(orjson.loads(line)))
                except (orjson.JSONDecodeError, ValueError):
                    continue  # kept as a dead letter by drain
    finally:
        if store.db is not None:
            store.db.close()
    segment.remove()
    return rows, len(inserted)


# ---------------------------------------------------------------------- the process


def _set_idle(idle: bool) -> bool:
    """Run as background work (SCHED_IDLE) or as a normal process; returns the state set.

    As background work, any woken request handler preempts this process at once (a niced
    process keeps its time slice, which showed as 2 ms latency spikes at one connection).
    With a backlog (the CPU is saturated) it runs as a normal process, so rows never pile up.
    """
    try:
        policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
        os.sched_setscheduler(0, policy, os.sched_param(0))
        return idle
    except (AttributeError, OSError):
        return not idle


def main(kind: str, target: str, spool_dir: str, batch: int, interval: float,
         fsync_s: float) -> None:
    """Tail the announced spool segments until told to stop or stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    idle = _set_idle(True)
    store = Store(kind, target, spool_dir)
    segments: dict[str, Segment] = {}
    stdin, out = sys.stdin.buffer.raw, sys.stdout.buffer
    buffered = b""
    stopping = gone = False
    last_sync = time.monotonic()
    while True:
        ready, _, _ = select.select([stdin], [], [], interval)
        if ready:
            data = os.read(stdin.fileno(), 65536)
            if not data:
                gone = True
            buffered += data
            *lines, buffered = buffered.split(b"\n")
            for line in lines:
                if not line:
                    continue
                cmd = orjson.loads(line)
                if "tail" in cmd and cmd["tail"] not in segments:
                    segments[cmd["tail"]] = Segment(cmd["tail"])
                elif "seal" in cmd and cmd["seal"] in segments:
                    segments[cmd["seal"]].sealed = cmd["size"]
                elif "stop" in cmd:
                    stopping = True
        progress: dict[str, int] = {}
        done: list[str] = []
        for path, seg in list(segments.items()):
            before = seg.offset
            backlog = os.fstat(seg.fh.fileno()).st_size - before > batch * 256
            if backlog == idle:
                idle = _set_idle(not backlog)
            drain(store, seg, batch)
            if seg.offset != before:
                progress[path] = seg.offset
            if seg.complete():
                seg.remove()
                del segments[path]
                done.append(path)
        if fsync_s >= 0 and time.monotonic() - last_sync >= fsync_s:
            for seg in segments.values():
                seg.sync()
            last_sync = time.monotonic()
        if progress or done:
            out.write(orjson.dumps({"at": progress, "done": done, "dead": store.dead}) + b"\n")
            out.flush()
        if stopping or gone:
            for seg in segments.values():
                seg.sync()
            if gone:  # the gateway died: nothing more will be appended, all is written
                for seg in segments.values():
                    seg.remove()
            return


if __name__ == "__main__":
    _kind, _dir, _batch, _interval, _fsync = sys.argv[1:6]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s "
                        "%(message)s")
    main(_kind, os.environ["SPACEAI_LEDGER_TARGET"], _dir, int(_batch), float(_interval),
         float(_fsync))
