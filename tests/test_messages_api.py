"""/v1/messages: the official anthropic SDK pointed at SpaceAI, in front of every kind of model."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from fakes import Error, Reply, StreamError
from support.server import LOCAL_MODEL, GatewayServer

from spaceai.types import GatewayError

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]},
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fakes):
    oai, ant = fakes
    models = [
        {"id": "claude-test", "provider": "anthropic", "upstream_model": "claude-sonnet-4-20250514",
         "base_url": ant.base_url, "api_key": ant.api_key, "capabilities": ["chat"],
         "pricing": {"input": 0.00002, "output": 0.00005}},
        {"id": "gpt-test", "provider": "openai", "upstream_model": "gpt-4o-mini",
         "base_url": oai.base_url, "api_key": oai.api_key, "capabilities": ["chat"],
         "pricing": {"input": 0.00001, "output": 0.00003}},
        {"id": "embed-test", "provider": "openai", "upstream_model": "text-embedding-3-small",
         "base_url": oai.base_url, "api_key": oai.api_key, "capabilities": ["embeddings"]},
        LOCAL_MODEL,
    ]
    with GatewayServer(tmp_path_factory.mktemp("messages"), models=models) as gw:
        yield gw


pytestmark = pytest.mark.usefixtures("fresh_fakes")


@pytest.fixture(scope="module")
def key(gateway):
    return gateway.create_key(name="messages")


@pytest.fixture
def client(gateway, key):
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


def _rows(gateway, key_secret=None, **params):
    gateway.flush_ledger()
    return gateway.usage_rows(**params)


# -- Claude behind a fake Anthropic: native pass-through -----------------------------------


def test_claude_message_passes_through_natively(client, fakes):
    _, ant = fakes
    msg = client.messages.create(model="claude-test", max_tokens=64, system="Be brief.",
                                 messages=[{"role": "user", "content": "Hello there"}])
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == "claude-test"
    assert msg.content[0].text == "Hello from fake-anthropic"
    assert msg.stop_reason == "end_turn"
    # 2 words + 3, plus the system's 2 words + 3
    assert msg.usage.input_tokens == 10 and msg.usage.output_tokens == 3
    sent = ant.last_request.body
    assert sent["model"] == "claude-sonnet-4-20250514" and sent["system"] == "Be brief."


def test_claude_stream_helpers_get_the_final_message(client):
    with client.messages.stream(model="claude-test", max_tokens=64,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from fake-anthropic"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_claude_stop_sequence_reports_the_matched_sequence(client):
    msg = client.messages.create(model="claude-test", max_tokens=64,
                                 stop_sequences=["fake"],
                                 messages=[{"role": "user", "content": "Hi"}])
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "fake"
    assert msg.content[0].text == "Hello from "


def test_claude_tool_use_streams_as_input_json(client, fakes):
    _, ant = fakes
    ant.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]))
    with client.messages.stream(model="claude-test", max_tokens=64, tools=[WEATHER_TOOL],
                                messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    block = final.content[-1]
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"


def test_claude_upstream_error_is_anthropic_shaped(client, fakes):
    _, ant = fakes
    ant.script(Error(status=400, message="messages: bad stuff", type="invalid_request_error"))
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="claude-test", max_tokens=8,
                               messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "invalid_request_error"


def test_claude_mid_stream_failure_is_an_error_event(gateway, key, fakes):
    _, ant = fakes
    ant.script(StreamError(after_chunks=1, type="overloaded_error", message="Overloaded"))
    r = httpx.post(gateway.base_url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "claude-test", "max_tokens": 16, "stream": True,
                         "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    events = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "error"
    assert '"overloaded_error"' in r.text


# -- an OpenAI model behind a fake OpenAI: translated --------------------------------------


def test_openai_model_answers_as_an_anthropic_message(client, fakes):
    oai, _ = fakes
    msg = client.messages.create(model="gpt-test", max_tokens=64, system="Be brief.",
                                 messages=[{"role": "user", "content": "Hello there"}],
                                 extra_body={"temperature": 0.5})
    assert msg.content[0].text == "Hello from fake-openai"
    assert msg.stop_reason == "end_turn" and msg.model == "gpt-test"
    assert msg.id.startswith("msg_")
    sent = oai.last_request.body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.5
    assert msg.usage.input_tokens == 10


def test_openai_model_streams_text_with_anthropic_events(gateway, key):
    r = httpx.post(gateway.base_url + "/v1/messages",
                   headers={"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
                   json={"model": "gpt-test", "max_tokens": 64, "stream": True,
                         "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    assert r.status_code == 200
    events = [line[7:] for line in r.text.splitlines() if line.startswith("event: ")]
    assert events == ["message_start", "content_block_start", "ping", "content_block_delta",
                      "content_block_delta", "content_block_delta", "content_block_stop",
                      "message_delta", "message_stop"]


def test_openai_model_stream_helpers_work_unmodified(client):
    with client.messages.stream(model="gpt-test", max_tokens=64,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from fake-openai" == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3 and final.usage.input_tokens == 4


def test_openai_model_tool_use_and_tool_result_round_trip(client, fakes):
    oai, _ = fakes
    oai.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"},
                                  "id": "call_1"}]))
    msg = client.messages.create(model="gpt-test", max_tokens=64, tools=[WEATHER_TOOL],
                                 tool_choice={"type": "any"},
                                 messages=[{"role": "user", "content": "Weather in Oslo?"}])
    assert msg.stop_reason == "tool_use"
    use = msg.content[-1]
    assert use.type == "tool_use" and use.input == {"city": "Oslo"} and use.id == "call_1"
    sent = oai.last_request.body
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    follow = client.messages.create(
        model="gpt-test", max_tokens=64, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Oslo?"},
                  {"role": "assistant", "content": [u.model_dump() for u in msg.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1",
                                                "content": "Sunny, 21C"}]}])
    assert follow.content[0].text == "Hello from fake-openai"
    sent = oai.last_request.body["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"}


def test_openai_model_tool_use_streams(client, fakes):
    oai, _ = fakes
    oai.script(Reply(tool_calls=[{"name": "get_weather", "arguments": {"city": "Rome"}}]))
    with client.messages.stream(model="gpt-test", max_tokens=64, tools=[WEATHER_TOOL],
                                messages=[{"role": "user", "content": "Weather?"}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use"
    assert final.content[-1].input == {"city": "Rome"}


def test_length_becomes_max_tokens(client):
    msg = client.messages.create(model="gpt-test", max_tokens=2,
                                 messages=[{"role": "user", "content": "Hi"}])
    assert msg.stop_reason == "max_tokens"
    assert msg.content[0].text == "Hello from"


def test_content_filter_becomes_refusal(client, fakes):
    oai, _ = fakes
    oai.script(Reply(text="I can't help with that", finish_reason="content_filter"))
    msg = client.messages.create(model="gpt-test", max_tokens=64,
                                 messages=[{"role": "user", "content": "Hi"}])
    assert msg.stop_reason == "refusal"


def test_openai_mid_stream_failure_is_an_error_event(gateway, key, fakes):
    oai, _ = fakes
    oai.script(StreamError(after_chunks=1))
    r = httpx.post(gateway.base_url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "gpt-test", "max_tokens": 16, "stream": True,
                         "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    assert r.status_code == 200
    last = r.text.strip().split("\n\n")[-1]
    assert last.startswith("event: error\n")
    assert '"type":"error"' in last


def test_openai_upstream_rate_limit_is_anthropic_rate_limit_error(client, fakes):
    oai, _ = fakes
    oai.script(*[Error(status=429, message="slow down")] * 3)
    with pytest.raises(anthropic.RateLimitError) as exc:
        client.messages.create(model="gpt-test", max_tokens=8,
                               messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.body["error"]["type"] == "rate_limit_error"


# -- the local SmolLM2 model ------------------------------------------------------------------


def test_local_model_answers_and_streams(client):
    msg = client.messages.create(model="smollm2-135m-instruct", max_tokens=8,
                                 messages=[{"role": "user", "content": "Say hello."}])
    assert msg.content and msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert 0 < msg.usage.output_tokens <= 8 and msg.usage.input_tokens > 0
    with client.messages.stream(model="smollm2-135m-instruct", max_tokens=8,
                                messages=[{"role": "user", "content": "Count: 1, 2,"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert 0 < final.usage.output_tokens <= 8


def test_local_model_max_tokens_stop_reason(client):
    msg = client.messages.create(model="smollm2-135m-instruct", max_tokens=2,
                                 messages=[{"role": "user", "content": "Write a long poem."}])
    assert msg.stop_reason == "max_tokens"


# -- errors are Anthropic-shaped -------------------------------------------------------------


def _post(gateway, body, headers):
    return httpx.post(gateway.base_url + "/v1/messages", json=body, headers=headers, timeout=30)


def _assert_anthropic_error(r, status, etype):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == etype
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_wrong_key_is_an_authentication_error(gateway):
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-space-wrong",
                                 max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as exc:
        client.messages.create(model="gpt-test", max_tokens=8,
                               messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.body["error"]["type"] == "authentication_error"
    r = _post(gateway, {"model": "gpt-test", "max_tokens": 8, "messages": []}, {})
    _assert_anthropic_error(r, 401, "authentication_error")


def test_missing_max_tokens_is_invalid_request(gateway, key):
    r = _post(gateway, {"model": "gpt-test", "messages": [{"role": "user", "content": "Hi"}]},
              {"x-api-key": key})
    _assert_anthropic_error(r, 400, "invalid_request_error")
    assert "max_tokens" in r.json()["error"]["message"]


def test_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as exc:
        client.messages.create(model="no-such-model", max_tokens=8,
                               messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.body["error"]["type"] == "not_found_error"


def test_bad_input_is_never_a_500(gateway, key):
    h = {"x-api-key": key}
    for body in ([1, 2], {"model": "gpt-test", "max_tokens": 8, "messages": "hi"},
                 {"model": "gpt-test", "max_tokens": 8,
                  "messages": [{"role": "robot", "content": "x"}]},
                 {"model": "gpt-test", "max_tokens": 8, "temperature": 7,
                  "messages": [{"role": "user", "content": "x"}]},
                 {"model": "embed-test", "max_tokens": 8,
                  "messages": [{"role": "user", "content": "x"}]}):
        _assert_anthropic_error(_post(gateway, body, h), 400, "invalid_request_error")
    r = httpx.post(gateway.base_url + "/v1/messages", content=b"{not json", headers=h, timeout=30)
    _assert_anthropic_error(r, 400, "invalid_request_error")


def test_model_not_allowed_for_key_is_permission_error(gateway):
    key = gateway.create_key(name="only-local", models=["smollm2-135m-instruct"])
    r = _post(gateway, {"model": "gpt-test", "max_tokens": 8,
                        "messages": [{"role": "user", "content": "Hi"}]}, {"x-api-key": key})
    _assert_anthropic_error(r, 403, "permission_error")


def test_limit_refusal_is_anthropic_shaped(gateway, key, monkeypatch):
    async def refuse(*args, **kwargs):
        raise GatewayError(429, "Rate limit reached: 1 request per minute.",
                           type="rate_limit_error", code="rate_limit_exceeded",
                           headers={"retry-after": "7"})

    monkeypatch.setattr(gateway.gateway.control, "admit", refuse)
    r = _post(gateway, {"model": "gpt-test", "max_tokens": 8,
                        "messages": [{"role": "user", "content": "Hi"}]}, {"x-api-key": key})
    _assert_anthropic_error(r, 429, "rate_limit_error")
    assert r.headers["retry-after"] == "7"


# -- metering -------------------------------------------------------------------------------


def test_messages_are_metered_like_chat_completions(gateway):
    key = gateway.create_key(name="metered", budget=10)
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    r = httpx.post(gateway.base_url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "gpt-test", "max_tokens": 64,
                         "messages": [{"role": "user", "content": "Hello there"}]}, timeout=30)
    assert r.status_code == 200
    # 5 prompt tokens x 0.00001 + 3 completion x 0.00003
    assert r.headers["x-spaceai-cost"] == "0.00014"
    client.messages.create(model="claude-test", max_tokens=64,
                           messages=[{"role": "user", "content": "Hello there"}])
    with client.messages.stream(model="claude-test", max_tokens=64,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        stream.get_final_message()
    with client.messages.stream(model="gpt-test", max_tokens=64,
                                messages=[{"role": "user", "content": "Hi"}]) as stream:
        stream.get_final_message()
    gateway.flush_ledger()
    key_id = httpx.get(gateway.base_url + "/v1/key", headers={"Authorization": f"Bearer {key}"},
                       timeout=30).json()["id"]
    report = gateway.usage_rows(key=key_id)
    totals = report["totals"]
    assert totals["requests"] == 4
    # gpt: 5+3, claude: 5+3, claude stream: 4+3, gpt stream: 4+3
    assert totals["prompt_tokens"] == 18 and totals["completion_tokens"] == 12
    expected = (5 * 0.00001 + 3 * 0.00003) + (5 * 0.00002 + 3 * 0.00005) \
        + (4 * 0.00002 + 3 * 0.00005) + (4 * 0.00001 + 3 * 0.00003)
    assert totals["cost"] == pytest.approx(expected)
    spend = httpx.get(gateway.base_url + "/v1/key", headers={"x-api-key": key,
                      "Authorization": f"Bearer {key}"}, timeout=30).json()["spend"]
    assert spend == pytest.approx(expected)


def test_count_tokens_answers_input_tokens(gateway, key):
    r = httpx.post(gateway.base_url + "/v1/messages/count_tokens", headers={"x-api-key": key},
                   json={"model": "gpt-test", "system": "Be brief.",
                         "messages": [{"role": "user", "content": "Hello there, how are you?"}]},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["input_tokens"], int) and r.json()["input_tokens"] > 0
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    counted = client.messages.count_tokens(model="smollm2-135m-instruct",
                                           messages=[{"role": "user", "content": "Hello"}])
    assert counted.input_tokens > 0
    r = httpx.post(gateway.base_url + "/v1/messages/count_tokens", headers={"x-api-key": key},
                   json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
                   timeout=30)
    _assert_anthropic_error(r, 404, "not_found_error")


def test_exhausted_budget_is_refused_in_anthropic_shape(gateway):
    key = gateway.create_key(name="poor", budget=0.0001)
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as exc:
        client.messages.create(model="gpt-test", max_tokens=64,
                               messages=[{"role": "user", "content": "Hi"}])
    assert exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "rate_limit_error"
    assert "budget" in exc.value.body["error"]["message"]
    gateway.flush_ledger()
    key_id = httpx.get(gateway.base_url + "/v1/key", headers={"Authorization": f"Bearer {key}"},
                       timeout=30).json()["id"]
    rows = gateway.usage_rows(key=key_id)
    assert rows["totals"]["requests"] == 1 and rows["totals"]["cost"] == 0


def test_wrong_method_and_unknown_subpath_are_anthropic_shaped(gateway, key):
    r = httpx.get(gateway.base_url + "/v1/messages", headers={"x-api-key": key}, timeout=30)
    _assert_anthropic_error(r, 405, "invalid_request_error")
    r = httpx.post(gateway.base_url + "/v1/messages/batches", headers={"x-api-key": key},
                   json={}, timeout=30)
    _assert_anthropic_error(r, 404, "not_found_error")
