"""Throughput of the local embedding model (all-MiniLM-L6-v2), one by one vs. concurrent.

    .venv/bin/python bench/embeddings.py [--requests 64] [--concurrency 16]

Sends ``--requests`` single-sentence requests to the local provider's embedder, first one at a
time, then ``--concurrency`` at once (the batcher folds those into shared forward passes), and
prints sentences per second for both. Needs the ``embeddings`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from spaceai.catalog import LOCAL_EMBEDDING_MODEL, Catalog
from spaceai.providers.local.embeddings import LocalEmbedder
from spaceai.types import EmbeddingRequest

SENTENCE = "Request number {i}: a sentence of about the length people embed for search."


async def main(requests: int, concurrency: int) -> None:
    model = Catalog.load(None).get(LOCAL_EMBEDDING_MODEL)
    embedder = LocalEmbedder()

    async def one(i: int) -> None:
        await embedder.embeddings(EmbeddingRequest(model=model.id,
                                                   inputs=[SENTENCE.format(i=i)]), model)

    await one(-1)  # load the weights
    started = time.perf_counter()
    for i in range(requests):
        await one(i)
    serial = requests / (time.perf_counter() - started)

    _, batcher = next(iter(embedder._models.values()))
    batches = batcher.batches
    sem = asyncio.Semaphore(concurrency)

    async def limited(i: int) -> None:
        async with sem:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(limited(i) for i in range(requests)))
    concurrent = requests / (time.perf_counter() - started)
    print(f"one at a time: {serial:.1f} requests/s")
    print(f"{concurrency} concurrent: {concurrent:.1f} requests/s "
          f"({requests} requests in {batcher.batches - batches} forward batches)")
    await embedder.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
