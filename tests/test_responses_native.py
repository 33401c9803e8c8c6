"""/v1/responses passed through natively to an OpenAI upstream (catalog ``responses_api:
native``), through the provider interface, with the gateway keeping the conversation."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from fakes import Reply, StreamError
from support.server import GatewayServer


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fakes):
    oai, ant = fakes
    models = [
        {"id": "gpt-native", "provider": "openai", "upstream_model": "gpt-4o-mini",
         "base_url": oai.base_url, "api_key": oai.api_key, "capabilities": ["chat"],
         "pricing": {"input": 0.00001, "output": 0.00003}, "max_retries": 0,
         "responses_api": "native"},
        {"id": "claude-test", "provider": "anthropic", "upstream_model": "claude-sonnet-4-20250514",
         "base_url": ant.base_url, "api_key": ant.api_key, "capabilities": ["chat"],
         "pricing": {"input": 0.00002, "output": 0.00005}, "max_retries": 0},
    ]
    with GatewayServer(tmp_path_factory.mktemp("native"), models=models) as gw:
        yield gw


pytestmark = pytest.mark.usefixtures("fresh_fakes")


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.api_url, api_key=gateway.create_key(name="native"),
                         max_retries=0)


def test_native_model_gets_the_body_as_it_is(client, fakes):
    oai, _ = fakes
    raw = client.responses.with_raw_response.create(
        model="gpt-native", instructions="Be brief.", input="Hello there",
        tools=[{"type": "web_search"}])
    resp = raw.parse()
    assert "x-spaceai-dropped" not in raw.headers  # a native upstream runs hosted tools
    assert oai.last_request.path == "/v1/responses"
    sent = oai.last_request.body
    assert sent["model"] == "gpt-4o-mini" and sent["store"] is False
    assert sent["tools"] == [{"type": "web_search"}] and sent["instructions"] == "Be brief."
    assert resp.output_text == "Hello from fake-openai" and resp.model == "gpt-native"
    assert not resp.id.startswith("resp_fake")
    # input 2 words + 3, instructions 2 words + 3
    assert resp.usage.input_tokens == 10 and resp.usage.output_tokens == 3
    cost = 10 * 0.00001 + 3 * 0.00003
    assert resp.usage.model_extra["cost"] == pytest.approx(cost)
    assert float(raw.headers["x-spaceai-cost"]) == pytest.approx(cost)


def test_native_stream_is_relabelled_and_metered(client, fakes):
    oai, _ = fakes
    oai.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}]))
    with client.responses.stream(model="gpt-native", input="Weather?", tools=[{
            "type": "function", "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]) as s:
        events = list(s)
        final = s.get_final_response()
    assert events[0].type == "response.created" and events[0].response.model == "gpt-native"
    assert final.output[0].type == "function_call"
    assert json.loads(final.output[0].arguments) == {"city": "Oslo"}
    assert final.usage.model_extra["cost"] > 0 and final.model == "gpt-native"
    assert client.responses.retrieve(final.id).output[0].name == "get_weather"


def test_native_conversation_continues_on_claude_and_back(client, fakes):
    oai, ant = fakes
    first = client.responses.create(model="gpt-native", input="My name is Ada.")
    second = client.responses.create(model="claude-test", input="Name?",
                                     previous_response_id=first.id)
    assert [m["role"] for m in ant.last_request.body["messages"]] == ["user", "assistant", "user"]
    client.responses.create(model="gpt-native", input="Thanks", previous_response_id=second.id)
    sent = oai.last_request.body
    assert "previous_response_id" not in sent
    assert [(i.get("role"), "id" in i) for i in sent["input"]] == [
        ("user", False), ("assistant", False), ("user", False), ("assistant", False),
        ("user", False)]


def test_native_mid_stream_error_ends_with_an_error_event_and_is_billed(gateway, fakes):
    oai, _ = fakes
    key = gateway.create_key(name="native-failing")
    oai.script(StreamError(after_chunks=1, message="boom"))
    r = httpx.post(gateway.api_url + "/responses", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "gpt-native", "input": "Hi", "stream": True}, timeout=30)
    frames = [f for f in r.text.split("\n\n") if f]
    last = json.loads(frames[-1].split("\n")[1][6:])
    assert last["type"] == "error" and "boom" in last["message"]
    seqs = [json.loads(f.split("\n")[1][6:])["sequence_number"] for f in frames]
    assert seqs == sorted(set(seqs))
    key_id = httpx.get(gateway.api_url + "/key", headers={"Authorization": f"Bearer {key}"},
                       timeout=30).json()["id"]
    gateway.flush_ledger()
    rows = gateway.usage_rows(key=key_id)["data"]
    assert len(rows) == 1 and rows[0]["completion_tokens"] == 1 and rows[0]["cost"] > 0
    assert rows[0]["endpoint"] == "/v1/responses" and rows[0]["status"] != "ok"
