"""Nothing silently lost in translation: structured output, tools and parameters per model.

A request is honoured on the model it reaches (Claude through a forced tool, OpenAI as it is,
the local model through llama.cpp's grammar-constrained sampling), or refused with a 400 that
names what cannot be honoured, in the shape of the surface it came through.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from conftest import anthropic_model
from support.server import GatewayServer

from spaceai.catalog import Catalog

PERSON = {"type": "object", "properties": {"name": {"type": "string"},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
PERSON_FORMAT = {"type": "json_schema",
                 "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object",
                                          "properties": {"city": {"type": "string"}}}}}]
LOCAL = "smollm2-135m-instruct"
USER = [{"role": "user", "content": "Extract the person: John is 30 years old."}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from fakes.upstream import FakeAnthropic, FakeOpenAI
    from support.backends import priced_model

    fa, fo = FakeAnthropic(), FakeOpenAI()
    fa.start_in_thread()
    fo.start_in_thread()
    models = [
        anthropic_model(fa),
        anthropic_model(fa, id="claude-lenient", drop_unsupported=True),
        anthropic_model(fa, id="claude-native-so", structured_output="output_config"),
        priced_model(fo, "gpt-4o"),
        priced_model(fo, "gpt-strict", strict_params=True),
        priced_model(fo, "o3-mini"),
        priced_model(fo, "gpt-flaky", fallbacks=[LOCAL]),
        {"id": LOCAL, "provider": "local", "capabilities": ["chat", "completions"],
         "pricing": {"input": 0, "output": 0}},
    ]
    with GatewayServer(tmp_path_factory.mktemp("so"), models=models) as server:
        server.fa, server.fo = fa, fo
        yield server
    fa.stop_thread()
    fo.stop_thread()


@pytest.fixture(scope="module")
def key(gw):
    return gw.create_key()


@pytest.fixture(scope="module")
def client(gw, key):
    return openai.OpenAI(base_url=gw.api_url, api_key=key, max_retries=0)


def person(text: str) -> dict:
    obj = json.loads(text)
    assert set(obj) == {"name", "age"} and isinstance(obj["name"], str)
    assert isinstance(obj["age"], int)
    return obj


# -- structured output ------------------------------------------------------------------------


def test_claude_json_schema_is_a_forced_tool_and_comes_back_as_json_text(gw, client):
    reply = client.chat.completions.create(model="claude-3.5-sonnet", messages=USER,
                                           response_format=PERSON_FORMAT)
    sent = gw.fa.requests[-1].body
    assert sent["tools"] == [{"name": "person", "description": sent["tools"][0]["description"],
                              "input_schema": PERSON}]
    assert sent["tool_choice"] == {"type": "tool", "name": "person"}
    message = reply.choices[0].message
    person(message.content)
    assert message.tool_calls is None and reply.choices[0].finish_reason == "stop"


def test_claude_json_schema_streams_as_json_text(gw, client):
    stream = client.chat.completions.create(model="claude-3.5-sonnet", messages=USER,
                                            response_format=PERSON_FORMAT, stream=True)
    text, finish, calls = "", None, []
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            calls += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    person(text)
    assert finish == "stop" and not calls


def test_claude_with_output_config_gets_anthropics_own_structured_output(gw, client):
    reply = client.chat.completions.create(model="claude-native-so", messages=USER,
                                           response_format=PERSON_FORMAT)
    sent = gw.fa.requests[-1].body
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": PERSON}}
    assert "tools" not in sent and "tool_choice" not in sent
    person(reply.choices[0].message.content)
    stream = client.chat.completions.create(model="claude-native-so", messages=USER,
                                            response_format=PERSON_FORMAT, stream=True)
    person("".join(c.choices[0].delta.content or "" for c in stream if c.choices))


def test_claude_json_schema_that_is_not_an_object_is_unwrapped(gw, client):
    fmt = {"type": "json_schema", "json_schema": {"name": "tags", "schema": {
        "type": "array", "items": {"type": "string"}}}}
    reply = client.chat.completions.create(model="claude-3.5-sonnet", messages=USER,
                                           response_format=fmt)
    assert isinstance(json.loads(reply.choices[0].message.content), list)
    stream = client.chat.completions.create(model="claude-3.5-sonnet", messages=USER,
                                            response_format=fmt, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert isinstance(json.loads(text), list)


def test_claude_json_object_is_a_json_object(gw, client):
    reply = client.chat.completions.create(model="claude-3.5-sonnet", messages=USER,
                                           response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_claude_with_tools_and_a_schema_may_call_a_tool_or_answer(gw, client):
    client.chat.completions.create(model="claude-3.5-sonnet", messages=USER, tools=TOOLS,
                                   response_format=PERSON_FORMAT)
    sent = gw.fa.requests[-1].body
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "person"]
    assert sent["tool_choice"] == {"type": "any"}


def test_responses_text_format_on_claude_is_json_output_text(gw, client):
    resp = client.responses.create(model="claude-3.5-sonnet", input=USER[0]["content"],
                                   text={"format": {"type": "json_schema", "name": "person",
                                                    "schema": PERSON, "strict": True}})
    person(resp.output_text)
    assert gw.fa.requests[-1].body["tool_choice"] == {"type": "tool", "name": "person"}


def test_openai_passes_response_format_through(gw, client):
    reply = client.chat.completions.create(model="gpt-4o", messages=USER,
                                           response_format=PERSON_FORMAT)
    assert gw.fo.requests[-1].body["response_format"] == PERSON_FORMAT
    person(reply.choices[0].message.content)


def test_local_model_answers_valid_json_for_the_schema(client):
    reply = client.chat.completions.create(model=LOCAL, messages=USER, temperature=0,
                                           max_tokens=120, response_format=PERSON_FORMAT)
    person(reply.choices[0].message.content)
    stream = client.chat.completions.create(model=LOCAL, messages=USER, temperature=0,
                                            max_tokens=120, response_format=PERSON_FORMAT,
                                            stream=True)
    person("".join(c.choices[0].delta.content or "" for c in stream if c.choices))


def test_local_model_json_object_starts_a_json_object(client):
    reply = client.chat.completions.create(
        model=LOCAL, messages=[{"role": "user", "content": "Reply with an empty JSON object."}],
        temperature=0, max_tokens=60, response_format={"type": "json_object"})
    assert reply.choices[0].message.content.lstrip().startswith("{")


# -- what a model cannot honour: a 400 naming it, on every surface ----------------------------


def test_tools_on_the_local_model_are_refused_naming_tools_on_chat(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=LOCAL, messages=USER, tools=TOOLS,
                                       tool_choice="required")
    assert e.value.body["param"] == "tools" and "tools" in e.value.body["message"]
    assert e.value.body["type"] == "invalid_request_error"


def test_tools_on_the_local_model_are_refused_naming_tools_on_responses(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=LOCAL, input="hi", tools=[
            {"type": "function", "name": "get_weather", "parameters": TOOLS[0]["function"][
                "parameters"]}])
    assert e.value.body["param"] == "tools"


def test_tools_on_the_local_model_are_refused_in_anthropic_shape_on_messages(gw, key):
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model=LOCAL, max_tokens=20, messages=USER, tools=[
            {"name": "get_weather", "input_schema": {"type": "object"}}])
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "tools" in e.value.body["error"]["message"]


def test_images_on_the_local_model_are_refused_naming_the_part(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=LOCAL, messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is it?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    assert e.value.body["param"] == "messages[0].content[1]"


def test_a_parameter_claude_cannot_honour_is_refused_naming_it(gw, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude-3.5-sonnet", messages=USER, seed=7)
    assert e.value.body["param"] == "seed" and "drop_unsupported" in e.value.body["message"]


def test_an_unknown_parameter_is_refused_on_claude_and_on_messages(gw, client, key):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude-3.5-sonnet", messages=USER,
                                       extra_body={"repetition_penalty": 1.1})
    assert e.value.body["param"] == "repetition_penalty"


def test_drop_unsupported_drops_and_names_them_in_the_header(gw, key):
    r = httpx.post(f"{gw.api_url}/chat/completions", headers={"Authorization": f"Bearer {key}"},
                   json={"model": "claude-lenient", "messages": USER, "seed": 3,
                         "repetition_penalty": 1.1}, timeout=30)
    assert r.status_code == 200, r.text
    assert set(r.headers["x-spaceai-dropped"].split(",")) == {"seed", "repetition_penalty"}
    sent = gw.fa.requests[-1].body
    assert "seed" not in sent and "repetition_penalty" not in sent


def test_unknown_parameters_reach_openai_compatible_upstreams_unchanged(gw, client):
    client.chat.completions.create(model="gpt-4o", messages=USER,
                                   extra_body={"repetition_penalty": 1.1, "min_p": 0.05})
    sent = gw.fo.requests[-1].body
    assert sent["repetition_penalty"] == 1.1 and sent["min_p"] == 0.05


def test_legacy_completions_forward_unknown_parameters_and_the_local_model_refuses_them(
        gw, client):
    client.completions.create(model="gpt-4o", prompt="Once", max_tokens=5,
                              extra_body={"repetition_penalty": 1.1})
    assert gw.fo.requests[-1].body["repetition_penalty"] == 1.1
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=LOCAL, prompt="Once", max_tokens=5,
                                  extra_body={"repetition_penalty": 1.1})
    assert e.value.body["param"] == "repetition_penalty"


def test_strict_params_refuses_unknown_parameters_naming_them(gw, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-strict", messages=USER,
                                       extra_body={"repetition_penalty": 1.1})
    assert e.value.body["param"] == "repetition_penalty"
    assert e.value.body["code"] == "unknown_parameter"


def test_a_fallback_that_cannot_honour_the_request_is_skipped(gw, client):
    from fakes.upstream import Error

    gw.fo.script(Error(status=500, message="boom"))
    with pytest.raises(openai.APIStatusError) as e:  # not the local model's 400 about tools
        client.chat.completions.create(model="gpt-flaky", messages=USER, tools=TOOLS)
    assert e.value.status_code >= 500
    gw.fo.script(Error(status=500, message="boom"))
    reply = client.chat.completions.create(model="gpt-flaky", messages=USER, max_tokens=4)
    assert reply.model == LOCAL


# -- sampling defaults come from the model ----------------------------------------------------


def test_reasoning_model_gets_no_temperature_unless_the_client_sent_one(gw, client):
    client.chat.completions.create(model="o3-mini", messages=USER, max_tokens=50)
    sent = gw.fo.requests[-1].body
    assert "temperature" not in sent
    assert sent["max_completion_tokens"] == 50 and "max_tokens" not in sent
    client.chat.completions.create(model="o3-mini", messages=USER, temperature=1)
    assert gw.fo.requests[-1].body["temperature"] == 1


def test_other_models_keep_the_seed_default_temperature(gw, client):
    client.chat.completions.create(model="gpt-4o", messages=USER, max_tokens=50)
    sent = gw.fo.requests[-1].body
    assert sent["temperature"] == 0.7 and sent["max_tokens"] == 50


# -- capabilities in the catalog and /v1/models ----------------------------------------------


def test_models_list_their_capabilities(client):
    models = {m.id: m.model_dump() for m in client.models.list()}
    assert models["gpt-4o"]["capabilities"] == ["chat", "completions", "tools", "json_schema",
                                                "vision"]
    assert "reasoning" in models["o3-mini"]["capabilities"]
    assert models[LOCAL]["capabilities"] == ["chat", "completions", "json_schema"]
    assert models["claude-3.5-sonnet"]["max_output_tokens"] == 1024


def test_catalog_capabilities_default_per_provider_and_are_overridable():
    catalog = Catalog.from_dicts([
        {"id": "a", "provider": "openai"},
        {"id": "b", "provider": "local", "tools": True, "json_schema": False},
        {"id": "c", "provider": "openai", "upstream_model": "gpt-5-mini",
         "defaults": {"temperature": 1}},
        {"id": "d", "provider": "anthropic", "capabilities": ["chat", "reasoning"]},
    ])
    a, b, c, d = (catalog.get(x) for x in "abcd")
    assert a.tools and a.json_schema and not a.reasoning
    assert a.sampling_defaults == {"temperature": 0.7} and a.max_tokens_param == "max_tokens"
    assert b.tools and not b.json_schema
    assert c.reasoning and c.sampling_defaults == {"temperature": 1}
    assert c.max_tokens_param == "max_completion_tokens"
    assert d.reasoning and d.sampling_defaults == {}


# -- fit, without a server --------------------------------------------------------------------


def _fit(provider: str, params: dict, **entry):
    from spaceai.providers.fit import fit
    from spaceai.types import ChatRequest

    model = Catalog.from_dicts([{"id": "m", "provider": provider, **entry}]).get("m")
    return fit(ChatRequest(model="m", messages=list(USER), params=dict(params)), model)


def test_hints_that_change_no_answer_are_accepted_by_translated_providers():
    hints = {"user": "u", "metadata": {"a": "b"}, "store": True, "service_tier": "auto",
             "prompt_cache_key": "k", "safety_identifier": "s", "reasoning_effort": "low"}
    for provider in ("anthropic", "local"):
        assert _fit(provider, hints).dropped == []


def test_neutral_values_ask_for_nothing_and_pass():
    assert _fit("anthropic", {"n": 1, "logprobs": False, "presence_penalty": 0}).dropped == []


def test_reasoning_effort_on_a_reasoning_claude_is_refused_not_ignored():
    from spaceai.types import GatewayError

    with pytest.raises(GatewayError) as e:
        _fit("anthropic", {"reasoning_effort": "high"}, reasoning=True)
    assert e.value.param == "reasoning_effort"


def test_legacy_completions_keep_max_tokens_on_reasoning_models():
    from spaceai.providers.fit import fit
    from spaceai.types import ChatRequest

    model = Catalog.from_dicts([{"id": "o3", "provider": "openai"}]).get("o3")
    req = ChatRequest(model="o3", messages=[], params={"max_tokens": 5}, prompt="hi")
    assert fit(req, model).req.params == {"max_tokens": 5}


def test_docs_page_and_openapi_say_what_each_model_honours(gw):
    page = httpx.get(gw.base_url + "/", timeout=30).text
    assert '<span class="chip">json_schema</span>' in page
    assert 'id="capabilities"' in page and "x-spaceai-dropped" in page
    spec = httpx.get(gw.base_url + "/openapi.json", timeout=30).json()
    caps = spec["components"]["schemas"]["Model"]["properties"]["capabilities"]
    assert {"tools", "json_schema", "vision", "reasoning"} <= set(caps["items"]["enum"])
    assert spec["components"]["schemas"]["ChatCompletionRequest"]["additionalProperties"]
