"""/v1/responses: the official openai SDK's ``client.responses`` pointed at SpaceAI, in front
of an OpenAI upstream, a Claude upstream (both fakes) and the real local model."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import openai
import pytest
from fakes import Error, Reply, StreamError
from support.backends import chat_models
from support.server import LOCAL_MODEL, GatewayServer

from spaceai.keys import now

WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}
EVENT_KINDS = {
    "response.created", "response.in_progress", "response.output_item.added",
    "response.content_part.added", "response.output_text.delta", "response.output_text.done",
    "response.content_part.done", "response.output_item.done",
    "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.completed", "response.incomplete", "response.failed",
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fakes):
    oai, ant = fakes
    models = [
        *chat_models(oai, ant),
        {"id": "embed-test", "provider": "openai", "base_url": oai.base_url,
         "api_key": oai.api_key, "capabilities": ["embeddings"]},
        LOCAL_MODEL,
    ]
    with GatewayServer(tmp_path_factory.mktemp("responses"), models=models) as gw:
        yield gw


pytestmark = pytest.mark.usefixtures("fresh_fakes")


@pytest.fixture(scope="module")
def key(gateway):
    return gateway.create_key(name="responses")


@pytest.fixture
def client(gateway, key):
    return openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)


def _key_id(gateway, secret):
    return httpx.get(gateway.api_url + "/key", headers={"Authorization": f"Bearer {secret}"},
                     timeout=30).json()["id"]


def _events(text):
    """(event name, data) pairs of an SSE body, checking each event's two-line frame."""
    out = []
    for frame in text.split("\n\n"):
        if not frame:
            continue
        name, data = frame.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == name[7:]
        out.append((name[7:], payload))
    return out


# -- an OpenAI model: create, stream --------------------------------------------------------


def test_create_answers_text_with_priced_usage(client, fakes):
    oai, _ = fakes
    raw = client.responses.with_raw_response.create(
        model="gpt-test", instructions="Be brief.", input="Hello there", max_output_tokens=64,
        temperature=0.5)
    resp = raw.parse()
    assert resp.object == "response" and resp.status == "completed" and resp.id.startswith("resp_")
    assert resp.output_text == "Hello from fake-openai"
    assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
    # instructions: 2 words + 3; input: 2 words + 3
    assert resp.usage.input_tokens == 10 and resp.usage.output_tokens == 3
    assert resp.usage.total_tokens == 13
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.usage.output_tokens_details.reasoning_tokens == 0
    cost = 10 * 0.00001 + 3 * 0.00003
    assert resp.usage.model_extra["cost"] == pytest.approx(cost)
    assert float(raw.headers["x-spaceai-cost"]) == pytest.approx(cost)
    assert resp.instructions == "Be brief." and resp.max_output_tokens == 64
    sent = oai.last_request.body
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hello there"}]
    assert sent["max_completion_tokens"] == 64 and sent["temperature"] == 0.5


def test_stream_sends_openai_events_in_order(client, gateway, key):
    with client.responses.stream(model="gpt-test", input="Hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Hello from fake-openai" == final.output_text
    assert final.usage.output_tokens == 3 and final.usage.model_extra["cost"] > 0
    r = httpx.post(gateway.api_url + "/responses", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "gpt-test", "input": "Hi", "stream": True}, timeout=30)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    kinds = [k for k, _ in events]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"] + ["response.output_text.delta"] * 3 + [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed"]
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    assert all(e["logprobs"] == [] for k, e in events if k == "response.output_text.delta")
    done = events[-1][1]["response"]
    assert done["status"] == "completed" and done["usage"]["output_tokens"] == 3
    assert done["output"][0]["content"][0]["text"] == "Hello from fake-openai"


def test_max_output_tokens_cut_is_incomplete(client, gateway, key):
    resp = client.responses.create(model="gpt-test", input="Hi", max_output_tokens=2)
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "Hello from"
    r = httpx.post(gateway.api_url + "/responses", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "gpt-test", "input": "Hi", "stream": True,
                         "max_output_tokens": 2}, timeout=30)
    assert _events(r.text)[-1][0] == "response.incomplete"


