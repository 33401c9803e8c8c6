"""The ledger's writer process: usage rows into the database, on its own interpreter.

Writing a batch holds Python's GIL for a while (binding every row); in the gateway process that
time is taken from requests. Here it is not: the gateway hands over whole batches through a
pipe and this process inserts them with the driver (sqlite3 or psycopg), adds each batch's
cost to the keys' spend in the same transaction, and answers with the number of rows written.

It imports nothing heavy, ignores SIGINT and SIGTERM (the gateway decides when it stops: after
the last batch, on a graceful shutdown) and ends when the pipe closes.
"""

from __future__ import annotations

import logging
import signal
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
        return conn, "?"
    import psycopg

    return psycopg.connect(target), "%s"


def main(kind: str, target: str, fields: tuple[str, ...], key_at: int, cost_at: int,
         pipe: Any) -> None:
    """Write every batch received on ``pipe`` until it closes or sends None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    db = None
    while True:
        try:
            message = pipe.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:
            pipe.send(0)
            return
        batch = [orjson.loads(line) for line in message.split(b"\n")]
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
        pipe.send(len(batch))
