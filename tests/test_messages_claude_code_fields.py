"""/v1/messages takes everything current Claude Code sends, on every kind of model (official
``anthropic`` SDK as the client): ``role: system`` entries in ``messages``, ``thinking``,
``context_management``, ``output_config``, ``cache_control``, ``?beta=true`` and the
``anthropic-beta`` / ``anthropic-version`` headers; plus ``request-id``, HEAD on GET routes,
``x-api-key`` everywhere and ``count_tokens`` that is never a fake."""

from __future__ import annotations

import anthropic
import httpx
import pytest
from fakes import Reply
from support.backends import chat_models
from support.server import ADMIN_KEY, LOCAL_MODEL, GatewayServer

from spaceai.api.app import PREFIX_ROUTES, ROUTES

BASH_TOOL = {"name": "Bash", "description": "Run a shell command",
             "input_schema": {"type": "object", "properties": {"command": {"type": "string"}},
                              "required": ["command"]},
             "cache_control": {"type": "ephemeral"}}
DEFERRED_TOOL = {"name": "WebFetch", "description": "Fetch a URL", "defer_loading": True,
                 "input_schema": {"type": "object", "properties": {"url": {"type": "string"}}}}
# what Claude Code 2.1 sends besides messages
CLAUDE_CODE_FIELDS = {
    "thinking": {"type": "adaptive", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "metadata": {"user_id": '{"device_id":"' + "ab" * 32 + '","account_uuid":"",'
                            '"session_id":"f2e669c9-9fb5-492b-9b29-433cf690e954"}'},
}
SYSTEM = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.332;"},
          {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}]
MESSAGES = [
    {"role": "user", "content": [{"type": "text", "text": "say hi",
                                  "cache_control": {"type": "ephemeral"}}]},
    {"role": "system", "content": [{"type": "text", "text": "First reminder."}]},
    {"role": "system", "content": "Second reminder."},
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fakes):
    oai, ant = fakes
    models = [
        {"id": "claude-test", "provider": "anthropic", "upstream_model": "claude-sonnet-4-6",
         "base_url": ant.base_url, "api_key": ant.api_key, "capabilities": ["chat"],
         "pricing": {"input": 0.000003, "output": 0.000015}, "max_retries": 0},
        chat_models(oai, ant)[0],
        LOCAL_MODEL,
    ]
    with GatewayServer(tmp_path_factory.mktemp("cc-fields"), models=models) as gw:
        yield gw


pytestmark = pytest.mark.usefixtures("fresh_fakes")


@pytest.fixture(scope="module")
def key(gateway):
    return gateway.create_key(name="cc-fields")


@pytest.fixture
def client(gateway, key):
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


# -- role: system entries inside messages ------------------------------------------------------


def test_system_entries_are_folded_into_system_in_order_for_claude(client, fakes):
    _, ant = fakes
    msg = client.beta.messages.create(model="claude-test", max_tokens=64, system=SYSTEM,
                                      messages=MESSAGES, **CLAUDE_CODE_FIELDS)
    assert msg.content[0].text == "Hello from fake-anthropic"
    sent = ant.requests_to("/v1/messages")[-1].body
    assert [m["role"] for m in sent["messages"]] == ["user"]
    assert sent["system"] == SYSTEM + [{"type": "text", "text": "First reminder."},
                                       {"type": "text", "text": "Second reminder."}]
    # everything else reaches Claude as the client sent it
    for name, value in CLAUDE_CODE_FIELDS.items():
        assert sent[name] == value
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_system_string_and_entries_fold_into_blocks(client, fakes):
    _, ant = fakes
    client.messages.create(model="claude-test", max_tokens=64, system="Be brief.",
                           messages=MESSAGES)
    sent = ant.requests_to("/v1/messages")[-1].body
    assert [b["text"] for b in sent["system"]] == ["Be brief.", "First reminder.",
                                                   "Second reminder."]


