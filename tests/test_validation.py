"""Bad input is a 400 naming the parameter, in the caller's API shape, before admission.

Regressions for the 500s an attack found: huge integers written as floats, JSON nested too
deeply to re-encode, tool_calls on a user message, out-of-range admin fields and CLI options.
Each refused request must leave the key's budget untouched: no reservation is taken, so a
key with a tiny budget still gets a normal request through afterwards, and no phantom spend
shows in /admin/usage; it is in the ledger, as an ``invalid_request`` row that cost nothing,
so the operator sees the client that sends it.
"""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import orjson
import pytest
from click.testing import CliRunner
from conftest import openai_model
from support.server import GatewayServer

# one normal request reserves 7 prompt + 5 output tokens at gpt-4o's prices ($0.00051), so a
# $0.001 budget admits it once, and would not after two leaked reservations
TINY_BUDGET = 0.001
NORMAL = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
ATTEMPTS = 20


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from fakes.upstream import FakeOpenAI

    fake = FakeOpenAI()
    fake.start_in_thread()
    embed = {"id": "embed-up", "provider": "openai", "upstream_model": "text-embedding-3-small",
             "base_url": fake.base_url, "api_key": fake.api_key,
             "capabilities": ["embeddings"], "pricing": {"input": 0.0001, "output": 0}}
    with GatewayServer(tmp_path_factory.mktemp("validation"),
                       models=[openai_model(fake), embed]) as server:
        yield server
    fake.stop_thread()


def tiny_key(gw) -> tuple[str, str]:
    """(secret, id) of a new key with a budget that fits one normal request."""
    r = gw.admin("POST", "/admin/keys", json={"budget": TINY_BUDGET})
    assert r.status_code == 201, r.text
    return r.json()["key"], r.json()["id"]


def post(gw, path: str, body, key: str) -> httpx.Response:
    # json, not orjson: it writes integers past 64 bits too
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(gw.base_url + path, content=raw, timeout=30,
                      headers={"Authorization": f"Bearer {key}",
                               "content-type": "application/json"})


def assert_openai_400(r: httpx.Response, param: str | None) -> dict:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param, err
    if param is not None:
        assert param.split("[")[0].split(".")[0] in err["message"]
    return err


def assert_anthropic_400(r: httpx.Response, param: str) -> dict:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == "invalid_request_error" and param in body["error"]["message"]
    return body["error"]


def assert_budget_untouched(gw, key: str, key_id: str, asked: str | None = "gpt-4o") -> None:
    """A normal request is still admitted, the key's spend is that request's cost alone, and
    each bad request is in the ledger (the console's request log) at no cost, naming the
    model it ``asked`` for (None: its body could not be read)."""
    r = post(gw, "/v1/chat/completions", NORMAL, key)
    assert r.status_code == 200, r.text
    cost = Decimal(r.headers["x-spaceai-cost"])
    gw.flush_ledger()
    usage = gw.usage_rows(key=key_id, limit=1000)
    assert Decimal(str(usage["totals"]["cost"])) == cost
    served, *refused = usage["data"]  # newest first
    assert served["http_status"] == 200 and refused
    for row in refused:  # turned away before admission: no model reached, nothing charged
        assert (row["status"], row["http_status"], row["cost"], row["prompt_tokens"],
                row["completion_tokens"], row["retries"], row["upstream_ms"]) == (
            "invalid_request", 400, 0, 0, 0, 0, 0), row
        assert row["error"] and row["model_requested"] == asked
        assert row["model"] == (asked or "")
    own = httpx.get(gw.api_url + "/key", headers={"Authorization": f"Bearer {key}"}).json()
    assert Decimal(str(own["spend"])) == cost


def deep(levels: int) -> object:
    value: object = "leaf"
    for _ in range(levels):
        value = {"a": value}
    return value


def deep_json(levels: int) -> bytes:
    """``levels`` nested objects as raw JSON (past what orjson itself can write)."""
    return b'{"a":' * levels + b'"leaf"' + b"}" * levels


# -- integers ---------------------------------------------------------------------------------

