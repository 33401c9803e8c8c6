"""How fast the console's overview answers over a large ledger (SQLite).

    .venv/bin/python bench/console.py [--rows 1000000] [--keys 20] [--days 30] [--runs 20]

Fills a fresh SQLite database with ``--rows`` ledger rows spread over the last ``--days`` days,
``--keys`` keys and six models, written by the ledger writer's own insert path (``Store.write``,
batches of 5,000: idempotent inserts, key spend and the hourly rollup in one transaction), checks
that the rollup agrees with the ledger, then starts ``spaceai serve`` on that database and times
``GET /admin/overview`` for each window (and, for comparison, ``GET /admin/usage`` over the same
30 days, which sums the ledger itself). Prints the timings and writes
``bench/results/console.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
import yaml

from spaceai.keys import KeyStore
from spaceai.metering.layouts import FIELDS
from spaceai.metering.ledger_process import Store
from spaceai.storage.db import create_engine, migrate

MODELS = [("gpt-4o", 0.00003, 0.00006), ("gpt-4o-mini", 0.00000015, 0.0000006),
          ("claude-3.5-sonnet", 0.00002, 0.00005), ("claude-3.7-sonnet", 0.000003, 0.000015),
          ("smollm2-135m-instruct", 0, 0), ("all-minilm-l6-v2", 0, 0)]
ADMIN = "bench-admin-key"
BATCH = 5_000


def fill(url: str, path: str, rows: int, keys: int, days: int) -> tuple[float, list[str]]:
    """Write ``rows`` ledger rows through the writer's insert path; seconds taken, key ids."""
    migrate(url)
    store = KeyStore(create_engine(url))
    key_ids = [store.create(name=f"team-{i:02d}")[1].id for i in range(keys)]
    writer = Store("sqlite", path, os.path.dirname(path))
    rng = random.Random(42)
    end = datetime.now(UTC)
    span = days * 86_400
    statuses = ["ok"] * 96 + ["upstream_error", "timeout", "refused", "client_disconnected"]
    codes = {"ok": 200, "upstream_error": 502, "timeout": 504, "refused": 429,
             "client_disconnected": 499}
    started = time.perf_counter()
    for first in range(0, rows, BATCH):
        batch = []
        for i in range(first, min(rows, first + BATCH)):
            model, pin, pout = MODELS[rng.randrange(len(MODELS))]
            status = statuses[rng.randrange(len(statuses))]
            prompt, completion = rng.randint(5, 2000), rng.randint(0, 800)
            latency = rng.lognormvariate(5.5, 0.8)
            at = end - timedelta(seconds=rng.random() * span)
            row = {"request_id": f"req-{i:09d}", "key_id": key_ids[rng.randrange(keys)],
                   "model": model, "provider": "openai", "endpoint": "/v1/chat/completions",
                   "status": status, "http_status": codes[status], "prompt_tokens": prompt,
                   "completion_tokens": completion, "cached_tokens": 0,
                   "cost_nanos": round((prompt * pin + completion * pout) * 1e9),
                   "error": None if status == "ok" else "bench", "streamed": rng.random() < 0.3,
                   "latency_ms": latency, "ttft_ms": latency * 0.3,
                   "created_at": at.replace(tzinfo=None).isoformat(" ", "microseconds")}
            batch.append([row.get(f) for f in FIELDS])
        writer.write(batch)
    seconds = time.perf_counter() - started
    writer.db.close()
    return seconds, key_ids


def check_rollup(url: str) -> dict:
    engine = create_engine(url)
    with engine.connect() as conn:
        ledger = conn.execute(sa.text(
            "SELECT count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost_nanos), "
            "sum(status != 'ok') FROM usage")).one()
        rows = conn.execute(sa.text("SELECT count(*) FROM usage_rollup")).scalar()
        rollup = conn.execute(sa.text(
            "SELECT sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost_nanos), "
            "sum(errors), count(*) FROM usage_rollup WHERE span_hours = 1 AND key_id != '*'"
        )).one()
    assert tuple(ledger) == tuple(rollup[:5]), (ledger, rollup)
    return {"ledger_rows": ledger[0], "rollup_rows": rows}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(url: str, folder: str) -> tuple[subprocess.Popen, str]:
    catalog = Path(folder) / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"models": [
        {"id": m, "provider": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x",
         "capabilities": ["chat"], "pricing": {"input": pin, "output": pout}}
        for m, pin, pout in MODELS]}))
    port = free_port()
    env = {**os.environ, "SPACEAI_DATABASE_URL": url, "SPACEAI_ADMIN_KEY": ADMIN,
           "SPACEAI_CONFIG": str(catalog), "SPACEAI_LOCAL_PRELOAD": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "spaceai", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("spaceai serve did not start")


def timed(client: httpx.Client, path: str, params: dict, runs: int) -> dict:
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        r = client.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
    times = sorted(times[1:])  # the first warms the page cache
    return {"median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
            "max_ms": round(times[-1], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spaceai-console-bench-") as folder:
        path = os.path.join(folder, "bench.db")
        url = f"sqlite:///{path}"
        print(f"filling {args.rows:,} ledger rows ({args.keys} keys, {len(MODELS)} models, "
              f"{args.days} days) through the ledger writer ...", flush=True)
        seconds, _ = fill(url, path, args.rows, args.keys, args.days)
        counts = check_rollup(url)
        print(f"  {seconds:.1f} s ({args.rows / seconds:,.0f} rows/s); rollup agrees with the "
              f"ledger: {counts['rollup_rows']:,} rollup rows; database "
              f"{os.path.getsize(path) / 1e6:,.0f} MB", flush=True)
        proc, base = serve(url, folder)
        results: dict = {"rows": args.rows, "keys": args.keys, "days": args.days,
                         "fill_rows_per_s": round(args.rows / seconds), **counts,
                         "date": datetime.now(UTC).date().isoformat(), "timings": {}}
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {ADMIN}"},
                              timeout=120) as client:
                cases = [("overview 24h/hour", "/admin/overview", {"window": "24h"}),
                         ("overview 7d/day", "/admin/overview", {"window": "7d"}),
                         ("overview 7d/hour", "/admin/overview", {"window": "7d", "bucket": "hour"}),
                         ("overview 30d/day", "/admin/overview", {"window": "30d"}),
                         ("overview 30d/day, spend split by model", "/admin/overview",
                          {"window": "30d", "split": "model"}),
                         ("overview 30d/day, one key", "/admin/overview",
                          {"window": "30d", "key": client.get("/admin/keys").json()["data"][0]["id"]}),
                         ("request log, newest 50", "/admin/requests", {"limit": 50}),
                         ("usage API totals, 30 d (scans the ledger)", "/admin/usage",
                          {"since": (datetime.now(UTC) - timedelta(days=args.days)).isoformat(),
                           "limit": 1})]
                print(f"\n{'endpoint':44} {'median ms':>10} {'p95 ms':>8} {'max ms':>8}")
                for label, path_, params in cases:
                    runs = args.runs if "usage API" not in label else max(3, args.runs // 5)
                    t = timed(client, path_, params, runs)
                    results["timings"][label] = t
                    print(f"{label:44} {t['median_ms']:>10} {t['p95_ms']:>8} {t['max_ms']:>8}",
                          flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "console.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
