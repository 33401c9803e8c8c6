"""The benchmark: SpaceAI against the direct upstream and LiteLLM, measured in one run.

    .venv/bin/python bench/run.py                 # SpaceAI vs the direct upstream
    .venv/bin/python bench/run.py --litellm       # + LiteLLM 1.108.7 (installed on request
                                                  #   into bench/.litellm-venv)
    .venv/bin/python bench/run.py --quick         # shorter runs, for a smoke check

It starts a fast fake OpenAI upstream (bench/fake_upstream.py), SpaceAI with a realistic
configuration (key auth, rpm/tpm limits, a budget, the ledger and metrics on), and LiteLLM
when asked, then measures with wrk (one load-generator thread):
  1. added latency (p50, p99) at one connection, against calling the upstream directly;
  2. throughput at 32 and 128 connections, non-streaming and streaming (100-chunk streams);
  3. RSS after the load and the time from start to ready;
  4. the local model: tokens/s for 1 and 4 concurrent streams, through the gateway and
     from the engine directly;
  5. `spaceai serve --workers 2` (PostgreSQL + Redis) beside one worker, when both are up.
It prints a table and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
LITELLM_VENV = BENCH / ".litellm-venv"
LITELLM_VERSION = "1.108.7"
MODEL = "bench-model"
ANTHROPIC_MODEL = "bench-claude"  # the same upstream, in Anthropic's format
UPSTREAM_KEY = "sk-bench-upstream"
LITELLM_MASTER = "sk-litellm-bench"
CHUNKS = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float, headers=None) -> float:
    """Seconds until ``url`` answers 200 (raises if the process dies or time runs out)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


WRK_LUA = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
%s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, " ..
    "\\"connect\\": %%d, \\"read\\": %%d, \\"write\\": %%d, \\"status\\": %%d, \\"timeout\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk(url: str, body: dict, token: str | None, connections: int, seconds: float) -> dict:
    """One wrk run: requests/s, latency percentiles (ms) and error counts."""
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script = WRK_LUA % (json.dumps(json.dumps(body)), auth)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s",
             fh.name, url], capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(fh.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[7:])
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "errors": errors, "requests": r["requests"]}


def chat_body(stream: bool, model: str = MODEL) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "Hello, how are you?"}],
            "max_tokens": 128}
    if stream:
        body["stream"] = True
    return body


# ----------------------------------------------------------------------------- targets


class Upstream:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH / "fake_upstream.py"), "--port", str(self.port),
             "--chunks", str(CHUNKS), "--model", MODEL], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