def test_function_call_round_trip(client, fakes):
    oai, _ = fakes
    oai.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"},
                                  "id": "call_1"}]))
    first = client.responses.create(model="gpt-test", input="Weather in Oslo?",
                                    tools=[WEATHER_TOOL], tool_choice="required")
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Oslo"} and call.call_id == "call_1"
    sent = oai.last_request.body
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0] == {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": WEATHER_TOOL["parameters"]}}
    follow = client.responses.create(
        model="gpt-test", tools=[WEATHER_TOOL],
        input=[{"role": "user", "content": "Weather in Oslo?"}, call.model_dump(),
               {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21C"}])
    assert follow.output_text == "Hello from fake-openai"
    messages = oai.last_request.body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"}


def test_function_call_streams_as_argument_events(client, gateway, key, fakes):
    oai, _ = fakes
    oai.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Rome"}}]))
    with client.responses.stream(model="gpt-test", input="Weather?", tools=[WEATHER_TOOL]) as s:
        args = "".join(e.delta for e in s if e.type == "response.function_call_arguments.delta")
        final = s.get_final_response()
    assert json.loads(args) == {"city": "Rome"}
    assert final.output[-1].type == "function_call" and final.output[-1].name == "get_weather"
    assert json.loads(final.output[-1].arguments) == {"city": "Rome"}


def test_function_call_stream_events_are_openai_shaped(gateway, key, fakes):
    oai, _ = fakes
    oai.script(Reply(text="Let me look.", tool_calls=[
        {"name": "get_weather", "arguments": {"city": "Rome"}, "id": "call_a"},
        {"name": "get_weather", "arguments": {"city": "Oslo"}, "id": "call_b"}]))
    r = httpx.post(gateway.api_url + "/responses", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "gpt-test", "input": "Weather?", "stream": True,
                         "tools": [WEATHER_TOOL]}, timeout=30)
    events = _events(r.text)
    assert {k for k, _ in events} <= EVENT_KINDS
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    added = [e["item"] for k, e in events if k == "response.output_item.added"]
    assert [i["type"] for i in added] == ["message", "function_call", "function_call"]
    assert added[0]["content"] == [] and added[0]["status"] == "in_progress"
    assert added[1]["arguments"] == "" and added[1]["name"] == "get_weather"
    done = {e["item_id"]: e["arguments"] for k, e in events
            if k == "response.function_call_arguments.done"}
    assert [json.loads(a) for a in done.values()] == [{"city": "Rome"}, {"city": "Oslo"}]
    final = events[-1][1]["response"]
    assert [o["type"] for o in final["output"]] == ["message", "function_call", "function_call"]
    assert [o.get("call_id") for o in final["output"][1:]] == ["call_a", "call_b"]
    assert all(o["status"] == "completed" for o in final["output"])


def test_json_schema_format_becomes_response_format(client, fakes):
    oai, _ = fakes
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    client.responses.create(model="gpt-test", input="Hi", text={"format": {
        "type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
        reasoning={"effort": "low"}, metadata={"ticket": "42"}, user="u1")
    sent = oai.last_request.body
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True}}
    assert sent["reasoning_effort"] == "low" and sent["user"] == "u1"
    assert "metadata" not in sent and "store" not in sent


# -- a Claude model -------------------------------------------------------------------------


def test_claude_model_answers_and_streams(client, fakes):
    _, ant = fakes
    resp = client.responses.create(model="claude-test", instructions="Be brief.", input="Hello")
    assert resp.output_text == "Hello from fake-anthropic" and resp.model == "claude-test"
    assert ant.last_request.body["system"] == "Be brief."
    with client.responses.stream(model="claude-test", input="Hi") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "Hello from fake-anthropic" == final.output_text
    assert final.usage.input_tokens == 4 and final.usage.output_tokens == 3


def test_claude_tool_use_is_a_function_call(client, fakes):
    _, ant = fakes
    ant.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    resp = client.responses.create(model="claude-test", input="Weather?", tools=[WEATHER_TOOL])
    call = resp.output[-1]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}
    assert ant.last_request.body["tools"][0]["name"] == "get_weather"


# -- conversation state ---------------------------------------------------------------------


def test_previous_response_id_continues_on_another_provider(client, fakes):
    oai, ant = fakes
    first = client.responses.create(model="gpt-test", input="My name is Ada.")
    second = client.responses.create(model="claude-test", input="What is my name?",
                                     previous_response_id=first.id, instructions="Be kind.")
    assert second.previous_response_id == first.id
    assert second.output_text == "Hello from fake-anthropic"
    sent = ant.last_request.body
    assert sent["system"] == "Be kind."
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "My name is Ada."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello from fake-openai"}]},
        {"role": "user", "content": [{"type": "text", "text": "What is my name?"}]}]
    # and back to the OpenAI model, a third turn
    client.responses.create(model="gpt-test", input="Thanks", previous_response_id=second.id)
    assert [m["role"] for m in oai.last_request.body["messages"]] == [
        "user", "assistant", "user", "assistant", "user"]


def test_function_call_output_continues_previous_response(client, fakes):
    oai, ant = fakes
    oai.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"},
                                  "id": "call_9"}]))
    first = client.responses.create(model="gpt-test", input="Weather?", tools=[WEATHER_TOOL])
    second = client.responses.create(
        model="claude-test", previous_response_id=first.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": "call_9", "output": "Rain"}])
    assert second.output_text == "Hello from fake-anthropic"
    msgs = ant.last_request.body["messages"]
    assert msgs[1]["content"][0]["type"] == "tool_use" and msgs[1]["content"][0]["id"] == "call_9"
    assert msgs[2]["content"][0] == {"type": "tool_result", "tool_use_id": "call_9",
                                     "content": "Rain"}


def test_retrieve_delete_and_input_items(client, gateway):
    resp = client.responses.create(model="gpt-test", input=[
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "input_text", "text": "two"}]}])
    got = client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == resp.output_text
    assert got.usage.output_tokens == resp.usage.output_tokens
    items = client.responses.input_items.list(resp.id)
    assert [i.content[0].text for i in items.data] == ["two", "one"]  # newest first
    asc = client.responses.input_items.list(resp.id, order="asc", limit=1)
    assert [i.content[0].text for i in asc.data] == ["one"] and asc.has_more
    assert all(i.type == "message" and i.id.startswith("msg_") for i in items.data)
    other = openai.OpenAI(base_url=gateway.api_url, api_key=gateway.create_key(name="other"),
                          max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(resp.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-test", input="hi", previous_response_id=resp.id)
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError) as exc:
        client.responses.retrieve(resp.id)
    assert exc.value.body["code"] == "response_not_found"


def test_streamed_response_is_stored(client):
    with client.responses.stream(model="claude-test", input="Hi") as stream:
        final = stream.get_final_response()
    got = client.responses.retrieve(final.id)
    assert got.status == "completed" and got.output_text == "Hello from fake-anthropic"


def test_store_false_keeps_nothing(client):
    resp = client.responses.create(model="gpt-test", input="Hi", store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)


def test_retention_purges_old_responses(client, gateway):
    resp = client.responses.create(model="gpt-test", input="Hi")
    store = gateway.gateway.responses
    import asyncio

    assert asyncio.run(store.purge(now() - timedelta(days=1))) == 0
    assert asyncio.run(store.purge(now() + timedelta(seconds=1))) >= 1
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(resp.id)


# -- hosted tools, errors -------------------------------------------------------------------


def test_hosted_tools_are_dropped_and_named(client, fakes):
    oai, _ = fakes
    raw = client.responses.with_raw_response.create(
        model="gpt-test", input="Hi", tools=[{"type": "web_search"}, WEATHER_TOOL])
    assert raw.headers["x-spaceai-dropped"] == "tools.web_search"
    assert raw.parse().tools[0].name == "get_weather"
    assert [t["function"]["name"] for t in oai.last_request.body["tools"]] == ["get_weather"]
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model="gpt-test", input="Hi", tools=[{"type": "web_search"}],
                                tool_choice={"type": "web_search"})
    assert exc.value.body["param"] == "tool_choice"


