"""Self-tests of the fake upstreams (tests/fakes): the official SDKs must accept them."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import sys
from pathlib import Path

import aiohttp
import anthropic
import httpx2 as httpx  # the SDKs here use httpx2
import openai
import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) too
    sys.path.insert(0, str(ROOT))

from tests.fakes import (  # noqa: E402
    CutStream,
    Error,
    FakeAnthropic,
    FakeOpenAI,
    Hang,
    Reply,
    SlowStream,
    StreamError,
    unused_port,
)

REFERENCE = Path(__file__).resolve().parent / "reference" / "recorded-streams"
MSGS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to me"}]
# usage formula: words + 3 per message
PROMPT_TOKENS = (2 + 3) + (4 + 3)


@pytest_asyncio.fixture
async def fake_openai():
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def fake_anthropic():
    async with FakeAnthropic() as fake:
        yield fake


def _oa(fake: FakeOpenAI, **kw) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, **kw)


def _an(fake: FakeAnthropic, **kw) -> anthropic.AsyncAnthropic:
    kw.setdefault("max_retries", 0)
    return anthropic.AsyncAnthropic(base_url=fake.root_url, api_key=fake.api_key, **kw)


# ----------------------------------------------------------------------------- OpenAI


@pytest.mark.asyncio
async def test_openai_completion_and_recording(fake_openai):
    client = _oa(fake_openai)
    r = await client.chat.completions.create(model="gpt-4o-mini", messages=MSGS)
    assert r.choices[0].message.content == "Hello from fake-openai"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (PROMPT_TOKENS, 3)
    assert r.model == "gpt-4o-mini"
    req = fake_openai.last_request
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-fake-openai"
    assert req.body["messages"] == MSGS


def test_openai_stream_with_usage_sync_thread():
    with FakeOpenAI() as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", messages=MSGS, stream=True,
            stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello from fake-openai"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].choices == []
        assert chunks[-1].usage.total_tokens == PROMPT_TOKENS + 3
        assert fake.requests[0].body["stream"] is True


@pytest.mark.asyncio
async def test_openai_stream_tool_call_and_reference_shape(fake_openai):
    fake_openai.script(Reply(tool_calls=[{"name": "GetWeatherArgs",
                                          "arguments": {"city": "Edinburgh", "country": "UK"}}]))
    async with aiohttp.ClientSession() as s:
        r = await s.post(fake_openai.base_url + "/chat/completions",
                         headers={"Authorization": "Bearer sk-fake-openai"},
                         json={"model": "gpt-4o", "messages": MSGS, "stream": True,
                               "stream_options": {"include_usage": True}})
        raw = await r.read()
    assert r.headers["content-type"].startswith("text/event-stream")
    events = raw.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    ours = [json.loads(e[6:]) for e in events[:-2]]
    ref = [json.loads(e[6:]) for e in
           (REFERENCE / "openai_chat_stream_tool_call.sse").read_bytes().split(b"\n\n")
           if e.startswith(b"data: {")]
    # same keys in the same order, chunk by chunk shape (first, fragment, finish, usage)
    for mine, theirs in [(ours[0], ref[0]), (ours[1], ref[1]), (ours[-2], ref[-2])]:
        assert list(mine) == list(theirs)
        assert list(mine["choices"][0]) == list(theirs["choices"][0])
        assert list(mine["choices"][0]["delta"]) == list(theirs["choices"][0]["delta"])
    assert list(ours[-1])[:6] == list(ref[-1])[:6]
    args = "".join(c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                   for c in ours if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    assert json.loads(args) == {"city": "Edinburgh", "country": "UK"}
    assert ours[-2]["choices"][0]["finish_reason"] == "tool_calls"
    # completion tokens = argument fragments (8 chars each)
    assert ours[-1]["usage"]["completion_tokens"] == -(-len(args) // 8)


@pytest.mark.asyncio
async def test_openai_sdk_tool_calls_non_stream(fake_openai):
    fake_openai.script(Reply(tool_calls=[{"id": "call_1", "name": "f", "arguments": '{"a":1}'}]))
    r = await _oa(fake_openai).chat.completions.create(model="m", messages=MSGS)
    msg = r.choices[0].message
    assert msg.content is None and r.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls[0].id == "call_1"
    assert msg.tool_calls[0].function.arguments == '{"a":1}'


@pytest.mark.asyncio
async def test_openai_max_tokens_and_stop(fake_openai):
    client = _oa(fake_openai)
    r = await client.chat.completions.create(model="m", messages=MSGS, max_tokens=2)
    assert r.choices[0].message.content == "Hello from"
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2
    r = await client.chat.completions.create(model="m", messages=MSGS, stop=[" fake", "zzz"])
    assert r.choices[0].message.content == "Hello from"
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_openai_embeddings_completions_models(fake_openai):
    client = _oa(fake_openai)
    e64 = await client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert fake_openai.last_request.body["encoding_format"] == "base64"  # SDK default
    ef = await client.embeddings.create(model="text-embedding-3-small", input=["a b", "c"],
                                        encoding_format="float")
    assert [d.embedding for d in e64.data] == [d.embedding for d in ef.data]
    assert len(ef.data[0].embedding) == 16 and ef.usage.prompt_tokens == 3
    assert abs(sum(x * x for x in ef.data[0].embedding) - 1) < 1e-5
    e4 = await client.embeddings.create(model="text-embedding-3-small", input="a b",
                                        dimensions=4, encoding_format="float")
    assert len(e4.data[0].embedding) == 4
    async with aiohttp.ClientSession() as s:  # raw base64 is little-endian float32
        r = await s.post(fake_openai.base_url + "/embeddings",
                         headers={"Authorization": "Bearer sk-fake-openai"},
                         json={"model": "text-embedding-3-small", "input": "a b",
                               "encoding_format": "base64", "dimensions": 4})
        b = base64.b64decode((await r.json())["data"][0]["embedding"])
    assert list(struct.unpack("<4f", b)) == e4.data[0].embedding

    c = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt="one two")
    assert c.choices[0].text == "Hello from fake-openai" and c.usage.prompt_tokens == 2
    stream = await client.completions.create(model="m", prompt="x", stream=True,
                                             stream_options={"include_usage": True})
    parts = [ch async for ch in stream]
    assert "".join(p.choices[0].text for p in parts if p.choices) == "Hello from fake-openai"
    assert parts[-1].usage.completion_tokens == 3
    models = await client.models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]


@pytest.mark.asyncio
async def test_openai_auth_and_scripted_errors(fake_openai):
    bad = openai.AsyncOpenAI(base_url=fake_openai.base_url, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        await bad.chat.completions.create(model="m", messages=MSGS)
    assert ei.value.body["code"] == "invalid_api_key"

    fake_openai.script(Error(429, headers={"retry-after": "0"}), Error(500))
    with pytest.raises(openai.RateLimitError):
        await _oa(fake_openai).chat.completions.create(model="m", messages=MSGS)
    with pytest.raises(openai.InternalServerError):
        await _oa(fake_openai).chat.completions.create(model="m", messages=MSGS)
    # the SDK retries a 429 honouring retry-after, then gets the default reply
    fake_openai.reset()
    fake_openai.script(Error(429, headers={"retry-after": "0"}))
    r = await _oa(fake_openai, max_retries=2).chat.completions.create(model="m", messages=MSGS)
    assert r.choices[0].message.content == "Hello from fake-openai"
    assert len(fake_openai.requests) == 2


@pytest.mark.asyncio
async def test_openai_cut_stream_error_and_hang(fake_openai):
    client = _oa(fake_openai)
    fake_openai.script(CutStream(after_chunks=2))
    got = []
    with pytest.raises((httpx.TransportError, openai.APIConnectionError)):
        stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
        async for ch in stream:
            got.append(ch.choices[0].delta.content)
    assert got == ["", "Hello", " from"]

    fake_openai.script(StreamError(after_chunks=1, message="boom"))
    with pytest.raises(openai.APIError, match="boom"):
        stream = await client.chat.completions.create(model="m", messages=MSGS, stream=True)
        async for _ in stream:
            pass

    fake_openai.script(Hang(5))
    with pytest.raises(openai.APITimeoutError):
        await _oa(fake_openai, timeout=0.3).chat.completions.create(model="m", messages=MSGS)


@pytest.mark.asyncio
async def test_slow_stream_client_disconnect_is_seen(fake_openai):
    fake_openai.script(SlowStream(delay_per_chunk=0.05, chunks=50))
    async with aiohttp.ClientSession() as s:
        r = await s.post(fake_openai.base_url + "/chat/completions",
                         headers={"Authorization": "Bearer sk-fake-openai"},
                         json={"model": "m", "messages": MSGS, "stream": True})
        await r.content.readline()
        r.close()
    assert await fake_openai.wait_cancelled(3)
    assert fake_openai.cancelled == 1 and fake_openai.completed_streams == 0


@pytest.mark.asyncio
async def test_connection_refused_on_unused_port():
    client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{unused_port()}/v1",
                                api_key="x", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=MSGS)


# ----------------------------------------------------------------------------- Anthropic

A_MSGS = [{"role": "user", "content": "What is the weather in Paris"}]
A_PROMPT = (1 + 3) + (6 + 3)  # system "Brief." + the message


@pytest.mark.asyncio
async def test_anthropic_message(fake_anthropic):
    client = _an(fake_anthropic)
    m = await client.messages.create(model="claude-sonnet-4-20250514", max_tokens=100,
                                     system="Brief.", messages=A_MSGS)
    assert m.content[0].text == "Hello from fake-anthropic"
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (A_PROMPT, 3)
    req = fake_anthropic.last_request
    # anthropic SDK 2.x authenticates with a Bearer token; x-api-key is accepted too
    assert req.headers.get("x-api-key") == "sk-ant-fake" or \
        req.headers.get("authorization") == "Bearer sk-ant-fake"
    assert req.headers["anthropic-version"]


@pytest.mark.asyncio
async def test_anthropic_stream_tool_use(fake_anthropic):
    fake_anthropic.script(Reply(text="I'll check the weather.",
                                tool_calls=[{"name": "get_weather",
                                             "arguments": {"location": "Paris"}}],
                                cache_read_input_tokens=7))
    client = _an(fake_anthropic)
    async with client.messages.stream(model="claude-sonnet-4-20250514", max_tokens=100,
                                      system="Brief.", messages=A_MSGS) as stream:
        texts = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == "I'll check the weather."
    assert final.stop_reason == "tool_use"
    assert final.content[1].type == "tool_use" and final.content[1].input == {"location": "Paris"}
    n_frag = -(-len('{"location":"Paris"}') // 8)
    assert final.usage.output_tokens == 4 + n_frag
    assert final.usage.cache_read_input_tokens == 7
    assert final.usage.input_tokens == A_PROMPT


def test_anthropic_stream_event_order_matches_reference():
    with FakeAnthropic() as fake:
        r = httpx.post(fake.base_url + "/messages", headers={"x-api-key": fake.api_key},
                       json={"model": "m", "max_tokens": 5, "messages": A_MSGS})
        assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
        r = httpx.post(fake.base_url + "/messages",
                       headers={"x-api-key": "bad", "anthropic-version": "2023-06-01"},
                       json={"model": "m", "max_tokens": 5, "messages": A_MSGS})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        fake.script(Reply(text="I'll check", tool_calls=[{"name": "w", "arguments": {"a": 1}}]))
        r = httpx.post(fake.base_url + "/messages",
                       headers={"x-api-key": fake.api_key, "anthropic-version": "2023-06-01"},
                       json={"model": "m", "max_tokens": 50, "stream": True,
                             "messages": A_MSGS})
    def names(raw: str) -> list[str]:
        out = []
        for line in raw.splitlines():
            if line.startswith("event: "):
                n = line[7:]
                if not out or out[-1] != n or n != "content_block_delta":
                    out.append(n)
        return out
    ref = (REFERENCE / "anthropic_stream_tool_use.sse").read_text()
    assert names(r.text) == names(ref)
    assert 'event: ping\ndata: {"type": "ping"}\n\n' in r.text


@pytest.mark.asyncio
async def test_anthropic_stop_sequence_max_tokens_refusal(fake_anthropic):
    client = _an(fake_anthropic)
    m = await client.messages.create(model="m", max_tokens=100, messages=A_MSGS,
                                     stop_sequences=[" fake"])
    assert m.content[0].text == "Hello from"
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", " fake")
    m = await client.messages.create(model="m", max_tokens=1, messages=A_MSGS)
    assert m.content[0].text == "Hello" and m.stop_reason == "max_tokens"
    fake_anthropic.script(Reply(text="", stop_reason="refusal"))
    async with client.messages.stream(model="m", max_tokens=10, messages=A_MSGS) as s:
        final = await s.get_final_message()
    assert final.stop_reason == "refusal" and final.content == []


@pytest.mark.asyncio
async def test_anthropic_auth_errors_and_cut(fake_anthropic):
    bad = anthropic.AsyncAnthropic(base_url=fake_anthropic.root_url, api_key="nope",
                                   max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as ei:
        await bad.messages.create(model="m", max_tokens=5, messages=A_MSGS)
    assert ei.value.body["error"]["type"] == "authentication_error"

    fake_anthropic.script(Error(529))
    with pytest.raises(anthropic.APIStatusError) as ei:
        await _an(fake_anthropic).messages.create(model="m", max_tokens=5, messages=A_MSGS)
    assert ei.value.status_code == 529
    assert ei.value.body == {"type": "error",
                             "error": {"type": "overloaded_error", "message": "Overloaded"}}

    fake_anthropic.script(CutStream(after_chunks=1))
    got = []
    with pytest.raises((httpx.TransportError, anthropic.APIConnectionError)):
        async with _an(fake_anthropic).messages.stream(model="m", max_tokens=50,
                                                       messages=A_MSGS) as s:
            async for t in s.text_stream:
                got.append(t)
    assert got == ["Hello"]

    fake_anthropic.script(StreamError(after_chunks=1, type="overloaded_error",
                                      message="Overloaded"))
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        async with _an(fake_anthropic).messages.stream(model="m", max_tokens=50,
                                                       messages=A_MSGS) as s:
            await s.get_final_message()


@pytest.mark.asyncio
async def test_async_and_thread_modes_can_coexist():
    fake = FakeOpenAI(api_key=None)  # auth check disabled
    fake.start_in_thread()
    try:
        async with httpx.AsyncClient() as c:
            r = await c.get(fake.base_url + "/models")
        assert r.status_code == 200 and r.json()["object"] == "list"
    finally:
        fake.stop_thread()
    await asyncio.sleep(0)
