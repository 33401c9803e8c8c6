"""Tokens/s of the local model through LocalProvider (engine + asyncio bridge, no HTTP).

    python bench/local_engine.py [--tokens 128] [--streams 1 4]

Each stream asks for ``--tokens`` completion tokens; the rate is the engine's exact
completion_tokens summed over the streams, divided by the wall time of the batch.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from spaceai.catalog import LOCAL_CHAT_MODEL, Catalog  # noqa: E402
from spaceai.providers.local import LocalProvider  # noqa: E402
from spaceai.types import ChatRequest  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper and the sea."


async def _stream(provider: LocalProvider, model, tokens: int, i: int) -> tuple[int, float]:
    req = ChatRequest(
        model=model.id,
        messages=[{"role": "user", "content": f"{PROMPT} (#{i})"}],
        params={"temperature": 0.7, "max_tokens": tokens, "seed": i},
    )
    t0 = time.perf_counter()
    ttft = None
    completion = 0
    async for c in provider.chat_stream(req, model):
        if ttft is None and c["choices"] and c["choices"][0]["delta"].get("content"):
            ttft = time.perf_counter() - t0
        if c.get("usage"):
            completion = c["usage"]["completion_tokens"]
    return completion, ttft or 0.0


async def measure(
    streams: list[int] | tuple[int, ...] = (1, 4), tokens: int = 128, provider=None
) -> dict[int, dict[str, float]]:
    """{n_streams: {"tokens_per_s", "tokens", "seconds", "ttft_s"}} for each concurrency."""
    model = Catalog.load(None).get(LOCAL_CHAT_MODEL)
    own = provider is None
    provider = provider or LocalProvider()
    await provider.start()
    try:
        await _stream(provider, model, 8, 0)  # warm-up
        results: dict[int, dict[str, float]] = {}
        for n in streams:
            t0 = time.perf_counter()
            outs = await asyncio.gather(*(_stream(provider, model, tokens, i) for i in range(n)))
            dt = time.perf_counter() - t0
            total = sum(o[0] for o in outs)
            results[n] = {
                "tokens_per_s": total / dt,
                "tokens": total,
                "seconds": dt,
                "ttft_s": max(o[1] for o in outs),
            }
        return results
    finally:
        if own:
            await provider.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    res = asyncio.run(measure(args.streams, args.tokens))
    for n, r in res.items():
        print(
            f"{n} stream(s) x {args.tokens} tokens: {r['tokens_per_s']:.1f} tokens/s aggregate "
            f"({r['tokens']} tokens in {r['seconds']:.2f}s, max TTFT {r['ttft_s'] * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