def test_bad_requests_are_openai_shaped_400s(gateway, key):
    h = {"Authorization": f"Bearer {key}"}
    for body, param in (({"model": "gpt-test"}, "input"),
                        ({"model": "gpt-test", "input": "x", "temperature": 7}, "temperature"),
                        ({"model": "gpt-test", "input": [{"type": "banana"}]}, "input[0].type"),
                        ({"model": "gpt-test", "input": "x", "bogus": 1}, "bogus"),
                        ({"model": "gpt-test", "input": "x", "reasoning": "high"}, "reasoning"),
                        ({"model": "gpt-test", "input": "x", "max_output_tokens": 0},
                         "max_output_tokens"),
                        ({"model": "gpt-test", "input": "x", "tools": [{"type": "custom"}]},
                         "tools[0].type"),
                        ({"model": "gpt-test", "input": [{"role": "user", "content": [
                            {"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0]"),
                        ({"model": "embed-test", "input": "x"}, "model")):
        r = httpx.post(gateway.api_url + "/responses", json=body, headers=h, timeout=30)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param and r.json()["error"]["type"]


def _refusal(gateway, key, body) -> dict:
    r = httpx.post(gateway.api_url + "/responses", json={"model": "gpt-test", **body},
                   headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 400, r.text
    return r.json()["error"]


@pytest.mark.parametrize("kind", ["banana", "item_reference", "computer_call_output"])
def test_an_input_item_of_a_type_not_taken_is_refused_naming_its_type(gateway, key, fakes, kind):
    oai, _ = fakes
    error = _refusal(gateway, key, {"input": [{"role": "user", "content": "hi"},
                                              {"type": kind, "id": "x"}]})
    assert error == {
        "message": f"Invalid value for 'input[1].type': input items of type '{kind}' are not "
                   "supported (supported: message, function_call, function_call_output, "
                   "reasoning).",
        "type": "invalid_request_error", "param": "input[1].type", "code": "unsupported_value"}
    assert not oai.requests


@pytest.mark.parametrize("item,missing", [
    ({"type": "function_call", "name": "get_weather", "arguments": "{}"}, "call_id"),
    ({"type": "function_call", "call_id": "c1", "arguments": "{}"}, "name"),
    ({"type": "function_call_output", "call_id": "c1"}, "output"),
    ({"type": "message", "content": "hi"}, "role"),
    ({"content": "hi"}, "type"),  # neither a type nor a role: no item says what it is
])
def test_an_input_item_missing_a_required_field_is_refused_naming_it(gateway, key, item, missing):
    error = _refusal(gateway, key, {"input": [{"role": "user", "content": "hi"}, item]})
    assert error == {"message": f"Missing required parameter: 'input[1].{missing}'.",
                     "type": "invalid_request_error", "param": f"input[1].{missing}",
                     "code": "missing_required_parameter"}


@pytest.mark.parametrize("item,param,message,code", [
    ({"role": "bot", "content": "hi"}, "input[0].role",
     "Invalid value for 'input[0].role': 'bot'. Supported values are: 'assistant', "
     "'developer', 'system', 'user'.", "invalid_value"),
    ({"role": "user", "content": [{"type": "input_text", "text": 5}]},
     "input[0].content[0].text",
     "Invalid type for 'input[0].content[0].text': expected a string, but got integer.",
     "invalid_type"),
    ({"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]},
     "input[0].content[0]", "Invalid 'input[0].content[0]': only 'image_url' images (an http(s) "
     "or base64 data URL) are supported, not file ids.", "unsupported_value"),
    ({"type": "function_call_output", "call_id": "c1", "output": None}, "input[0].output",
     "Invalid type for 'input[0].output': expected a string or an array, but got null.",
     "invalid_type"),
])
def test_a_bad_field_in_an_input_item_is_refused_naming_it(gateway, key, item, param, message,
                                                          code):
    assert _refusal(gateway, key, {"input": [item]}) == {
        "message": message, "type": "invalid_request_error", "param": param, "code": code}


def test_a_message_without_a_type_is_taken_as_a_message(client, fakes):
    oai, _ = fakes
    resp = client.responses.create(model="gpt-test", input=[
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}])
    assert oai.last_request.body["messages"] == [{"role": "developer", "content": "Be brief."},
                                                 {"role": "user", "content": "Hi"}]
    items = client.responses.input_items.list(resp.id, order="asc").data
    assert [(i.type, i.role, i.content[0].text) for i in items] == [
        ("message", "developer", "Be brief."), ("message", "user", "Hi")]


def test_fields_an_item_does_not_declare_are_ignored(client, fakes):
    """What clients echo back from an earlier response (Codex, the Agents SDK) carries more
    fields than the gateway reads; OpenAI's item shapes grow."""
    oai, _ = fakes
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [
        {"type": "summary_text", "text": "thinking", "extra": 1}],
        "encrypted_content": "opaque", "content": None, "status": None, "new_field": [1]}
    resp = client.responses.create(model="gpt-test", input=[
        {"type": "message", "role": "user", "content": "Weather?", "new_field": True},
        reasoning,
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": [],
                      "logprobs": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city":"Oslo"}', "status": "completed", "parsed_arguments": None,
         "namespace": None},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny",
         "created_by": "someone"}], tools=[WEATHER_TOOL])
    assert oai.last_request.body["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"}]
    items = client.responses.input_items.list(resp.id, order="asc").data
    assert [i.type for i in items] == ["message", "reasoning", "message", "function_call",
                                       "function_call_output"]
    assert items[1].model_dump(exclude_none=True) == {
        k: v for k, v in reasoning.items() if v is not None}  # kept as sent
    assert items[3].id == "fc_1" and items[2].id == "msg_1"


def test_mid_stream_failure_is_response_failed_and_billed(gateway, fakes):
    oai, _ = fakes
    key = gateway.create_key(name="failing")
    oai.script(StreamError(after_chunks=1))
    r = httpx.post(gateway.api_url + "/responses", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "gpt-test", "input": "Hi", "stream": True}, timeout=30)
    events = _events(r.text)
    assert events[-1][0] == "response.failed"
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"]["message"]
    assert failed["output"][0]["content"][0]["text"] == "Hello"
    assert failed["usage"]["output_tokens"] >= 1 and failed["usage"]["cost"] > 0
    assert {k for k, _ in events} <= EVENT_KINDS
    gateway.flush_ledger()
    rows = gateway.usage_rows(key=_key_id(gateway, key))["data"]
    assert len(rows) == 1 and rows[0]["completion_tokens"] >= 1 and rows[0]["cost"] > 0
    assert rows[0]["endpoint"] == "/v1/responses"


def test_upstream_error_and_budget_refusal_are_openai_errors(gateway, fakes):
    oai, _ = fakes
    key = gateway.create_key(name="poor", budget=0.0001)
    poor = openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as exc:
        poor.responses.create(model="gpt-test", input="Hi")
    assert exc.value.body["code"] == "insufficient_quota"
    rich = openai.OpenAI(base_url=gateway.api_url, api_key=gateway.create_key(name="rich"),
                         max_retries=0)
    oai.script(Error(status=400, message="bad stuff"))
    with pytest.raises(openai.BadRequestError):
        rich.responses.create(model="gpt-test", input="Hi")


def test_every_request_is_one_ledger_row(gateway, fakes):
    key = gateway.create_key(name="ledger")
    client = openai.OpenAI(base_url=gateway.api_url, api_key=key, max_retries=0)
    client.responses.create(model="gpt-test", input="Hello there")
    with client.responses.stream(model="claude-test", input="Hi") as stream:
        stream.get_final_response()
    gateway.flush_ledger()
    report = gateway.usage_rows(key=_key_id(gateway, key))
    rows = report["data"]
    assert len(rows) == 2 and {r["endpoint"] for r in rows} == {"/v1/responses"}
    assert {r["model"] for r in rows} == {"gpt-test", "claude-test"}
    expected = (5 * 0.00001 + 3 * 0.00003) + (4 * 0.00002 + 3 * 0.00005)
    assert report["totals"]["cost"] == pytest.approx(expected)


def test_openapi_and_docs_page_list_the_responses_api(gateway):
    paths = httpx.get(gateway.base_url + "/openapi.json", timeout=30).json()["paths"]
    assert "post" in paths["/v1/responses"]
    assert {"get", "delete"} <= set(paths["/v1/responses/{id}"])
    assert "get" in paths["/v1/responses/{id}/input_items"]
    page = httpx.get(gateway.base_url + "/", timeout=30).text
    assert '<section id="responses">' in page and 'href="#responses"' in page
    assert "client.responses.create(" in page and "curl " + gateway.base_url + "/v1/responses" in page


# -- the local SmolLM2 model ----------------------------------------------------------------


def test_local_model_answers_and_streams(client):
    resp = client.responses.create(model="smollm2-135m-instruct", input="Say hello.",
                                   max_output_tokens=8)
    assert resp.output_text and resp.status in ("completed", "incomplete")
    assert 0 < resp.usage.output_tokens <= 8 and resp.usage.input_tokens > 0
    events = list(client.responses.create(model="smollm2-135m-instruct", input="Count: 1, 2,",
                                          max_output_tokens=8, stream=True))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    # cut at 8 tokens, the usual case: response.incomplete (the SDK's stream helper wants
    # response.completed, so the events are read as they are)
    assert events[-1].type in ("response.completed", "response.incomplete")
    final = events[-1].response
    assert text and final.output_text == text
    assert 0 < final.usage.output_tokens <= 8
    follow = client.responses.create(model="smollm2-135m-instruct", input="And again.",
                                     previous_response_id=final.id, max_output_tokens=4)
    assert follow.output_text


def test_input_image_reaches_claude_as_an_image_block(client, fakes):
    _, ant = fakes
    client.responses.create(model="claude-test", input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}])
    blocks = ant.last_request.body["messages"][0]["content"]
    assert blocks[0] == {"type": "text", "text": "What is this?"}
    assert blocks[1]["type"] == "image" and blocks[1]["source"]["media_type"] == "image/png"


