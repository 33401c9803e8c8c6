"""OpenAI clients reaching Anthropic models: each translation, upstream side and client side."""

from __future__ import annotations

import json

import openai
import pytest
from conftest import anthropic_model
from fakes.upstream import Error, Reply
from support.server import GatewayServer

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from fakes.upstream import FakeAnthropic

    fake = FakeAnthropic()
    fake.start_in_thread()
    with GatewayServer(tmp_path_factory.mktemp("an"), models=[anthropic_model(fake)]) as server:
        server.fake = fake
        yield server
    fake.stop_thread()


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.api_url, api_key=gw.create_key(), max_retries=0)


def ask(client, messages, **kw):
    return client.chat.completions.create(model="claude-3.5-sonnet", messages=messages, **kw)


def test_system_and_developer_go_to_system_and_roles_alternate(gw, client):
    reply = ask(client, [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": "Are you there?"},
    ], stop=["STOP"])
    sent = gw.fake.requests[-1]
    assert sent.headers["x-api-key"] == gw.fake.api_key
    assert sent.headers["anthropic-version"]
    body = sent.body
    assert "You are terse." in str(body["system"]) and "Answer in French." in str(body["system"])
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert "Hello" in str(body["messages"][0]["content"])
    assert "Are you there?" in str(body["messages"][0]["content"])
    assert body["stop_sequences"] == ["STOP"]
    assert body["max_tokens"] == 1024  # the model's configured default
    assert body["model"] == "claude-3-5-sonnet-latest"
    assert reply.choices[0].message.content == "Hello from fake-anthropic"
    assert reply.choices[0].finish_reason == "stop"
    # fake formula: system (6 words + 3) + one merged user message (4 words + 3)
    assert reply.usage.prompt_tokens == 16 and reply.usage.completion_tokens == 3


def test_temperature_above_anthropic_range_is_refused_naming_it(gw, client):
    n = len(gw.fake.requests)
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, [{"role": "user", "content": "x"}], temperature=1.5)
    assert e.value.body["param"] == "temperature" and "0" in e.value.message
    assert "1" in e.value.message
    assert len(gw.fake.requests) == n  # never sent upstream


@pytest.mark.parametrize("reply,finish", [
    (Reply(stop_reason="end_turn"), "stop"),
    (Reply(text="one two STOP three", stop_reason=None), "stop"),
    (Reply(stop_reason="max_tokens"), "length"),
    (Reply(stop_reason="refusal"), "content_filter"),
])
def test_stop_reasons_map_to_finish_reasons(gw, client, reply, finish):
    gw.fake.script(reply)
    out = ask(client, [{"role": "user", "content": "x"}], stop=["STOP"])
    assert out.choices[0].finish_reason == finish


def test_tool_round_trip_non_streaming(gw, client):
    gw.fake.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"location": "Paris"},
                                      "id": "toolu_1"}]))
    out = ask(client, [{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
              tool_choice="required")
    sent = gw.fake.requests[-1].body
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"]["properties"]["location"] == {"type": "string"}
    assert sent["tool_choice"] == {"type": "any"}
    msg = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls[0].id == "toolu_1"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"location": "Paris"}
    # the answer goes back: assistant tool_calls -> tool_use, tool message -> tool_result
    ask(client, [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C and sunny"},
    ], tools=TOOLS)
    msgs = gw.fake.requests[-1].body["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    tool_use = msgs[1]["content"][-1]
    assert tool_use == {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                        "input": {"location": "Paris"}}
    result = msgs[2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_1"
    assert "18C and sunny" in str(result["content"])


def test_streamed_text_and_tool_call_with_usage_chunk(gw, client):
    chunks = list(ask(client, [{"role": "user", "content": "Hi"}], stream=True,
                      stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from fake-anthropic"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    gw.fake.script(Reply(text="Let me check.", tool_calls=[
        {"name": "get_weather", "arguments": {"location": "Paris"}, "id": "toolu_9"}]))
    args, finish, names = "", None, []
    chunks = list(ask(client, [{"role": "user", "content": "Weather?"}], tools=TOOLS,
                      stream=True))
    for c in chunks:
        for ch in c.choices:
            for tc in ch.delta.tool_calls or ():
                if tc.function.name:
                    names.append(tc.function.name)
                args += tc.function.arguments or ""
            finish = ch.finish_reason or finish
    assert names == ["get_weather"] and json.loads(args) == {"location": "Paris"}
    assert finish == "tool_calls"
    assert all(c.usage is None for c in chunks)  # not asked for: no usage chunk


def test_cache_tokens_are_reported(gw, client):
    gw.fake.script(Reply(cache_read_input_tokens=100, cache_creation_input_tokens=20))
    out = ask(client, [{"role": "user", "content": "Hi"}])
    assert out.usage.prompt_tokens_details.cached_tokens == 100
    assert out.usage.prompt_tokens == 4 + 100 + 20


def test_anthropic_errors_become_openai_errors(gw, client):
    gw.fake.script(Error(status=529))
    with pytest.raises(openai.InternalServerError) as e:
        ask(client, [{"role": "user", "content": "x"}])
    assert e.value.status_code == 503
    gw.fake.script(Error(status=400, message="messages: bad"))
    with pytest.raises(openai.BadRequestError):
        ask(client, [{"role": "user", "content": "x"}])
    gw.fake.script(Error(status=401))
    with pytest.raises(openai.APIStatusError) as e:
        ask(client, [{"role": "user", "content": "x"}])
    assert e.value.status_code != 401  # the client's key is fine: the gateway's was refused
    assert gw.fake.api_key not in str(e.value.body)