class SpaceAI:
    """`spaceai serve` on a fresh database, with one key that has limits and a budget."""

    def __init__(self, upstream: Upstream, workers: int = 1, local: bool = False,
                 database_url: str | None = None, redis_url: str | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="spaceai-bench-"))
        self.port = free_port()
        models = [{"id": MODEL, "provider": "openai", "base_url": upstream.base,
                   "api_key": UPSTREAM_KEY, "capabilities": ["chat", "completions"],
                   "pricing": {"input": 0.0000025, "output": 0.00001}, "max_retries": 0},
                  {"id": ANTHROPIC_MODEL, "provider": "anthropic", "base_url": upstream.base,
                   "api_key": UPSTREAM_KEY, "upstream_model": MODEL,
                   "pricing": {"input": 0.000003, "output": 0.000015}, "max_retries": 0}]
        if local:
            models.append({"id": "smollm2-135m-instruct", "provider": "local",
                           "capabilities": ["chat", "completions"],
                           "pricing": {"input": 0, "output": 0}})
        (self.tmp / "catalog.yaml").write_text(json.dumps({"models": models}))
        self.env = {**os.environ,
                    "SPACEAI_DATABASE_URL": database_url or f"sqlite:///{self.tmp}/bench.db",
                    "SPACEAI_CONFIG": str(self.tmp / "catalog.yaml")}
        if redis_url:
            self.env["SPACEAI_REDIS_URL"] = redis_url
        spaceai = str(VENV_BIN / "spaceai")
        created = subprocess.run(
            [spaceai, "keys", "create", "--name", "bench", "--budget", "1000000",
             "--rpm", "100000000", "--tpm", "1000000000", "--json"],
            env=self.env, capture_output=True, text=True, check=True)
        self.key = json.loads(created.stdout)["key"]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [spaceai, "serve", "--port", str(self.port), "--workers", str(workers)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ready_s = wait_ready(f"{self.base}/health/ready", self.proc, 120)
        self.ready_s = time.perf_counter() - t0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


class LiteLLM:
    """LiteLLM proxy, one worker, no database, in its own virtual environment."""

    def __init__(self, upstream: Upstream) -> None:
        bin_ = LITELLM_VENV / "bin"
        if not (bin_ / "litellm").exists():
            print(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} ...",
                  flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
            subprocess.run([str(bin_ / "pip"), "install", "-q",
                            f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="litellm-bench-"))
        cfg = {"model_list": [{"model_name": MODEL, "litellm_params": {
            "model": f"openai/{MODEL}", "api_base": upstream.base, "api_key": UPSTREAM_KEY}}],
            "general_settings": {"master_key": LITELLM_MASTER}}
        (self.tmp / "config.yaml").write_text(json.dumps(cfg))
        self.port = free_port()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(bin_ / "litellm"), "--config", str(self.tmp / "config.yaml"), "--port",
             str(self.port), "--num_workers", "1"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env={**os.environ, "LITELLM_LOG": "ERROR"})
        wait_ready(f"{self.base}/health/liveliness", self.proc, 180)
        self.ready_s = time.perf_counter() - t0
        self.key = LITELLM_MASTER

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        stop(self.proc)
        shutil.rmtree(self.tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- measures


def measure_proxy(name: str, base_url: str, key: str | None, pid: int | None, secs: float,
                  direct: dict | None) -> dict:
    url = f"{base_url}/v1/chat/completions" if not base_url.endswith("/v1") else (
        f"{base_url}/chat/completions")
    out: dict = {"name": name}
    wrk(url, chat_body(False), key, 8, 1)  # warm-up: pools, caches, JIT-free but lazy paths
    lat = wrk(url, chat_body(False), key, 1, secs)
    out["latency"] = lat
    if direct is not None:
        out["added_p50_ms"] = lat["p50_ms"] - direct["latency"]["p50_ms"]
        out["added_p99_ms"] = lat["p99_ms"] - direct["latency"]["p99_ms"]
    for stream in (False, True):
        for conns in (32, 128):
            label = f"{'stream' if stream else 'plain'}_c{conns}"
            out[label] = wrk(url, chat_body(stream), key, conns, secs)
            print(f"  {name:<16} {label:<12} {out[label]['rps']:>9.0f} req/s  "
                  f"errors {out[label]['errors']}", flush=True)
    if pid is not None:
        out["rss_mb"] = rss_mb(pid)
    return out


async def _gateway_stream(base: str, key: str, tokens: int, i: int) -> int:
    import aiohttp

    body = {"model": "smollm2-135m-instruct", "stream": True,
            "stream_options": {"include_usage": True}, "temperature": 0.7, "max_tokens": tokens,
            "seed": i, "messages": [{"role": "user", "content":
                                     f"Write a long story about a lighthouse keeper and the "
                                     f"sea. (#{i})"}]}
    completion = 0
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{base}/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {key}"}) as r:
            async for line in r.content:
                if line.startswith(b"data: {") and b'"usage"' in line:
                    u = orjson.loads(line[6:]).get("usage")
                    if u:
                        completion = u["completion_tokens"]
    return completion


async def _gateway_tokens(base: str, key: str, streams: list[int], tokens: int) -> dict:
    await _gateway_stream(base, key, 8, 0)
    out = {}
    for n in streams:
        t0 = time.perf_counter()
        done = await asyncio.gather(*(_gateway_stream(base, key, tokens, i) for i in range(n)))
        dt = time.perf_counter() - t0
        out[n] = {"tokens_per_s": sum(done) / dt, "tokens": sum(done), "seconds": dt}
    return out


def measure_local(upstream: Upstream, tokens: int, rounds: int = 3) -> dict:
    """Engine alone vs through the gateway, alternating, median of ``rounds`` each."""
    import statistics

    sys.path.insert(0, str(BENCH))
    from local_engine import measure  # the engine alone, same prompts and seeds

    engine: dict[int, list[float]] = {1: [], 4: []}
    via: dict[int, list[float]] = {1: [], 4: []}
    gw = SpaceAI(upstream, local=True)
    try:
        for _ in range(rounds):
            alone = asyncio.run(measure(streams=[1, 4], tokens=tokens))
            through = asyncio.run(_gateway_tokens(gw.base, gw.key, [1, 4], tokens))
            for n in (1, 4):
                engine[n].append(alone[n]["tokens_per_s"])
                via[n].append(through[n]["tokens_per_s"])
    finally:
        gw.close()
    out = {}
    for n in (1, 4):
        e, g = statistics.median(engine[n]), statistics.median(via[n])
        out[str(n)] = {"engine_tps": e, "gateway_tps": g, "ratio": g / e,
                       "engine_runs": engine[n], "gateway_runs": via[n]}
    return out


def shared_state_available() -> tuple[str, str] | None:
    db = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    try:
        socket.create_connection(("127.0.0.1", 5432), 1).close()
        socket.create_connection(("127.0.0.1", 6379), 1).close()
    except OSError:
        return None
    return db, redis_url


# ----------------------------------------------------------------------------- report


def table(results: dict) -> str:
    rows = results["targets"]
    names = [r["name"] for r in rows]
    lines = ["| measure | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]

    def add(label, fn):
        cells = []
        for r in rows:
            try:
                cells.append(fn(r))
            except (KeyError, TypeError):
                cells.append("—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    add("p50 latency at 1 connection (ms)", lambda r: f"{r['latency']['p50_ms']:.3f}")
    add("p99 latency at 1 connection (ms)", lambda r: f"{r['latency']['p99_ms']:.3f}")
    add("added p50 / p99 vs direct (ms)",
        lambda r: f"{r['added_p50_ms']:.3f} / {r['added_p99_ms']:.3f}")
    for label in ("plain_c32", "plain_c128", "stream_c32", "stream_c128"):
        add(f"{label.replace('plain', 'non-streaming').replace('_c', ', ')} conns (req/s)",
            lambda r, label=label: f"{r[label]['rps']:.0f}"
            + (f" ({r[label]['errors']} errors)" if r[label]["errors"] else ""))
    add("RSS after load (MB)", lambda r: f"{r['rss_mb']:.0f}")
    add("start to ready (s)", lambda r: f"{r['ready_s']:.2f}")
    text = "\n".join(lines)
    ratios = results.get("ratios")
    if ratios:
        text += "\n\n" + "\n".join(f"- {k}: {v:.1f}x" for k, v in ratios.items())
    local = results.get("local_model")
    if local:
        text += "\n\n| local model, 128-token streams (median of 3) | engine alone (tokens/s) | through " \
                "SpaceAI (tokens/s) | ratio |\n|---|---|---|---|\n"
        text += "\n".join(f"| {n} stream{'s' if n != '1' else ''} | {v['engine_tps']:.1f} | "
                          f"{v['gateway_tps']:.1f} | {v['ratio'] * 100:.0f}% |"
                          for n, v in local.items())
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--litellm", action="store_true", help="also measure LiteLLM")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each wrk run")
    ap.add_argument("--quick", action="store_true", help="2-second runs, no local model")
    ap.add_argument("--no-local", action="store_true", help="skip the local model")
    ap.add_argument("--no-workers", action="store_true", help="skip the --workers 2 run")
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    secs = 2.0 if args.quick else args.seconds
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "load_generator": "wrk, 1 thread, on the same machine",
        "seconds_per_run": secs, "targets": []}
    upstream = Upstream()
    try:
        print("direct upstream (the load generator's ceiling)", flush=True)
        direct = measure_proxy("direct upstream", upstream.base, UPSTREAM_KEY, upstream.proc.pid,
                               secs, None)
        results["targets"].append(direct)
        print("SpaceAI, 1 worker", flush=True)
        gw = SpaceAI(upstream)
        try:
            r = measure_proxy("SpaceAI", gw.base, gw.key, gw.proc.pid, secs, direct)
            r["ready_s"] = gw.ready_s
            results["targets"].append(r)
        finally:
            gw.close()
        shared = None if (args.no_workers or args.quick) else shared_state_available()
        if shared:
            print("SpaceAI, --workers 2 (PostgreSQL + Redis)", flush=True)
            import redis

            redis.Redis.from_url(shared[1]).flushdb()
            gw = SpaceAI(upstream, workers=2, database_url=shared[0], redis_url=shared[1])
            try:
                r = measure_proxy("SpaceAI 2 workers", gw.base, gw.key, gw.proc.pid, secs,
                                  direct)
                r["ready_s"] = gw.ready_s
                results["targets"].append(r)
            finally:
                gw.close()
        if args.litellm:
            print("LiteLLM", flush=True)
            lite = LiteLLM(upstream)
            try:
                r = measure_proxy(f"LiteLLM {LITELLM_VERSION}", lite.base, lite.key,
                                  lite.proc.pid, secs, direct)
                r["ready_s"] = lite.ready_s
                results["targets"].append(r)
            finally:
                lite.close()
            sp = results["targets"][1]
            results["ratios"] = {
                f"SpaceAI / LiteLLM, {k}": sp[k]["rps"] / r[k]["rps"]
                for k in ("plain_c32", "plain_c128", "stream_c32", "stream_c128")
                if r[k]["rps"] > 0}
        if not (args.quick or args.no_local):
            print("local model", flush=True)
            results["local_model"] = measure_local(upstream, args.tokens)
    finally:
        stop(upstream.proc)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    print()
    print(f"{results['date']} — {results['machine']} — load: {results['load_generator']}, "
          f"{secs:g} s per run")
    print(table(results))
    print(f"\nwritten to {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
