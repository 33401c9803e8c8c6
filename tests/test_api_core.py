"""The core API as a client sees it: the official openai SDK against a real gateway."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from decimal import Decimal

import httpx
import openai
import pytest
from conftest import openai_model
from support.server import LOCAL_MODEL, GatewayServer

LOCAL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from fakes.upstream import FakeOpenAI

    fake_openai = FakeOpenAI()
    fake_openai.start_in_thread()
    tmp_path = tmp_path_factory.mktemp("core")
    models = [openai_model(fake_openai), LOCAL_MODEL,
              {"id": "claude-3.7-sonnet", "provider": "anthropic",
               "api_key": "env:SPACEAI_TEST_UNSET_ANTHROPIC_KEY", "capabilities": ["chat"],
               "pricing": {"input": 0.00005, "output": 0.0001}}]
    with GatewayServer(tmp_path, models=models) as server:
        server.fake = fake_openai
        server.tmp_path = tmp_path
        yield server
    fake_openai.stop_thread()


def client(gw, key):
    return openai.OpenAI(base_url=gw.api_url, api_key=key, max_retries=0)


def test_models_are_listed_in_the_seed_shape(gw):
    models = client(gw, gw.create_key()).models.list()
    by_id = {m.id: m for m in models.data}
    assert set(by_id) == {"gpt-4o", LOCAL, "claude-3.7-sonnet"}
    gpt = by_id["gpt-4o"].model_dump()
    assert gpt["object"] == "model" and gpt["owned_by"] == "openai-internal"
    # the seed's endpoints, then the features the model honours
    assert gpt["capabilities"] == ["chat", "completions", "tools", "json_schema", "vision"]
    assert gpt["pricing"] == {"input": 0.00003, "output": 0.00006}
    one = client(gw, gw.create_key()).models.retrieve(LOCAL)
    assert one.id == LOCAL


def test_builtin_catalog_has_the_seed_prices(tmp_path):
    from spaceai.catalog import Catalog

    cat = Catalog.load(None)
    prices = {m.id: (m.input_price * 1000, m.output_price * 1000, m.owned_by) for m in cat}
    assert prices["gpt-4o"] == pytest.approx((0.03, 0.06), abs=1e-12) or prices["gpt-4o"][:2] == (
        pytest.approx(0.03), pytest.approx(0.06))
    assert prices["claude-3.5-sonnet"][:2] == (pytest.approx(0.02), pytest.approx(0.05))
    assert prices["claude-3.7-sonnet"][:2] == (pytest.approx(0.05), pytest.approx(0.10))
    assert prices["gpt-4o"][2] == "openai-internal"
    assert LOCAL in prices


def test_chat_through_openai_compatible_upstream_is_metered(gw):
    key = gw.create_key(name="meter")
    raw = client(gw, key).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Hello there!"}])
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello from fake-openai"
    assert reply.model == "gpt-4o"
    # fake's formula: (2 words + 3) + (2 words + 3) prompt tokens, 3 completion chunks
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (10, 3)
    cost = Decimal(raw.headers["x-spaceai-cost"])
    assert cost == Decimal("10") * Decimal("0.00003") + Decimal("3") * Decimal("0.00006")
    assert raw.headers["x-request-id"].startswith("req_")
    sent = gw.fake.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {gw.fake.api_key}"
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent.body["temperature"] == 0.7  # the seed's default when the client sends none
    gw.flush_ledger()
    rows = [r for r in gw.usage_rows()["data"] if r["request_id"] == raw.headers["x-request-id"]]
    assert rows[0]["model"] == "gpt-4o" and rows[0]["prompt_tokens"] == 10
    assert Decimal(str(rows[0]["cost"])) == cost


def test_stream_with_and_without_usage(gw):
    c = client(gw, gw.create_key())
    chunks = list(c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == (
        "Hello from fake-openai")
    assert all(ch.usage is None for ch in chunks)  # not asked: the usage chunk is hidden
    assert gw.fake.requests[-1].body["stream_options"] == {"include_usage": True}
    chunks = list(c.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.prompt_tokens == 4


def test_local_model_chat_stream_and_legacy_completion(gw):
    c = client(gw, gw.create_key())
    reply = c.chat.completions.create(model=LOCAL, messages=[{"role": "user", "content": "Hi"}],
                                      max_tokens=12)
    assert reply.choices[0].message.content.strip()
    assert 0 < reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 0
    chunks = list(c.chat.completions.create(
        model=LOCAL, messages=[{"role": "user", "content": "Write a long story about the sea."}],
        max_tokens=10, temperature=0, stream=True, stream_options={"include_usage": True}))
    deltas = [ch.choices[0].delta.content for ch in chunks if ch.choices
              and ch.choices[0].delta.content]
    assert deltas and chunks[-1].usage.completion_tokens == 10 == len(deltas)
    assert chunks[-2].choices[0].finish_reason == "length"
    legacy = c.completions.create(model=LOCAL, prompt="The capital of France is", max_tokens=5)
    assert legacy.choices[0].text and legacy.usage.completion_tokens <= 5


def test_four_concurrent_local_streams_decode_overlapping(gw):
    key = gw.create_key()
    spans: list[tuple[float, float, int]] = []

    def one(i: int) -> None:
        c = client(gw, key)
        first = last = None
        n = 0
        for ch in c.chat.completions.create(
                model=LOCAL, messages=[{"role": "user", "content": f"Tell me a story #{i}"}],
                max_tokens=40, stream=True, stream_options={"include_usage": True}):
            if ch.choices and ch.choices[0].delta.content:
                last = time.monotonic()
                first = first or last
            if ch.usage:
                n = ch.usage.completion_tokens
        spans.append((first, last, n))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(spans) == 4 and all(n > 0 for *_, n in spans)
    # overlapping decoding: every stream produced its first token before any stream finished
    assert max(f for f, _, _ in spans) < min(last for _, last, _ in spans)


@pytest.mark.parametrize("body,param", [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "gpt-4o"}, "messages"),
    ({"model": "gpt-4o", "messages": []}, "messages"),
    ({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
     "temperature"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
     "temperature"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
     "max_tokens"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5},
     "max_tokens"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
     "stream"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "top_p": 2}, "top_p"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
      "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
      "presence_penalty": -3}, "presence_penalty"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
      "tool_choice": "required"}, "tool_choice"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "bad name!"}}]},
     "tools[0].function.name"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "xml"}}, "response_format.type"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}],
      "stream_options": {"include_usage": True}}, "stream_options"),
    ({"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]},
     "messages[0].tool_call_id"),
    # unknown parameters reach OpenAI-compatible upstreams; a translated model refuses them
    ({"model": LOCAL, "messages": [{"role": "user", "content": "x"}], "frobnicate": 1},
     "frobnicate"),
])
def test_bad_parameters_get_a_400_naming_the_parameter(gw, body, param):
    key = gw.create_key()
    r = httpx.post(gw.api_url + "/chat/completions", json=body,
                   headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_malformed_json_and_wrong_shapes_are_400_not_500(gw):
    key = gw.create_key()
    h = {"Authorization": f"Bearer {key}"}
    for raw in (b"{not json", b"[]", b'"text"', b"null", b"\xff\xfe"):
        r = httpx.post(gw.api_url + "/chat/completions", content=raw, headers=h)
        assert r.status_code == 400, (raw, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_each_error_maps_to_the_right_sdk_exception(gw):
    key = gw.create_key(models=["gpt-4o"])
    msg = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.AuthenticationError) as e:
        client(gw, "sk-space-wrong").chat.completions.create(model="gpt-4o", messages=msg)
    assert e.value.code == "invalid_api_key"
    r = httpx.get(gw.api_url + "/models")  # no key at all
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.PermissionDeniedError):
        client(gw, key).chat.completions.create(model=LOCAL, messages=msg)
    with pytest.raises(openai.NotFoundError) as e:
        client(gw, key).chat.completions.create(model="no-such-model", messages=msg)
    assert e.value.code == "model_not_found"
    other = gw.create_key()
    with pytest.raises(openai.InternalServerError) as e:  # 503: credential not configured
        client(gw, other).chat.completions.create(model="claude-3.7-sonnet", messages=msg)
    assert e.value.status_code == 503
    assert "SPACEAI_TEST_UNSET_ANTHROPIC_KEY" in e.value.message
    with pytest.raises(openai.APIStatusError) as e:
        client(gw, other).chat.completions.create(
            model=LOCAL, messages=[{"role": "user", "content": "x" * (5 * 1024 * 1024)}])
    assert e.value.status_code == 413


def test_revoked_and_expired_keys_are_refused(gw):
    r = gw.admin("POST", "/admin/keys", json={"name": "short", "expires": "2000-01-01T00:00:00Z"})
    expired = r.json()["key"]
    with pytest.raises(openai.AuthenticationError) as e:
        client(gw, expired).models.list()
    assert "expired" in e.value.message
    created = gw.admin("POST", "/admin/keys", json={"name": "soon-revoked"}).json()
    c = client(gw, created["key"])
    assert c.models.list().data
    assert gw.admin("DELETE", f"/admin/keys/{created['id']}").json()["revoked"] is True
    with pytest.raises(openai.AuthenticationError) as e:
        c.models.list()
    assert "revoked" in e.value.message


def test_admin_api_needs_the_admin_key(gw):
    r = httpx.get(gw.base_url + "/admin/keys", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    created = gw.admin("POST", "/admin/keys", json={"name": "k", "budget": 5, "rpm": 10,
                                                     "models": ["gpt-4o"]}).json()
    assert created["key"].startswith("sk-space-") and len(created["key"]) >= len("sk-space-") + 32
    assert {"id", "name", "prefix", "models", "budget", "spend", "remaining", "rpm", "tpm",
            "expires_at", "revoked", "created_at"} <= set(created)
    listed = gw.admin("GET", "/admin/keys").json()["data"]
    mine = [k for k in listed if k["id"] == created["id"]]
    assert len(mine) == 1 and all("key" not in k for k in listed)
    assert mine[0]["budget"] == 5.0 and mine[0]["rpm"] == 10
    assert gw.admin("POST", "/admin/keys", json={"models": ["nope"]}).status_code == 400


def test_database_never_holds_a_key_in_plaintext(gw):
    secrets = [gw.create_key(name=f"k{i}") for i in range(3)]
    client(gw, secrets[0]).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    gw.flush_ledger()
    raw = b"".join(p.read_bytes() for p in gw.tmp_path.glob("spaceai.db*"))
    assert raw  # the database and its WAL exist
    for s in secrets:
        assert s.encode() not in raw
        assert s[len("sk-space-"):].encode() not in raw


def test_seed_curl_examples_work_with_the_host_changed(gw):
    key = gw.create_key()
    base = gw.base_url
    out = subprocess.run(["curl", "-s", f"{base}/v1/models", "-H",
                          f"Authorization: Bearer {key}"], capture_output=True, check=True)
    assert json.loads(out.stdout)["object"] == "list"
    out = subprocess.run([
        "curl", "-s", "-i", f"{base}/v1/chat/completions", "-H", f"Authorization: Bearer {key}",
        "-H", "Content-Type: application/json", "-d", """{
"model": "gpt-4o",
"messages": [
{
"role": "system",
"content": "You are a helpful assistant."
},
{
"role": "user",
"content": "Hello!"
}
],
"temperature": 0.7,
"max_tokens": 150
}"""], capture_output=True, check=True)
    head, _, body = out.stdout.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 200") and "x-spaceai-cost:" in head.lower()
    answer = json.loads(body)
    assert answer["object"] == "chat.completion" and answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["total_tokens"] == (
        answer["usage"]["prompt_tokens"] + answer["usage"]["completion_tokens"])


def test_health_openapi_and_page(gw):
    assert httpx.get(gw.base_url + "/health/live").json()["status"] == "ok"
    ready = httpx.get(gw.base_url + "/health/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    spec = httpx.get(gw.base_url + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"]
    page = httpx.get(gw.base_url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert httpx.get(gw.base_url + "/nope").status_code == 404
    r = httpx.get(gw.base_url + "/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