def test_x_api_key_header_authenticates(gateway, key):
    r = httpx.post(gateway.api_url + "/responses", headers={"x-api-key": key},
                   json={"model": "gpt-test", "input": "Hi"}, timeout=30)
    assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"]
    r = httpx.post(gateway.api_url + "/responses", json={"model": "gpt-test", "input": "Hi"},
                   timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_old_responses_are_purged_at_start_up(tmp_path, fakes):
    import sqlalchemy as sa

    from spaceai.storage.tables import responses

    oai, _ = fakes
    models = [{"id": "gpt-test", "provider": "openai", "base_url": oai.base_url,
               "api_key": oai.api_key, "capabilities": ["chat"]}]
    with GatewayServer(tmp_path, models=models) as gw:
        client = openai.OpenAI(base_url=gw.api_url, api_key=gw.create_key(), max_retries=0)
        old = client.responses.create(model="gpt-test", input="Hi").id
        fresh = client.responses.create(model="gpt-test", input="Hi").id
        with gw.gateway.engine.begin() as conn:
            conn.execute(sa.update(responses).where(responses.c.id == old).values(
                created_at=now() - timedelta(days=31)))
        key = client.api_key
    with GatewayServer(tmp_path, models=models) as gw:
        client = openai.OpenAI(base_url=gw.api_url, api_key=key, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(old)
        assert client.responses.retrieve(fresh).id == fresh
