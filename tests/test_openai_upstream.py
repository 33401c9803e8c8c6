"""The OpenAI-compatible adapter: what the upstream receives and what the client gets."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest
from aiohttp import web
from conftest import REFERENCE_DIR, openai_model
from fakes.upstream import Reply
from support.server import GatewayServer

from spaceai.catalog import Catalog
from spaceai.providers.http import HttpClient
from spaceai.providers.openai import OpenAIProvider
from spaceai.types import ChatRequest

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from fakes.upstream import FakeOpenAI

    fake = FakeOpenAI()
    fake.start_in_thread()
    models = [openai_model(fake, upstream_model="gpt-4o-2024-08-06")]
    with GatewayServer(tmp_path_factory.mktemp("oa"), models=models) as server:
        server.fake = fake
        yield server
    fake.stop_thread()


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.api_url, api_key=gw.create_key(), max_retries=0)


def test_every_openai_parameter_is_forwarded(gw, client):
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS,
        tool_choice="auto", temperature=0.2, top_p=0.9, seed=7, stop=["END"], user="u1",
        presence_penalty=0.5, frequency_penalty=0.1, max_completion_tokens=50,
        response_format={"type": "text"}, logit_bias={"50256": -100}, parallel_tool_calls=False)
    sent = gw.fake.requests[-1].body
    assert sent["model"] == "gpt-4o-2024-08-06"  # the catalog's upstream_model
    for name, value in {"tools": TOOLS, "tool_choice": "auto", "temperature": 0.2, "top_p": 0.9,
                        "seed": 7, "stop": ["END"], "user": "u1", "presence_penalty": 0.5,
                        "frequency_penalty": 0.1, "max_completion_tokens": 50,
                        "response_format": {"type": "text"}, "logit_bias": {"50256": -100},
                        "parallel_tool_calls": False}.items():
        assert sent[name] == value, name


def test_tool_calls_come_back_non_streaming_and_streaming(gw, client):
    call = {"name": "get_weather", "arguments": {"city": "Paris"}, "id": "call_abc"}
    gw.fake.script(Reply(tool_calls=[call]), Reply(tool_calls=[call]))
    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].id == "call_abc"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    args, finish, ids = "", None, set()
    for ch in client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=TOOLS, stream=True):
        for c in ch.choices:
            for tc in c.delta.tool_calls or ():
                ids.add(tc.id) if tc.id else None
                args += tc.function.arguments or ""
            finish = c.finish_reason or finish
    assert json.loads(args) == {"city": "Paris"} and finish == "tool_calls"
    assert ids == {"call_abc"}


def test_upstream_400_is_relayed_as_400(gw, client):
    from fakes.upstream import Error

    gw.fake.script(Error(status=400, message="Invalid 'messages[0]': bad things."))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o",
                                       messages=[{"role": "user", "content": "x"}])
    assert "bad things" in e.value.message
    assert gw.fake.api_key not in e.value.message


def _serve_bytes(raw: bytes):
    async def handler(request):
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(0, len(raw), 37):  # odd-sized writes: lines split across reads
            await resp.write(raw[i:i + 37])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    return app


@pytest.mark.parametrize("name", ["openai_chat_stream_text.sse",
                                  "openai_chat_stream_tool_call.sse"])
async def test_recorded_openai_streams_parse_into_the_same_chunks(name):
    raw = (REFERENCE_DIR / "recorded-streams" / name).read_bytes()
    expected = [json.loads(line[6:]) for line in raw.decode().splitlines()
                if line.startswith("data: ") and line != "data: [DONE]"]
    runner = web.AppRunner(_serve_bytes(raw))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    http = HttpClient()
    await http.start()
    try:
        model = Catalog.from_dicts([{"id": "gpt-4o", "provider": "openai", "api_key": "k",
                                     "base_url": f"http://127.0.0.1:{port}/v1"}]).get("gpt-4o")
        req = ChatRequest(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                          stream=True)
        got = [c async for c in OpenAIProvider(http).chat_stream(req, model)]
    finally:
        await http.close()
        await runner.cleanup()
    # most of the stream is relayed as blocks of upstream's own bytes, relabelled with the
    # catalog's model id; expanded, they say exactly what upstream said
    from spaceai.providers.openai_stream import WireBlock

    blocks = [item for item in got if isinstance(item, WireBlock)]
    assert blocks and all(b'"model":"gpt-4o"' in b.raw for b in blocks)
    assert b"gpt-4o-2024-08-06" not in b"".join(b.raw for b in blocks)
    got = [c for item in got
           for c in (item.chunks() if isinstance(item, WireBlock) else [item])]
    content_in = [c for c in expected if c["choices"]]
    content_out = [c for c in got if c["choices"]]
    assert len(content_out) == len(content_in)
    for a, b in zip(content_out, content_in, strict=False):
        assert a["choices"] == b["choices"] and a["id"] == b["id"]
        assert a["model"] == "gpt-4o"  # the catalog id, not the upstream's
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in content_out)
    assert text == "".join(c["choices"][0]["delta"].get("content") or "" for c in content_in)
    args = "".join(tc["function"]["arguments"] for c in content_out
                   for tc in c["choices"][0]["delta"].get("tool_calls") or ())
    if "tool_call" in name:
        assert json.loads(args)  # complete JSON arguments
        assert content_out[-1]["choices"][0]["finish_reason"] in ("tool_calls", "stop")
    # the recordings carry no usage chunk: the adapter still ends with one, counting chunks
    assert got[-1]["choices"] == [] and got[-1]["usage"]["completion_tokens"] > 0
    await asyncio.sleep(0)
