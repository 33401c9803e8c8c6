"""Responses <-> internal chat translation, without a server: items to messages, chat
answers and chunks to Responses objects and events."""

from __future__ import annotations

import json

import pytest

from spaceai.api.responses_render import ResponsesStreamEncoder, render_response
from spaceai.api.responses_request import items_to_messages, parse_responses
from spaceai.types import GatewayError, UpstreamError


def _events(raw: bytes) -> list[dict]:
    return [json.loads(f.split(b"\n")[1][6:]) for f in raw.split(b"\n\n") if f]


def test_function_calls_join_the_assistant_turn_before_them():
    items = parse_responses({"model": "m", "input": [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": '{"city":"Oslo"}'},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "Rain"}]},
    ]}).input_items
    assert items[1] == {"id": "rs_1", "type": "reasoning", "summary": [],
                        "encrypted_content": "opaque"}  # kept as sent
    messages = items_to_messages(items)
    assert messages == [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "w", "arguments": '{"city":"Oslo"}'}},
            {"id": "c2", "type": "function",
             "function": {"name": "w", "arguments": '{"city":"Rome"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "Rain"},
    ]


def test_temperature_is_only_sent_when_the_client_set_it():
    assert "temperature" not in parse_responses({"model": "m", "input": "hi"}).chat.params
    assert parse_responses({"model": "m", "input": "hi", "temperature": 0.2}).chat.params[
        "temperature"] == 0.2


def test_forcing_a_hosted_tool_is_refused():
    with pytest.raises(GatewayError) as exc:
        parse_responses({"model": "m", "input": "hi", "tools": [{"type": "file_search"}],
                         "tool_choice": {"type": "file_search"}})
    assert exc.value.status == 400 and exc.value.param == "tool_choice"
    rr = parse_responses({"model": "m", "input": "hi", "tool_choice": "auto",
                          "tools": [{"type": "web_search"}, {"type": "code_interpreter"}]})
    assert rr.dropped == ["tools.web_search", "tools.code_interpreter"]
    assert "tools" not in rr.chat.params and "tool_choice" not in rr.chat.params


def test_reasoning_content_becomes_a_reasoning_item():
    data = {"choices": [{"message": {"role": "assistant", "content": "42",
                                     "reasoning_content": "6 times 7"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9, "cost": 0.5,
                      "completion_tokens_details": {"reasoning_tokens": 4}}}
    echo = parse_responses({"model": "m", "input": "hi"}).echo
    resp = render_response("resp_1", "m", echo, 0, data)
    assert [o["type"] for o in resp["output"]] == ["reasoning", "message"]
    assert resp["output"][0]["summary"] == [{"type": "summary_text", "text": "6 times 7"}]
    assert resp["usage"]["output_tokens_details"] == {"reasoning_tokens": 4}
    assert resp["usage"]["cost"] == 0.5 and resp["status"] == "completed"


def test_stream_encoder_sequences_reasoning_text_and_failure():
    echo = parse_responses({"model": "m", "input": "hi"}).echo
    enc = ResponsesStreamEncoder("resp_1", "m", echo, 0)
    out = enc.start()
    for delta in ({"reasoning_content": "think"}, {"content": "Hel"}, {"content": "lo"}):
        out += enc.encode({"choices": [{"index": 0, "delta": delta}]})
    out += enc.fail(UpstreamError(502, "upstream went away"), {"prompt_tokens": 3,
                                                                "completion_tokens": 3})
    events = _events(out)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.output_item.done",  # the reasoning item
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"] == "upstream went away"
    assert failed["output"][1]["content"][0]["text"] == "Hello"
    assert failed["usage"]["output_tokens"] == 3
