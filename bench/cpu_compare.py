"""Two versions of the gateway in one run: CPU per request, interleaved slice by slice.

On a shared machine the CPU a process spends per request drifts by several percent from one
minute to the next, which is as much as two versions differ by. This runs both at once: one
fake upstream, a gateway from this checkout and one from ``--base`` (another checkout, e.g.
``git worktree add ../base <commit>``), and drives them in turn with the same wrk load (``--connections``, 32), a short
slice each, for ``--rounds`` rounds (non-streaming and 100-chunk streams). Each round's ratio
compares slices a few seconds apart, so the drift cancels out:

    PYTHONPATH=$PWD .venv/bin/python bench/cpu_compare.py --base ../base
    PYTHONPATH=$PWD .venv/bin/python bench/cpu_compare.py --base ../base --anthropic

It prints, per kind of request and measure (CPU microseconds per request, user + system of
the gateway's main process; requests/s; p50 and p99 latency), the median of each version's
slices and the median of the rounds' ratios (this / base).
With ``--pin`` the two gateways share the last CPU and everything else the others.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402
from cpu_per_request import cpu_seconds, pin  # noqa: E402


def gateway(upstream: bench.Upstream, path: str, env: list[str]) -> bench.SpaceAI:
    """`spaceai serve` importing the gateway from ``path``, with ``env`` (NAME=VALUE) set."""
    extra = dict(item.split("=", 1) for item in env)
    extra["PYTHONPATH"] = str(Path(path).resolve())
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        return bench.SpaceAI(upstream)
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def one_slice(gw: bench.SpaceAI, model: str, stream: bool, seconds: float,
              connections: int) -> dict:
    """One wrk slice against ``gw``: CPU microseconds per request, requests/s, p50 and p99."""
    url = f"{gw.base}/v1/chat/completions"
    before = cpu_seconds(gw.proc.pid)
    result = bench.wrk(url, bench.chat_body(stream, model), gw.key, connections, seconds)
    if result["errors"]:
        raise SystemExit(f"{result['errors']} errors against {gw.base}")
    return {"cpu_us": (cpu_seconds(gw.proc.pid) - before) / max(result["requests"], 1) * 1e6,
            "rps": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the checkout to compare against")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--anthropic", action="store_true",
                    help="through the Anthropic provider instead of the OpenAI one")
    ap.add_argument("--pin", action="store_true")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--base-env", action="append", default=[], metavar="NAME=VALUE",
                    help="a setting of the base gateway only (e.g. --base . --base-env "
                         "SPACEAI_LEDGER_FLUSH_S=3 compares one setting)")
    args = ap.parse_args()
    model = bench.ANTHROPIC_MODEL if args.anthropic else bench.MODEL
    this = str(Path(__file__).resolve().parents[1])
    upstream = bench.Upstream()
    gws = {"base": gateway(upstream, args.base, args.base_env),
           "this": gateway(upstream, this, [])}
    try:
        if args.pin:
            for gw in gws.values():
                pin(gw.proc.pid)
        for gw in gws.values():  # warm-up
            bench.wrk(f"{gw.base}/v1/chat/completions", bench.chat_body(False, model), gw.key,
                      8, 1)
        slices: dict[tuple[str, bool], list[dict]] = {
            (name, stream): [] for name in gws for stream in (False, True)}
        for i in range(args.rounds):
            order = list(gws) if i % 2 == 0 else list(reversed(gws))  # neither always first
            for stream in (False, True):
                for name in order:
                    slices[name, stream].append(
                        one_slice(gws[name], model, stream, args.seconds, args.connections))
        out = {}
        for stream in (False, True):
            row = {}
            for measure in ("cpu_us", "rps", "p50_ms", "p99_ms"):
                base = [s[measure] for s in slices["base", stream]]
                now = [s[measure] for s in slices["this", stream]]
                row[measure] = {"base": round(statistics.median(base), 2),
                                "this": round(statistics.median(now), 2),
                                "ratio": round(statistics.median(
                                    [n / b for n, b in zip(now, base, strict=True)]), 3)}
            out["stream" if stream else "plain"] = row
        print(json.dumps(out))
    finally:
        for gw in gws.values():
            gw.close()
        bench.stop(upstream.proc)


if __name__ == "__main__":
    main()
