"""The gateway's CPU time per request under wrk: a measure a busy, shared machine barely moves.

Throughput on a machine shared with other work swings by tens of percent from run to run;
the CPU seconds the gateway's process spends per request served do not. This starts the fake
upstream and `spaceai serve` as bench/run.py does, drives it with wrk (32 connections, 3 s per
run, non-streaming and 100-chunk streams), and prints the microseconds of CPU (user + system,
the main process) per request of each run. To compare two versions, run it from each
checkout, alternately:

    PYTHONPATH=$PWD .venv/bin/python bench/cpu_per_request.py --rounds 3
    PYTHONPATH=$PWD .venv/bin/python bench/cpu_per_request.py --rounds 3 --anthropic

``--anthropic`` sends the same requests to a model served by the Anthropic provider (the fake
answers in the Messages format), translated back to OpenAI chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(gateway_pid: int) -> None:
    """The gateway's threads on the last CPU; this process (so wrk), the upstream and the
    gateway's helper processes on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    mine, others = {cpus[-1]}, set(cpus[:-1]) or {cpus[-1]}
    for task in Path(f"/proc/{gateway_pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), mine)
    os.sched_setaffinity(0, others)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) not in (gateway_pid, os.getpid()):
            try:
                if "spaceai" in (proc / "cmdline").read_text() or "fake_upstream" in (
                        proc / "cmdline").read_text():
                    for task in (proc / "task").iterdir():
                        os.sched_setaffinity(int(task.name), others)
            except OSError:
                continue


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--anthropic", action="store_true",
                    help="through the Anthropic provider instead of the OpenAI one")
    ap.add_argument("--pin", action="store_true",
                    help="the gateway's threads on the last CPU, everything else on the others "
                         "(steadier figures on a small machine)")
    args = ap.parse_args()
    model = bench.ANTHROPIC_MODEL if args.anthropic else bench.MODEL
    upstream = bench.Upstream()
    gateway = bench.SpaceAI(upstream)
    if args.pin:
        pin(gateway.proc.pid)
    try:
        url = f"{gateway.base}/v1/chat/completions"
        bench.wrk(url, bench.chat_body(False, model), gateway.key, 8, 1)  # warm-up
        out: dict[str, list[float]] = {"plain": [], "stream": []}
        errors = 0
        for _ in range(args.rounds):
            for stream in (False, True):
                before = cpu_seconds(gateway.proc.pid)
                result = bench.wrk(url, bench.chat_body(stream, model), gateway.key, 32,
                                   args.seconds)
                used = cpu_seconds(gateway.proc.pid) - before
                errors += result["errors"]
                out["stream" if stream else "plain"].append(
                    round(used / max(result["requests"], 1) * 1e6, 1))
        print(json.dumps({"cpu_us_per_request": out, "errors": errors}))
    finally:
        gateway.close()
        bench.stop(upstream.proc)


if __name__ == "__main__":
    main()