HUGE_INTEGERS = [
    ("/v1/chat/completions", "max_tokens", 1e20),
    ("/v1/chat/completions", "max_completion_tokens", 1e20),
    ("/v1/chat/completions", "seed", 1e20),
    ("/v1/chat/completions", "seed", 2**64 - 1),  # an integer past int64
    ("/v1/chat/completions", "n", 1e20),
    ("/v1/chat/completions", "top_logprobs", 1e20),
    ("/v1/chat/completions", "top_k", 1e300),
    ("/v1/completions", "max_tokens", 1e20),
    ("/v1/completions", "seed", 1e20),
    ("/v1/completions", "best_of", 1e20),
]


@pytest.mark.parametrize("path,param,value", HUGE_INTEGERS,
                         ids=[f"{p} {n}={v:g}" for p, n, v in HUGE_INTEGERS])
def test_huge_integers_are_a_400_and_take_no_reservation(gw, path, param, value):
    key, key_id = tiny_key(gw)
    base = NORMAL if path == "/v1/chat/completions" else {"model": "gpt-4o", "prompt": "hi",
                                                          "max_tokens": 5}
    for _ in range(ATTEMPTS):
        err = assert_openai_400(post(gw, path, {**base, param: value}, key), param)
        assert err["code"] == "integer_above_max_value"
    assert_budget_untouched(gw, key, key_id)


def test_integers_outside_their_range_name_the_bound(gw):
    key, _ = tiny_key(gw)
    for param, value, code in [("max_tokens", 2**31, "integer_above_max_value"),
                               ("max_tokens", -(2**40), "integer_below_min_value"),
                               ("seed", -(2**64), "integer_below_min_value"),
                               ("max_tokens", 5.5, "invalid_type"),
                               ("seed", "7", "invalid_type"),
                               ("seed", True, "invalid_type")]:
        err = assert_openai_400(post(gw, "/v1/chat/completions", {**NORMAL, param: value}, key),
                                param)
        assert err["code"] == code, (param, value, err)


def test_integral_floats_and_the_range_ends_are_accepted(gw):
    key = gw.create_key()
    for extra in ({"max_tokens": 5.0}, {"seed": 2**63 - 1}, {"seed": -(2**63)},
                  {"max_tokens": 2**31 - 1}):
        r = post(gw, "/v1/chat/completions", {**NORMAL, **extra}, key)
        assert r.status_code == 200, (extra, r.text)


@pytest.mark.parametrize("param,value", [("max_tokens", 1e20), ("max_tokens", 2**64 - 1),
                                         ("top_k", 1e300), ("max_tokens", 0)])
def test_huge_integers_on_messages_are_an_anthropic_400(gw, param, value):
    key, key_id = tiny_key(gw)
    for _ in range(ATTEMPTS):
        assert_anthropic_400(post(gw, "/v1/messages", {**NORMAL, param: value}, key), param)
    assert_budget_untouched(gw, key, key_id)


def test_embedding_dimensions_and_token_ids_out_of_range_are_a_400(gw):
    key = gw.create_key()
    assert_openai_400(post(gw, "/v1/embeddings", {"model": "embed-up", "input": "x",
                                                  "dimensions": 1e20}, key), "dimensions")
    assert_openai_400(post(gw, "/v1/embeddings", {"model": "embed-up", "input": [2**40]}, key),
                      "input")


# -- depth ------------------------------------------------------------------------------------


def test_json_nested_too_deeply_is_a_400_and_takes_no_reservation(gw):
    key, key_id = tiny_key(gw)
    body = orjson.dumps({**NORMAL, "metadata": "X"}).replace(b'"X"', deep_json(254))
    for _ in range(ATTEMPTS):
        err = assert_openai_400(post(gw, "/v1/chat/completions", body, key), "metadata")
        assert err["code"] == "nested_too_deeply" and "nested too deeply" in err["message"]
    assert_budget_untouched(gw, key, key_id, asked=None)  # a body not read names no model