def test_system_entries_stream_to_claude(client, fakes):
    _, ant = fakes
    with client.beta.messages.stream(model="claude-test", max_tokens=64, system=SYSTEM,
                                     messages=MESSAGES, **CLAUDE_CODE_FIELDS) as stream:
        assert stream.get_final_message().content[0].text == "Hello from fake-anthropic"
    assert len(ant.requests_to("/v1/messages")[-1].body["system"]) == 4


def test_system_entries_are_translated_in_place_for_openai(client, fakes):
    oai, _ = fakes
    msg = client.beta.messages.create(model="gpt-test", max_tokens=64, system=SYSTEM,
                                      messages=MESSAGES, tools=[BASH_TOOL], **CLAUDE_CODE_FIELDS)
    assert msg.content[0].text == "Hello from fake-openai"
    sent = oai.requests_to("/v1/chat/completions")[-1].body
    assert [(m["role"], m["content"] if m["role"] == "system" else None)
            for m in sent["messages"]] == [
        ("system", "x-anthropic-billing-header: cc_version=2.1.332;\n\nYou are Claude Code."),
        ("user", None), ("system", "First reminder."), ("system", "Second reminder.")]
    # hints (thinking, effort, context editing, cache_control) leave no trace upstream
    assert set(sent) <= {"model", "messages", "max_tokens", "temperature", "tools", "user",
                         "stream", "stream_options"}
    assert len(sent["user"]) <= 64  # Claude Code's JSON user_id, hashed for OpenAI's field
    assert "cache_control" not in str(sent)


def test_claude_code_fields_stream_on_the_local_model(client):
    with client.beta.messages.stream(model="smollm2-135m-instruct", max_tokens=5,
                                     messages=MESSAGES[:2], **CLAUDE_CODE_FIELDS) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens >= 1 and final.stop_reason in ("end_turn", "max_tokens")


def test_thinking_with_budget_is_accepted_on_openai_models(client):
    msg = client.messages.create(model="gpt-test", max_tokens=2048, messages=MESSAGES[:1],
                                 thinking={"type": "enabled", "budget_tokens": 2047})
    assert [b.type for b in msg.content] == ["text"]


def test_output_format_becomes_response_format(client, fakes):
    oai, _ = fakes
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client.messages.create(model="gpt-test", max_tokens=64, messages=MESSAGES[:1],
                           output_config={"effort": "low",
                                          "format": {"type": "json_schema", "schema": schema}})
    sent = oai.requests_to("/v1/chat/completions")[-1].body
    assert sent["response_format"]["json_schema"]["schema"] == schema


# -- tools -----------------------------------------------------------------------------------------


def test_deferred_tools_reach_openai_only_once_loaded(client, fakes):
    oai, _ = fakes
    client.messages.create(model="gpt-test", max_tokens=64, messages=MESSAGES[:1],
                           tools=[BASH_TOOL, DEFERRED_TOOL])
    sent = oai.requests_to("/v1/chat/completions")[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["Bash"]
    # a tool search result loads it (a tool_reference block, as with Anthropic's tool search)
    history = [
        {"role": "user", "content": "fetch it"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                           "name": "ToolSearch",
                                           "input": {"query": "select:WebFetch"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "tool_reference",
                                                   "tool_name": "WebFetch"}]}]},
    ]
    client.beta.messages.create(model="gpt-test", max_tokens=64, messages=history,
                                tools=[BASH_TOOL, DEFERRED_TOOL])
    sent = oai.requests_to("/v1/chat/completions")[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["Bash", "WebFetch"]
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "toolu_1",
                                    "content": "Tool loaded: WebFetch"}


