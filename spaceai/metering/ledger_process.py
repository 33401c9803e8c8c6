"""The ledger's writer process: usage rows into the database, on its own interpreter.

Writing a batch holds Python's GIL for a while (binding every row); in the gateway process that
time is taken from requests. Here it is not: the gateway hands over whole batches through a
pipe and this process inserts them with the driver (sqlite3 or psycopg), adds each batch's
cost to the keys' spend in the same transaction, and answers with the number of rows written.

It runs as ``python -m spaceai.metering.ledger_process`` and imports nothing heavy (about
16 MB). Batches arrive on stdin as frames (a 4-byte big-endian length, then JSON rows, one a
line); each is answered on stdout with the 4-byte count of rows written. An empty frame or
the end of stdin stops it. It ignores SIGINT and SIGTERM: the gateway decides when it stops,
after the last batch of a graceful shutdown.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Any

import orjson

log = logging.getLogger("spaceai.ledger")


def target_of(url: Any) -> tuple[str, str]:
    """(driver kind, connection target) for a SQLAlchemy URL."""
    if url.get_backend_name() == "sqlite":
        return "sqlite", url.database or ":memory:"
    return "postgresql", url.set(drivername="postgresql").render_as_string(hide_password=False)


def _connect(kind: str, target: str) -> tuple[Any, str]:
    if kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(target, timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")  # as the gateway's own connections (WAL)
        return conn, "?"
    import psycopg

    return psycopg.connect(target), "%s"


def _set_idle(idle: bool) -> bool:
    """Run as background work (SCHED_IDLE) or as a normal process; returns the state set.

    As background work, any woken request handler preempts this process at once (a niced
    process keeps its time slice, which showed as 2 ms latency spikes at one connection).
    When batches come full (a backlog: the CPU is saturated) it runs as a normal process
    again, so rows never pile up.
    """
    try:
        policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
        os.sched_setscheduler(0, policy, os.sched_param(0))
        return idle
    except (AttributeError, OSError):
        return not idle


def _read(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = stream.read(n - len(data))
        if not part:
            raise EOFError
        data += part
    return data


def main(kind: str, target: str, fields: tuple[str, ...], key_at: int, cost_at: int,
         full_batch: int = 500) -> None:
    """Write every batch received on stdin until it ends or sends an empty frame."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    idle = _set_idle(True)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    db = None
    while True:
        try:
            size = int.from_bytes(_read(stdin, 4), "big")
            message = _read(stdin, size) if size else b""
        except EOFError:
            return
        if not message:
            stdout.write((0).to_bytes(4, "big"))
            stdout.flush()
            return
        batch = [orjson.loads(line) for line in message.split(b"\n")]
        backlog = len(batch) >= full_batch
        if backlog == idle:
            idle = _set_idle(not backlog)
        spend: dict[str, int] = {}
        for row in batch:
            if row[key_at] and row[cost_at]:
                spend[row[key_at]] = spend.get(row[key_at], 0) + row[cost_at]
        for attempt in range(20):
            try:
                if db is None:
                    db, mark = _connect(kind, target)
                    insert = (f"INSERT INTO usage ({', '.join(fields)}) "
                              f"VALUES ({', '.join([mark] * len(fields))})")
                    update = f"UPDATE api_keys SET spend_nanos = spend_nanos + {mark} WHERE id = {mark}"
                cur = db.cursor()
                cur.executemany(insert, batch)
                if spend:
                    cur.executemany(update, [(n, k) for k, n in spend.items()])
                db.commit()
                break
            except Exception:  # noqa: BLE001 - keep the rows and retry: the ledger is money
                log.exception("ledger write failed (attempt %d), retrying", attempt + 1)
                try:
                    db.close()
                except Exception:  # noqa: BLE001
                    pass
                db = None
                time.sleep(min(2.0, 0.1 * 2**attempt))
        else:
            log.error("ledger dropped %d rows after repeated failures", len(batch))
        stdout.write(len(batch).to_bytes(4, "big"))
        stdout.flush()


if __name__ == "__main__":
    _kind, _fields, _key_at, _cost_at, _full = sys.argv[1:6]
    main(_kind, os.environ["SPACEAI_LEDGER_TARGET"], tuple(_fields.split(",")), int(_key_at),
         int(_cost_at), int(_full))