def test_sixty_four_levels_are_accepted_and_sixty_five_are_not(gw):
    key = gw.create_key()
    # the body is level 1, so 63 objects nested in metadata make 64 levels
    ok = post(gw, "/v1/chat/completions", {**NORMAL, "metadata": deep(63)}, key)
    assert ok.status_code == 200, ok.text
    too_deep = post(gw, "/v1/chat/completions", {**NORMAL, "metadata": deep(64)}, key)
    assert_openai_400(too_deep, "metadata")


def test_tools_nested_a_thousand_deep_on_messages_are_an_anthropic_400(gw):
    key, key_id = tiny_key(gw)
    tools = b'[{"name": "t", "input_schema": ' + deep_json(1000) + b"}]"
    body = orjson.dumps({**NORMAL, "tools": "X"}).replace(b'"X"', tools)
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        for _ in range(ATTEMPTS // 2):
            error = assert_anthropic_400(post(gw, path, body, key), "tools")
            assert "nested too deeply" in error["message"]
    assert_budget_untouched(gw, key, key_id, asked=None)


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/embeddings", "/admin/keys"])
def test_every_endpoint_refuses_json_nested_too_deeply(gw, path):
    from support.server import ADMIN_KEY

    key = ADMIN_KEY if path.startswith("/admin") else gw.create_key()
    assert_openai_400(post(gw, path, b'{"model": "gpt-4o", "x": ' + deep_json(300) + b"}", key),
                      "x")
    assert_openai_400(post(gw, path, b"[" * 1000 + b"]" * 1000, key), None)  # the body itself


# -- messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["user", "system", "tool", "developer"])
def test_tool_calls_on_a_message_not_from_the_assistant_is_a_400(gw, role):
    key, key_id = tiny_key(gw)
    message = {"role": role, "content": "x", "tool_call_id": "c1",
               "tool_calls": [{"id": "c1", "type": "function",
                               "function": {"name": "f", "arguments": "{}"}}]}
    for calls in (message["tool_calls"], "abc", [{"function": {"arguments": 5}}]):
        r = post(gw, "/v1/chat/completions",
                 {**NORMAL, "messages": [{**message, "tool_calls": calls}]}, key)
        err = assert_openai_400(r, "messages[0].tool_calls")
        assert "only allowed on assistant messages" in err["message"]
    assert_budget_untouched(gw, key, key_id)


def test_tool_call_arguments_must_be_a_string(gw):
    key = gw.create_key()
    messages = [{"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": 5}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    r = post(gw, "/v1/chat/completions", {**NORMAL, "messages": messages}, key)
    assert_openai_400(r, "messages[1].tool_calls[0].function.arguments")


# -- admin ------------------------------------------------------------------------------------

BAD_KEY_FIELDS = [
    ({"budget": 9.3e9}, "budget"), ({"budget": 1e308}, "budget"), ({"budget": -1}, "budget"),
    ({"budget": "5"}, "budget"), ({"rpm": 2**31}, "rpm"), ({"rpm": -1}, "rpm"),
    ({"rpm": 0}, "rpm"), ({"rpm": 1.5}, "rpm"), ({"tpm": 2**40}, "tpm"), ({"tpm": 1e20}, "tpm"),
    ({"name": "a\x00b"}, "name"), ({"name": "x" * 201}, "name"), ({"name": 5}, "name"),
    ({"models": "gpt-4o"}, "models"), ({"models": [1]}, "models[0]"), ({"models": ["nope"]}, "models"),
    ({"models": {"a": 1}}, "models"), ({"expires": "99999999999d"}, "expires"),
    ({"expires": "9999-12-31T23:59:59-05:00"}, "expires"), ({"expires": "soon"}, "expires"),
    ({"expires": "2026-01-01\x00"}, "expires"), ({"expires": 5}, "expires"),
    ({"budget_period": "weekly"}, "budget_period"), ({"budget_period": 1}, "budget_period"),
]


@pytest.mark.parametrize("body,param", BAD_KEY_FIELDS,
                         ids=[repr(b)[:40] for b, _ in BAD_KEY_FIELDS])
def test_bad_key_fields_are_a_400_naming_the_field(gw, body, param):
    before = len(gw.admin("GET", "/admin/keys").json()["data"])
    assert_openai_400(gw.admin("POST", "/admin/keys", json=body), param)
    assert len(gw.admin("GET", "/admin/keys").json()["data"]) == before


def test_nan_and_infinity_literals_are_invalid_json(gw):
    from support.server import ADMIN_KEY

    for raw in (b'{"budget": NaN}', b'{"budget": Infinity}', b'{"budget": 1e999}'):
        r = post(gw, "/admin/keys", raw, ADMIN_KEY)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text


def test_key_fields_at_their_limits_are_accepted(gw):
    r = gw.admin("POST", "/admin/keys", json={
        "name": "é" * 200, "budget": 1e9, "rpm": 2**31 - 1, "tpm": 2**31 - 1.0,
        "expires": "36500d", "budget_period": "monthly", "models": ["gpt-4o"]})
    assert r.status_code == 201, r.text
    assert r.json()["rpm"] == r.json()["tpm"] == 2**31 - 1 and r.json()["budget"] == 1e9


BAD_USAGE_QUERIES = [
    ("offset=-1", "offset"), ("limit=abc", "limit"), ("offset=abc", "offset"),
    ("limit=0", "limit"), ("limit=-5", "limit"), ("offset=1.5", "offset"),
    ("offset=" + "9" * 30, "offset"), ("limit=" + "9" * 30, "limit"), ("key=%00", "key"),
    ("model=" + "m" * 201, "model"), ("since=yesterday", "since"), ("until=2026-13-01", "until"),
]


@pytest.mark.parametrize("query,param", BAD_USAGE_QUERIES, ids=[q[:20] for q, _ in BAD_USAGE_QUERIES])
def test_bad_usage_queries_are_a_400_naming_the_parameter(gw, query, param):
    assert_openai_400(gw.admin("GET", "/admin/usage?" + query), param)


def test_revoking_an_id_that_cannot_exist_is_a_404(gw):
    for key_id in ("key_%00", "x" * 500, "key_0000000000000000"):
        r = gw.admin("DELETE", f"/admin/keys/{key_id}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "key_not_found"


def test_an_unexpected_failure_after_admission_releases_the_reservation(gw, monkeypatch):
    key, key_id = tiny_key(gw)

    async def broken(*args, **kwargs):
        raise RuntimeError("a bug past admission")

    monkeypatch.setattr(gw.gateway.router, "complete", broken)
    for _ in range(3):
        assert post(gw, "/v1/chat/completions", NORMAL, key).status_code == 500
    monkeypatch.undo()
    r = post(gw, "/v1/chat/completions", NORMAL, key)
    assert r.status_code == 200, r.text  # three leaked reservations would not fit the budget
    gw.flush_ledger()
    statuses = sorted(row["http_status"] for row in gw.usage_rows(key=key_id)["data"])
    assert statuses == [200, 500, 500, 500]


# -- CLI --------------------------------------------------------------------------------------

BAD_CLI_OPTIONS = [
    (["--budget", "1e308"], "budget"), (["--budget", "nan"], "budget"),
    (["--budget", "inf"], "budget"), (["--budget", "9.3e9"], "budget"),
    (["--rpm", str(2**31)], "rpm"), (["--tpm", "-5"], "tpm"), (["--name", "x" * 201], "name"),
    (["--expires", "99999999999d"], "expires"), (["--expires", "garbage"], "expires"),
]


@pytest.mark.parametrize("args,param", BAD_CLI_OPTIONS, ids=[" ".join(a)[:30] for a, _ in BAD_CLI_OPTIONS])
def test_keys_create_reports_bad_options_as_a_usage_error(tmp_path, args, param):
    from spaceai.cli import main

    env = {"SPACEAI_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db", "SPACEAI_CONFIG": ""}
    result = CliRunner().invoke(main, ["keys", "create", *args], env=env)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is not None
    assert param in result.output and "Error:" in result.output
    listed = CliRunner().invoke(main, ["keys", "list", "--json"], env=env)
    assert orjson.loads(listed.output)["data"] == []
