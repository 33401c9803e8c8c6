"""Microseconds of single request-path steps, each beside a baseline timed in the same run.

    PYTHONPATH=$PWD .venv/bin/python bench/micro.py

* metrics: what one finished request costs the gateway's metrics (counted in plain numbers,
  handed to Prometheus at a scrape), against the same counts put into prometheus-client's
  counters and histogram directly, as each request did before;
* usage: ``Usage.from_openai`` on OpenAI's usage object (its fast path), against one whose
  counts take the general path (an integral float, ``12.0``);
* prompt: the walk that gives a request's two token figures (``prompt_sizes``);
* ledger writer: CPU per row of the writer process's work (read, decode, repair, insert and
  rollup into SQLite), with the repair step alone.
"""

from __future__ import annotations

import os
import tempfile
import time
import timeit
from collections.abc import Callable

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from spaceai import metrics
from spaceai.metering import layouts, tokens
from spaceai.metering.ledger import UsageRecord, _row_of
from spaceai.metering.ledger_process import Segment, Store, drain
from spaceai.storage.db import migrate
from spaceai.types import ChatRequest, Usage


def per_call_us(fn: Callable[[], object], number: int = 100_000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def metrics_figures() -> dict[str, float]:
    registry = CollectorRegistry()
    requests = Counter("r", "", ["model", "status"], registry=registry).labels("m", "ok")
    tokens_in = Counter("t", "", ["model", "d"], registry=registry).labels("m", "in")
    tokens_out = Counter("t2", "", ["model", "d"], registry=registry).labels("m", "out")
    cost = Counter("c", "", ["model"], registry=registry).labels("m")
    latency = Histogram("l", "", ["model"], buckets=metrics._LATENCY_BUCKETS,
                        registry=registry).labels("m")
    in_flight = Gauge("g", "", registry=registry)

    def direct() -> None:
        in_flight.inc()
        in_flight.dec()
        requests.inc()
        tokens_in.inc(12)
        tokens_out.inc(30)
        cost.inc(0.0004)
        latency.observe(0.003)

    def counted() -> None:
        metrics.request_started()
        metrics.request_finished("bench-model", "ok", 12, 30, 0.0004, 0.003, None)

    return {"metrics_per_request_us": per_call_us(counted),
            "prometheus_direct_per_request_us": per_call_us(direct)}


def usage_figures() -> dict[str, float]:
    usual = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42,
             "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
             "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}
    general = {**usual, "prompt_tokens": 12.0}
    return {"usage_fast_us": per_call_us(lambda: Usage.from_openai(usual)),
            "usage_general_us": per_call_us(lambda: Usage.from_openai(general))}


def prompt_figures() -> dict[str, float]:
    req = ChatRequest(model="m", messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello, how are you?"}], params={"max_tokens": 128})
    return {"prompt_sizes_us": per_call_us(lambda: tokens._walk(req))}


def writer_figures(rows: int = 5000) -> dict[str, float]:
    folder = tempfile.mkdtemp(prefix="spaceai-micro-")
    db = os.path.join(folder, "ledger.db")
    migrate(f"sqlite:///{db}")
    rec = UsageRecord(request_id="", key_id="key_abc", model="bench-model", provider="openai",
                      endpoint="/v1/chat/completions", status="ok", http_status=200,
                      prompt_tokens=12, completion_tokens=30, cost_nanos=330000, latency_ms=1.2,
                      model_requested="bench-model", deployment="http://127.0.0.1:1",
                      upstream_ms=0.5)
    at = layouts.FIELDS.index("created_at")
    lines = []
    for i in range(rows):
        rec.request_id = f"req_{i:024d}"
        row = list(_row_of(rec))
        row[at] = "2026-11-26 10:00:00.000000"
        lines.append(layouts.encode(tuple(row), ("adm_1", "all")))
    path = os.path.join(folder, "micro-000001.spool")
    with open(path, "wb") as fh:
        fh.write(b"".join(lines))
    store = Store("sqlite", db, folder)
    decoded = [layouts.decode(orjson.loads(line)).values for line in lines]
    started = time.process_time()
    for row in decoded:
        store.repair(row)
    repair = time.process_time() - started
    started = time.process_time()
    drain(store, Segment(path), 500)
    whole = time.process_time() - started
    return {"writer_cpu_per_row_us": whole / rows * 1e6, "writer_repair_per_row_us":
            repair / rows * 1e6}


def main() -> None:
    out: dict[str, float] = {}
    for part in (metrics_figures, usage_figures, prompt_figures, writer_figures):
        out.update(part())
    width = max(map(len, out))
    for name, value in out.items():
        print(f"{name:<{width}}  {value:7.2f}")


if __name__ == "__main__":
    main()
