"""Anthropic adapter: SSE parsing, request/response/stream translation both ways, errors,
and the provider against a local fake upstream."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from spaceai.catalog import ModelConfig
from spaceai.providers.anthropic.errors import anthropic_error, to_anthropic_error
from spaceai.providers.anthropic.provider import AnthropicProvider
from spaceai.providers.anthropic.request import build_request
from spaceai.providers.anthropic.response import message_to_openai
from spaceai.providers.anthropic.reverse import (
    AnthropicStreamEncoder,
    completion_to_message,
    messages_to_chat_request,
)
from spaceai.providers.anthropic.stream import AnthropicStreamDecoder
from spaceai.providers.http import HttpClient
from spaceai.providers.sse import SSEParser
from spaceai.types import ChatRequest, GatewayError, UpstreamError

REF = Path(__file__).resolve().parent / "reference"
STREAMS = REF / "recorded-streams"
SECRET = "sk-ant-test-SECRET-123"


def model(**kw) -> ModelConfig:
    base = {
        "id": "claude-x",
        "provider": "anthropic",
        "upstream_model": "claude-up-1",
        "base_url": "http://127.0.0.1:1/v1",
        "api_key": SECRET,
        "max_output_tokens": None,
    }
    base.update(kw)
    return ModelConfig(**base)


def pieces(raw: bytes, seed: int, max_size: int = 7) -> list[bytes]:
    rnd = random.Random(seed)
    out, i = [], 0
    while i < len(raw):
        n = rnd.randint(1, max_size)
        out.append(raw[i : i + n])
        i += n
    return out


def decode(
    chunks_of_bytes: list[bytes], model_id: str = "claude-x"
) -> tuple[list[dict], AnthropicStreamDecoder]:
    parser, dec = SSEParser(), AnthropicStreamDecoder(model(id=model_id))
    out: list[dict] = []
    for b in chunks_of_bytes:
        for ev, data in parser.feed(b):
            out += dec.feed(ev, data)
    for ev, data in parser.flush():
        out += dec.feed(ev, data)
    return out, dec


def joined(chunks: list[dict]) -> dict:
    text, calls, finish, usage, roles = "", {}, None, None, []
    for c in chunks:
        assert c["object"] == "chat.completion.chunk"
        if not c["choices"]:
            usage = c["usage"]
            continue
        ch = c["choices"][0]
        d = ch["delta"]
        if "role" in d:
            roles.append(d["role"])
        text += d.get("content") or ""
        for tc in d.get("tool_calls") or []:
            slot = calls.setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
            if tc.get("id"):
                slot["id"] = tc["id"]
                assert tc["type"] == "function"
            slot["name"] += tc.get("function", {}).get("name") or ""
            slot["arguments"] += tc.get("function", {}).get("arguments") or ""
        finish = ch["finish_reason"] or finish
    return {"text": text, "calls": calls, "finish": finish, "usage": usage, "roles": roles}


# -- SSE parser --------------------------------------------------------------------------------


def test_sse_parser_line_endings_and_splits():
    raw = b': comment\r\nevent: a\r\ndata: {"x":\r\ndata: 1}\r\n\r\ndata:plain\n\nid: 3\rdata: \xc3\xa9t\xc3\xa9\r\r'
    expected = [("a", '{"x":\n1}'), (None, "plain"), (None, "été")]
    p = SSEParser()
    assert p.feed(raw) + p.flush() == expected
    for seed in range(20):
        p = SSEParser()
        got = []
        for b in pieces(raw, seed, 3):
            got += p.feed(b)
        assert got + p.flush() == expected
    p = SSEParser()  # a \r at a chunk boundary followed by \n is one line ending
    assert p.feed(b"data: x\r") == [] and p.feed(b"\n\r") == [] and p.feed(b"\n") == [(None, "x")]


# -- Anthropic stream -> OpenAI chunks -----------------------------------------------------------


@pytest.mark.parametrize("split", [None, 1, 2, 3, 4, 5])
def test_decode_recorded_text_stream(split):
    raw = (STREAMS / "anthropic_stream_text.sse").read_bytes()
    chunks, dec = decode([raw] if split is None else pieces(raw, split, 9))
    j = joined(chunks)
    assert j["roles"] == ["assistant"] and chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert j["text"] == "Hello there!"
    assert j["finish"] == "stop"
    assert j["usage"] == {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
    assert chunks[-1]["choices"] == [] and dec.done
    assert all(c["model"] == "claude-x" for c in chunks)
    assert chunks[0]["id"] == "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK"


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("split", [None, 11, 12, 13])
def test_decode_recorded_tool_use_stream(split, crlf):
    raw = (STREAMS / "anthropic_stream_tool_use.sse").read_bytes()
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    chunks, _ = decode([raw] if split is None else pieces(raw, split, 5))
    j = joined(chunks)
    assert j["text"] == "I'll check the current weather in Paris for you."
    assert j["calls"] == {
        0: {
            "id": "toolu_01NRLabsLyVHZPKxbKvkfSMn",
            "name": "get_weather",
            "arguments": '{"location": "Paris"}',
        }
    }
    assert j["finish"] == "tool_calls"
    assert j["usage"] == {"prompt_tokens": 377, "completion_tokens": 65, "total_tokens": 442}
    start = next(c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
    assert start["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == ""


def test_decoder_usage_so_far_and_error_event():
    raw = (STREAMS / "anthropic_stream_tool_use.sse").read_bytes()
    cut = raw[: raw.index(b"event: message_delta")]
    _, dec = decode([cut])
    assert not dec.done
    assert (dec.usage.prompt_tokens, dec.usage.completion_tokens) == (377, 1)
    err = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    with pytest.raises(UpstreamError) as exc:
        decode([cut, err])
    assert exc.value.status == 503 and exc.value.retryable
    assert exc.value.usage.prompt_tokens == 377


def test_decoder_cache_usage_and_cumulative_output():
    dec = AnthropicStreamDecoder(model(id="m"))
    dec.feed(
        "message_start",
        orjson.dumps(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "usage": {
                        "input_tokens": 5,
                        "cache_read_input_tokens": 100,
                        "cache_creation_input_tokens": 20,
                        "output_tokens": 1,
                    },
                },
            }
        ).decode(),
    )
    dec.feed(
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":9}}',
    )
    dec.feed("message_delta", '{"type":"message_delta","delta":{},"usage":{"output_tokens":12}}')
    final = dec.feed("message_stop", '{"type":"message_stop"}')[0]
    assert final["usage"] == {
        "prompt_tokens": 125,
        "completion_tokens": 12,
        "total_tokens": 137,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_creation_tokens": 20},
    }


# -- request translation ---------------------------------------------------------------------------


def req(messages, stream=False, **params) -> ChatRequest:
    params.setdefault("temperature", 0.7)
    return ChatRequest(model="claude-x", messages=messages, params=params, stream=stream)


def test_request_system_developer_and_role_merge():
    body = build_request(
        req(
            [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hi"},
                {"role": "user", "content": [{"type": "text", "text": "there"}]},
                {"role": "assistant", "content": "Bonjour"},
                {"role": "assistant", "content": "!"},
                {"role": "user", "content": "Bye"},
            ]
        ),
        model(max_output_tokens=8192),
    )
    assert body["system"] == "You are terse.\n\nAnswer in French."
    assert body["model"] == "claude-up-1"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "text", "text": "there"},
    ]
    assert len(body["messages"][1]["content"]) == 2
    assert body["max_tokens"] == 8192 and body["temperature"] == 0.7
    assert "stream" not in body and "tools" not in body


def test_request_tools_tool_calls_and_results():
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rainy"}]},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    body = build_request(
        req(
            messages,
            stream=True,
            tools=tools,
            tool_choice="required",
            parallel_tool_calls=False,
            stop=["END", "STOP"],
            top_p=0.9,
            user="u-42",
            max_completion_tokens=300,
        ),
        model(),
    )
    assert body["stream"] is True
    assert body["max_tokens"] == 300
    assert body["stop_sequences"] == ["END", "STOP"] and body["top_p"] == 0.9
    assert body["metadata"] == {"user_id": "u-42"}
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": tools[0]["function"]["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assistant, results = body["messages"][1], body["messages"][2]
    assert assistant == {
        "role": "assistant",
        "content": [
            {
                "type": "tool_use",
                "id": "call_1",
                "name": "get_weather",
                "input": {"location": "Paris"},
            },
            {
                "type": "tool_use",
                "id": "call_2",
                "name": "get_weather",
                "input": {"location": "Rome"},
            },
        ],
    }
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "rainy"},
        ],
    }


@pytest.mark.parametrize(
    "choice,expected",
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
        (None, None),
    ],
)
def test_request_tool_choice(choice, expected):
    tools = [{"type": "function", "function": {"name": "f"}}]
    params = {"tools": tools} if choice is None else {"tools": tools, "tool_choice": choice}
    body = build_request(req([{"role": "user", "content": "x"}], **params), model())
    assert body.get("tool_choice") == expected
    assert body["tools"][0]["input_schema"] == {"type": "object", "properties": {}}


def test_request_max_tokens_defaults_and_temperature_range():
    msgs = [{"role": "user", "content": "x"}]
    assert build_request(req(msgs), model())["max_tokens"] == 4096
    assert build_request(req(msgs), model(max_output_tokens=1000))["max_tokens"] == 1000
    assert (
        build_request(req(msgs, max_tokens=50), model(max_output_tokens=1000))["max_tokens"] == 50
    )
    assert build_request(req(msgs, temperature=1.0), model())["temperature"] == 1.0
    with pytest.raises(GatewayError) as exc:
        build_request(req(msgs, temperature=1.5), model())
    assert exc.value.status == 400 and exc.value.param == "temperature"
    assert "0-1" in exc.value.message and "Anthropic" in exc.value.message


def test_request_images():
    body = build_request(
        req(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                        },
                    ],
                }
            ]
        ),
        model(),
    )
    assert body["messages"][0]["content"][1:] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    with pytest.raises(GatewayError):
        build_request(
            req(
                [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}],
                    }
                ]
            ),
            model(),
        )


# -- response translation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stop,finish",
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ],
)
def test_response_stop_reasons(stop, finish):
    out = message_to_openai(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "ok"}],
            "stop_reason": stop,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        },
        "claude-x",
    )
    assert out["choices"][0]["finish_reason"] == finish
    assert out["model"] == "claude-x" and out["object"] == "chat.completion"


def test_response_text_tools_and_cache_usage():
    out = message_to_openai(
        {
            "id": "msg_2",
            "type": "message",
            "role": "assistant",
            "model": "claude-up-1",
            "content": [
                {"type": "text", "text": "Let me "},
                {"type": "text", "text": "check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"location": "Paris"},
                },
            ],
            "stop_reason": "tool_use",
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 200,
                "cache_creation_input_tokens": 30,
                "output_tokens": 7,
            },
        },
        "claude-x",
    )
    msg = out["choices"][0]["message"]
    assert msg["content"] == "Let me check."
    assert msg["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
        }
    ]
    assert out["usage"]["prompt_tokens"] == 240 and out["usage"]["completion_tokens"] == 7
    assert out["usage"]["total_tokens"] == 247
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 200


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,etype,expected,retryable",
    [
        (400, "invalid_request_error", 400, False),
        (401, "authentication_error", 502, False),
        (403, "permission_error", 502, False),
        (404, "not_found_error", 502, False),
        (413, "request_too_large", 413, False),
        (429, "rate_limit_error", 429, True),
        (500, "api_error", 502, True),
        (529, "overloaded_error", 503, True),
        (502, None, 502, True),
    ],
)
def test_error_mapping(status, etype, expected, retryable):
    body = orjson.dumps(
        {"type": "error", "error": {"type": etype, "message": "boom"}} if etype else {}
    )
    err = anthropic_error(model(), body, status, headers={"retry-after": "7"})
    assert isinstance(err, UpstreamError)
    assert err.status == expected and err.retryable is retryable
    assert err.retry_after == (7.0 if retryable else None)
    assert err.message.startswith(f"model claude-x: upstream returned {status}: ")


def test_error_never_echoes_credential():
    body = orjson.dumps(
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": f"invalid x-api-key {SECRET}"},
        }
    )
    err = anthropic_error(model(), body, 401)
    assert SECRET not in err.message and err.code == "upstream_auth_failed"
    err = anthropic_error(
        model(),
        orjson.dumps({"error": {"type": "invalid_request_error", "message": f"bad {SECRET}"}}),
        400,
    )
    assert SECRET not in err.message
    assert anthropic_error(model(), {"type": "error", "error": {"type": "overloaded_error"}}
                           ).status == 503
    assert to_anthropic_error(GatewayError(503, "busy"))["error"]["type"] == "overloaded_error"


# -- reverse: Anthropic request -> ChatRequest --------------------------------------------------------


def test_reverse_request():
    cr = messages_to_chat_request(
        {
            "model": "gpt-4o",
            "max_tokens": 100,
            "stream": True,
            "top_k": 5,
            "top_p": 0.8,
            "system": [{"type": "text", "text": "Be brief."}],
            "stop_sequences": ["\n\nHuman:"],
            "metadata": {"user_id": "u1"},
            "tools": [
                {"name": "get_weather", "description": "W", "input_schema": {"type": "object"}}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAA="},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"location": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "sunny"}],
                        },
                        {"type": "text", "text": "Thanks"},
                    ],
                },
            ],
        }
    )
    assert cr.model == "gpt-4o" and cr.stream and cr.include_usage
    assert cr.params["max_tokens"] == 100 and cr.params["temperature"] == 1.0
    assert cr.params["top_k"] == 5 and cr.params["top_p"] == 0.8 and cr.params["user"] == "u1"
    assert cr.params["stop"] == ["\n\nHuman:"]
    assert cr.params["tool_choice"] == "required" and cr.params["parallel_tool_calls"] is False
    assert cr.params["tools"][0]["function"]["parameters"] == {"type": "object"}
    roles = [m["role"] for m in cr.messages]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert cr.messages[1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAA="},
    }
    assert cr.messages[2]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"location":"Paris"}',
    }
    assert cr.messages[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    # and back to Anthropic through the forward translation: the shared code round-trips
    body = build_request(cr, model())
    assert body["system"] == "Be brief." and body["top_k"] == 5
    assert body["messages"][2]["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize(
    "body,param",
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 10}, "messages"),
        ({"model": "m", "max_tokens": 10, "messages": []}, "messages"),
        (
            {"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]},
            "messages",
        ),
        (
            {"model": "m", "max_tokens": 10, "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {"model": "m", "max_tokens": 10, "thinking": {"type": "sometimes"},
             "messages": [{"role": "user", "content": "x"}]},
            "thinking.type",
        ),
        (
            {"model": "m", "max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 10},
             "messages": [{"role": "user", "content": "x"}]},
            "thinking.budget_tokens",
        ),
        (
            {"model": "m", "max_tokens": 10, "context_management": [],
             "messages": [{"role": "user", "content": "x"}]},
            "context_management",
        ),
        (
            {"model": "m", "max_tokens": 10, "output_config": {"format": {"type": "xml"}},
             "messages": [{"role": "user", "content": "x"}]},
            "output_config.format.type",
        ),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "temperature": 2,
                "messages": [{"role": "user", "content": "x"}],
            },
            "temperature",
        ),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "system": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
            "system",
        ),
        (
            {
                "model": "m",
                "max_tokens": 10,
                "tool_choice": {"type": "bogus"},
                "messages": [{"role": "user", "content": "x"}],
            },
            "tool_choice.type",
        ),
    ],
)
def test_reverse_request_validation(body, param):
    with pytest.raises(GatewayError) as exc:
        messages_to_chat_request(body)
    assert exc.value.status == 400 and exc.value.param == param


# -- reverse: OpenAI completion -> Anthropic message --------------------------------------------------


def completion(content, finish, tool_calls=None):
    msg = {"role": "assistant", "content": content}
    if tool_calls:
        msg["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 5,
            "total_tokens": 55,
            "prompt_tokens_details": {"cached_tokens": 20},
        },
    }


def test_reverse_response_stop_reasons():
    m = completion_to_message(completion("Hello", "stop"), "gpt-4o", ["END"])
    assert (m["stop_reason"], m["stop_sequence"]) == ("end_turn", None)
    assert m["content"] == [{"type": "text", "text": "Hello"}] and m["id"] == "msg_abc"
    assert m["usage"] == {
        "input_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 20,
        "output_tokens": 5,
    }
    m = completion_to_message(completion("Hello END", "stop"), "gpt-4o", ["END"])
    assert (m["stop_reason"], m["stop_sequence"]) == ("stop_sequence", "END")
    assert m["content"][0]["text"] == "Hello "
    assert completion_to_message(completion("x", "length"), "m")["stop_reason"] == "max_tokens"
    assert completion_to_message(completion("", "content_filter"), "m")["stop_reason"] == "refusal"
    m = completion_to_message(
        completion(
            None,
            "tool_calls",
            [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'},
                }
            ],
        ),
        "m",
    )
    assert m["stop_reason"] == "tool_use"
    assert m["content"] == [{"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}]


# -- reverse: OpenAI chunks -> Anthropic SSE ----------------------------------------------------------


def openai_chunks(name: str) -> list[dict]:
    p = SSEParser()
    events = p.feed((STREAMS / name).read_bytes()) + p.flush()
    return [orjson.loads(d) for _, d in events if d != "[DONE]"]


def encode(name: str) -> bytes:
    enc = AnthropicStreamEncoder("gpt-4o", message_id="msg_test")
    return b"".join(enc.encode(c) for c in openai_chunks(name)) + enc.finish()


def test_reverse_stream_event_sequence():
    raw = encode("openai_chat_stream_tool_call.sse")
    p = SSEParser()
    events = p.feed(raw)
    assert p.flush() == []
    names = [e for e, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-4:] == [
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert set(names[3:-3]) == {"content_block_delta"}
    for name, data in events:
        assert orjson.loads(data)["type"] == name
    start = orjson.loads(events[1][1])["content_block"]
    assert start == {
        "type": "tool_use",
        "id": "call_c91SqDXlYFuETYv8mUHzz6pp",
        "name": "GetWeatherArgs",
        "input": {},
    }
    delta = orjson.loads(events[-2][1])
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 24 and delta["usage"]["input_tokens"] == 76
    # our own decoder reads it back into the same tool call
    j = joined(decode(pieces(raw, 3, 11))[0])
    args = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"].get("arguments") or ""
        for c in openai_chunks("openai_chat_stream_tool_call.sse")
        if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
    )
    assert j["calls"][0]["arguments"] == args and j["finish"] == "tool_calls"


def _sdk_final_message(raw: bytes):
    import anthropic
    try:  # the SDK's HTTP client library: httpx, or httpx2 in newer SDK releases
        import httpx2 as httpx
    except ImportError:
        import httpx

    def handler(request):
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    client = anthropic.Anthropic(
        api_key="test",
        base_url="http://test",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    with client.messages.stream(
        model="gpt-4o", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        kinds = [ev.type for ev in stream]
        return stream.get_final_message(), kinds


def test_reverse_stream_parsed_by_official_sdk():
    msg, kinds = _sdk_final_message(encode("openai_chat_stream_tool_call.sse"))
    assert msg.stop_reason == "tool_use" and msg.usage.output_tokens == 24
    tool = msg.content[0]
    assert tool.type == "tool_use" and tool.name == "GetWeatherArgs"
    assert tool.input == orjson.loads(
        "".join(
            c["choices"][0]["delta"]["tool_calls"][0]["function"].get("arguments") or ""
            for c in openai_chunks("openai_chat_stream_tool_call.sse")
            if c["choices"] and c["choices"][0]["delta"].get("tool_calls")
        )
    )
    assert "message_stop" in kinds

    msg, _ = _sdk_final_message(encode("openai_chat_stream_text.sse"))
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in openai_chunks("openai_chat_stream_text.sse")
        if c["choices"]
    )
    assert msg.content[0].type == "text" and msg.content[0].text == text
    assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 30


# -- provider against a local fake upstream -------------------------------------------------------------


class FakeUpstream:
    def __init__(self):
        self.mode = "text"
        self.seen: list[dict] = []
        self.closed = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"headers": dict(request.headers), "body": await request.json()})
        if self.mode == "overloaded":
            return web.json_response(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                status=529,
            )
        if self.mode == "json":
            return web.json_response(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": "hi"}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": 4, "output_tokens": 1},
                }
            )
        if self.mode == "slow":
            await asyncio.sleep(2)
        raw = (STREAMS / "anthropic_stream_tool_use.sse").read_bytes()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        try:
            if self.mode == "cut":
                await resp.write(
                    raw[
                        : raw.index(
                            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}'
                        )
                    ]
                )
                request.transport.close()
                return resp
            if self.mode == "hang":
                await resp.write(raw[:400])
                await asyncio.sleep(30)
            for piece in pieces(raw, 1, 50):
                await resp.write(piece)
        except (asyncio.CancelledError, ConnectionResetError):
            self.closed.set()
            raise
        return resp


@pytest_asyncio.fixture
async def upstream():
    fake = FakeUpstream()
    app = web.Application()
    app.router.add_post("/v1/messages", fake.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    http = HttpClient()
    yield fake, AnthropicProvider(http), model(base_url=f"http://127.0.0.1:{port}/v1")
    await http.close()
    await runner.cleanup()


ASK = ChatRequest(
    model="claude-x",
    messages=[{"role": "user", "content": "weather?"}],
    params={"temperature": 0.5},
)


@pytest.mark.asyncio
async def test_provider_chat_and_stream(upstream):
    fake, prov, m = upstream
    fake.mode = "json"
    out = await prov.chat(ASK, m)
    assert out["choices"][0]["message"]["content"] == "hi" and out["model"] == "claude-x"
    sent = fake.seen[-1]
    assert sent["headers"]["x-api-key"] == SECRET
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["body"]["model"] == "claude-up-1" and "stream" not in sent["body"]
    fake.mode = "text"
    chunks = [c async for c in prov.chat_stream(ASK, m)]
    assert fake.seen[-1]["body"]["stream"] is True
    j = joined(chunks)
    assert j["calls"][0]["arguments"] == '{"location": "Paris"}'
    assert j["usage"]["completion_tokens"] == 65


@pytest.mark.asyncio
async def test_provider_errors(upstream):
    fake, prov, m = upstream
    fake.mode = "overloaded"
    with pytest.raises(UpstreamError) as exc:
        await prov.chat(ASK, m)
    assert exc.value.status == 503 and exc.value.retryable
    with pytest.raises(UpstreamError) as exc:
        await anext(prov.chat_stream(ASK, m))
    assert exc.value.status == 503
    fake.mode = "cut"
    got = []
    with pytest.raises(UpstreamError) as exc:
        async for c in prov.chat_stream(ASK, m):
            got.append(c)
    assert (
        exc.value.status == 502 and exc.value.message == "upstream stream ended before completion"
    )
    assert exc.value.usage.prompt_tokens == 377 and got
    fake.mode = "slow"
    with pytest.raises(UpstreamError) as exc:
        await prov.chat(ASK, model(base_url=m.base_url, first_byte_timeout_s=0.3))
    assert exc.value.status == 504 and exc.value.type == "timeout" and exc.value.retryable
    with pytest.raises(UpstreamError) as exc:
        await prov.chat(ASK, model(base_url="http://127.0.0.1:1/v1"))
    assert exc.value.status == 502 and exc.value.retryable and SECRET not in exc.value.message


@pytest.mark.asyncio
async def test_provider_early_close_releases_upstream(upstream):
    fake, prov, m = upstream
    fake.mode = "hang"
    gen = prov.chat_stream(ASK, m)
    first = await anext(gen)
    assert first["choices"][0]["delta"]["role"] == "assistant"
    await gen.aclose()
    await asyncio.wait_for(fake.closed.wait(), 5)