def test_image_tool_results_reach_openai_as_a_user_image(client, fakes):
    oai, _ = fakes
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}}
    history = [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "Read",
                                           "input": {"file_path": "a.png"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2",
                                      "content": [image]}]},
    ]
    client.messages.create(model="gpt-test", max_tokens=64, messages=history)
    sent = oai.requests_to("/v1/chat/completions")[-1].body["messages"]
    assert sent[-2] == {"role": "tool", "tool_call_id": "toolu_2",
                        "content": "[image attached below]"}
    assert sent[-1]["role"] == "user"
    assert sent[-1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_server_tools_are_refused_for_openai_models_and_passed_to_claude(client, fakes):
    _, ant = fakes
    web_search = {"type": "web_search_20250305", "name": "web_search", "max_uses": 1}
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="gpt-test", max_tokens=64, messages=MESSAGES[:1],
                               tools=[BASH_TOOL, web_search])
    assert exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "invalid_request_error"
    assert "web_search_20250305" in exc.value.body["error"]["message"]
    client.messages.create(model="claude-test", max_tokens=64, messages=MESSAGES[:1],
                           tools=[BASH_TOOL, web_search])
    assert ant.requests_to("/v1/messages")[-1].body["tools"][1] == web_search


def test_documents_pass_to_claude_and_are_refused_for_openai(client, fakes):
    _, ant = fakes
    pdf = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                          "data": "JVBERi0xLjQ="}}
    history = [
        {"role": "user", "content": [pdf, {"type": "text", "text": "summarise"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_3", "name": "Read",
                                           "input": {"file_path": "b.pdf"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3",
                                      "content": [pdf]}]},
    ]
    client.messages.create(model="claude-test", max_tokens=64, messages=history)
    assert ant.requests_to("/v1/messages")[-1].body["messages"] == history
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(model="gpt-test", max_tokens=64, messages=history)
    assert "'document'" in exc.value.body["error"]["message"]


def test_tool_round_trip_through_openai_keeps_claude_code_shapes(client, fakes):
    oai, _ = fakes
    oai.script(Reply(tool_calls=[{"name": "Bash", "arguments": {"command": "echo hi"}}]))
    first = client.beta.messages.create(model="gpt-test", max_tokens=64, messages=MESSAGES,
                                        tools=[BASH_TOOL], **CLAUDE_CODE_FIELDS)
    call = first.content[-1]
    assert first.stop_reason == "tool_use" and call.input == {"command": "echo hi"}
    history = MESSAGES + [
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "",
                                           "signature": "sig"},
                                          {"type": "tool_use", "id": call.id, "name": "Bash",
                                           "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": [{"type": "text", "text": "hi"}],
                                      "cache_control": {"type": "ephemeral"}}]},
    ]
    second = client.beta.messages.create(model="gpt-test", max_tokens=64, messages=history,
                                         tools=[BASH_TOOL], **CLAUDE_CODE_FIELDS)
    assert second.content[0].text == "Hello from fake-openai"
    sent = oai.requests_to("/v1/chat/completions")[-1].body["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "hi"}


# -- headers and query -----------------------------------------------------------------------------


def test_beta_and_version_headers_are_forwarded_to_claude(client, fakes):
    _, ant = fakes
    client.beta.messages.create(model="claude-test", max_tokens=64, messages=MESSAGES,
                                betas=["claude-code-20250219", "context-management-2025-06-27"],
                                extra_headers={"anthropic-version": "2023-06-01"},
                                **CLAUDE_CODE_FIELDS)
    sent = ant.requests_to("/v1/messages")[-1]
    assert sent.headers["anthropic-beta"] == "claude-code-20250219,context-management-2025-06-27"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-api-key"] == ant.api_key
    assert "authorization" not in sent.headers


def test_a_client_version_reaches_claude_and_the_default_is_ours(gateway, key, fakes):
    _, ant = fakes
    body = {"model": "claude-test", "max_tokens": 16, "messages": MESSAGES[:1]}
    r = httpx.post(gateway.base_url + "/v1/messages?beta=true", json=body, timeout=30,
                   headers={"x-api-key": key, "anthropic-version": "not-a-date"})
    assert r.status_code == 400  # the upstream's verdict on that version, Anthropic-shaped
    assert "not-a-date" in r.json()["error"]["message"]
    r = httpx.post(gateway.base_url + "/v1/messages?beta=true", json=body, timeout=30,
                   headers={"x-api-key": key})
    assert r.status_code == 200
    assert ant.requests_to("/v1/messages")[-1].headers["anthropic-version"] == "2023-06-01"


def test_messages_answers_carry_request_id(client, gateway, key):
    raw = client.messages.with_raw_response.create(model="gpt-test", max_tokens=16,
                                                   messages=MESSAGES[:1])
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert raw.headers["request-id"].startswith("req_")
    assert raw.parse()._request_id == raw.headers["request-id"]
    with client.messages.stream(model="claude-test", max_tokens=16,
                                messages=MESSAGES[:1]) as stream:
        assert stream.response.headers["request-id"].startswith("req_")
    # errors too: the id a user quotes when reporting one
    r = httpx.post(gateway.base_url + "/v1/messages", headers={"x-api-key": key},
                   json={"model": "nope", "max_tokens": 1, "messages": MESSAGES[:1]})
    assert r.status_code == 404 and r.headers["request-id"] == r.headers["x-request-id"]
    r = httpx.post(gateway.base_url + "/v1/messages/count_tokens", headers={"x-api-key": key},
                   json={"model": "gpt-test", "messages": MESSAGES[:1]})
    assert r.headers["request-id"].startswith("req_")


# -- HEAD, x-api-key -------------------------------------------------------------------------------


def _get_paths() -> list[str]:
    paths = [p for (m, p) in ROUTES if m == "GET"]
    paths += [p + {"/v1/models/": "gpt-test", "/static/": "docs.css",
                   "/v1/responses/": "{response}", "/console/": "console.js",
                   "/admin/requests/": "req_none/bodies"}[p]
              for (m, p) in PREFIX_ROUTES if m == "GET"]
    return paths


@pytest.mark.parametrize("path", _get_paths())
def test_head_answers_like_get_without_a_body(gateway, key, path):
    headers = {"x-api-key": ADMIN_KEY if path.startswith("/admin") else key}
    if "{response}" in path:  # a stored response of this key
        made = httpx.post(gateway.base_url + "/v1/responses", headers=headers, timeout=30,
                          json={"model": "gpt-test", "input": "hi", "max_output_tokens": 16})
        assert made.status_code == 200, made.text
        path = path.replace("{response}", made.json()["id"])
    get = httpx.get(gateway.base_url + path, headers=headers, timeout=30)
    head = httpx.head(gateway.base_url + path, headers=headers, timeout=30)
    assert get.status_code == 200, get.text
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    if path not in ("/metrics", "/admin/usage"):  # those change between the two calls
        assert int(head.headers["content-length"]) == len(get.content)


def test_head_without_a_key_is_refused_like_get(gateway):
    head = httpx.head(gateway.base_url + "/v1/models", timeout=30)
    assert head.status_code == 401 and head.content == b""
    assert httpx.head(gateway.base_url + "/nope", timeout=30).status_code == 404
    assert httpx.head(gateway.base_url + "/v1/messages", timeout=30).status_code == 405


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/gpt-test", None),
    ("GET", "/v1/key", None),
    ("POST", "/v1/chat/completions",
     {"model": "gpt-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/messages",
     {"model": "gpt-test", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/messages/count_tokens",
     {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}),
    ("POST", "/v1/completions", {"model": "smollm2-135m-instruct", "max_tokens": 2,
                                 "prompt": "hi"}),
])
def test_x_api_key_authenticates_every_endpoint(gateway, key, method, path, body):
    url = gateway.base_url + path
    ok = httpx.request(method, url, headers={"x-api-key": key}, json=body, timeout=60)
    assert ok.status_code == 200, ok.text
    bad = httpx.request(method, url, headers={"x-api-key": "sk-space-wrong"}, json=body,
                        timeout=60)
    assert bad.status_code == 401


def test_x_api_key_authenticates_the_admin_api(gateway):
    r = httpx.get(gateway.base_url + "/admin/keys", headers={"x-api-key": ADMIN_KEY})
    assert r.status_code == 200 and "data" in r.json()
    r = httpx.get(gateway.base_url + "/admin/keys", headers={"x-api-key": "wrong"})
    assert r.status_code == 401


def test_every_keyed_route_takes_x_api_key(gateway, key):
    """Any route added later (say /v1/responses) is held to the same rule."""
    for (method, path) in ROUTES:
        if not path.startswith("/v1/"):
            continue
        r = httpx.request(method, gateway.base_url + path, headers={"x-api-key": key},
                          json={}, timeout=60)
        assert r.status_code != 401, (method, path, r.text)


# -- count_tokens ----------------------------------------------------------------------------------


def test_count_tokens_on_claude_is_the_upstreams_exact_count(client, fakes):
    _, ant = fakes
    counted = client.messages.count_tokens(model="claude-test", system=SYSTEM,
                                           messages=MESSAGES, tools=[BASH_TOOL],
                                           thinking=CLAUDE_CODE_FIELDS["thinking"])
    sent = ant.requests_to("/v1/messages/count_tokens")[-1]
    assert sent.body["model"] == "claude-sonnet-4-6"
    assert len(sent.body["system"]) == 4 and len(sent.body["messages"]) == 1
    assert "max_tokens" not in sent.body and "stream" not in sent.body
    used = client.messages.create(model="claude-test", max_tokens=64, system=SYSTEM,
                                  messages=MESSAGES, tools=[BASH_TOOL])
    assert counted.input_tokens == used.usage.input_tokens


@pytest.mark.parametrize("model", ["claude-test", "gpt-test", "smollm2-135m-instruct"])
def test_count_tokens_takes_claude_codes_fields(client, model):
    counted = client.beta.messages.count_tokens(
        model=model, system=SYSTEM, messages=MESSAGES, tools=[BASH_TOOL, DEFERRED_TOOL],
        thinking={"type": "enabled", "budget_tokens": 31999},
        context_management=CLAUDE_CODE_FIELDS["context_management"],
        output_config={"effort": "high"})
    assert counted.input_tokens > 10


def test_count_tokens_forwards_beta_headers(client, fakes):
    _, ant = fakes
    client.beta.messages.count_tokens(model="claude-test", messages=MESSAGES[:1],
                                      betas=["context-management-2025-06-27"])
    sent = ant.requests_to("/v1/messages/count_tokens")[-1]
    assert "context-management-2025-06-27" in sent.headers["anthropic-beta"].split(",")


def test_count_tokens_on_the_local_model_is_its_tokenizers_count(client):
    messages = [{"role": "user", "content": "Count the words in this sentence, please."}]
    counted = client.messages.count_tokens(model="smollm2-135m-instruct", system="Be brief.",
                                           messages=messages)
    used = client.messages.create(model="smollm2-135m-instruct", max_tokens=1,
                                  system="Be brief.", messages=messages)
    # the whole prompt: Anthropic's input_tokens leaves out what the prompt cache served
    prompt = used.usage.input_tokens + used.usage.cache_read_input_tokens
    assert counted.input_tokens == prompt  # the real template and tokenizer: exact


def test_count_tokens_on_openai_is_an_upper_bound(client):
    long_text = " ".join(["antidisestablishmentarianism 日本語のテキスト 🚀"] * 50)
    messages = [{"role": "user", "content": long_text}, MESSAGES[1]]
    counted = client.messages.count_tokens(model="gpt-test", messages=messages,
                                           tools=[BASH_TOOL])
    used = client.messages.create(model="gpt-test", max_tokens=8, messages=messages,
                                  tools=[BASH_TOOL])
    assert counted.input_tokens >= used.usage.input_tokens
    # and above any tokenizer's count: never fewer tokens than UTF-8 bytes of the text
    assert counted.input_tokens >= len(long_text.encode())


def test_count_tokens_refuses_what_openai_models_cannot_take(client):
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model="gpt-test", messages=MESSAGES[:1],
                                     tools=[{"type": "web_search_20250305",
                                             "name": "web_search"}])
