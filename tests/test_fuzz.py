"""No input is a 5xx: the gateway fuzzed from its own /openapi.json, operation by operation and
field by field.

A real gateway on loopback in front of fake OpenAI and Anthropic upstreams. Schemathesis
generates requests for every operation the gateway describes (public and admin), both
conforming ones (which reach admission and the upstream) and ones that break the schema;
a second property test puts odd JSON values (huge numbers, deep nesting, control characters,
wrong types) into each field the description lists, one at a time, in an otherwise valid body
(schema-guided generation stays near the declared bounds; the 500s an attack found were far
from them). Bounded: about 1,200 requests, 50 s on two shared cores.

    PYTHONPATH=$PWD .venv/bin/python -m pytest -q tests/test_fuzz.py
"""

from __future__ import annotations

import httpx
import orjson
import pytest
import schemathesis
from conftest import anthropic_model, openai_model
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from support.server import ADMIN_KEY, GatewayServer

from spaceai.api.openapi import SPEC

EXAMPLES_PER_OPERATION = 15  # per generation mode
# (method, path, mode): the schema-breaking mode only where there is an input to break
OPERATIONS = [(method.upper(), path, mode) for path, methods in SPEC["paths"].items()
              for method, op in methods.items()
              for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
              if mode is GenerationMode.POSITIVE or "requestBody" in op or "parameters" in op]
FUZZ_SETTINGS = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                         derandomize=True, suppress_health_check=list(HealthCheck))
# a failure is reported as found: shrinking it request by request could take minutes
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from fakes.upstream import FakeAnthropic, FakeOpenAI

    fake_openai, fake_anthropic = FakeOpenAI(), FakeAnthropic()
    fake_openai.start_in_thread()
    fake_anthropic.start_in_thread()
    models = [openai_model(fake_openai, max_output_tokens=64),
              anthropic_model(fake_anthropic),
              {"id": "embed-up", "provider": "openai", "upstream_model": "text-embedding-3-small",
               "base_url": fake_openai.base_url, "api_key": fake_openai.api_key,
               "capabilities": ["embeddings"], "pricing": {"input": 0.0001, "output": 0},
               "max_retries": 0}]
    with GatewayServer(tmp_path_factory.mktemp("fuzz"), models=models) as server:
        server.key = server.create_key(name="fuzz")
        yield server
    fake_openai.stop_thread()
    fake_anthropic.stop_thread()


@pytest.fixture(scope="module")
def schema(gw):
    """The gateway's own /openapi.json, with ``model`` steered to the catalog's ids (so the
    conforming requests get past the catalog to admission and the upstream)."""
    spec = httpx.get(gw.base_url + "/openapi.json").json()
    assert spec == orjson.loads(orjson.dumps(SPEC))  # what the tests below are built from
    models = ["gpt-4o", "claude-3.5-sonnet", "embed-up"]
    for body in spec["components"]["schemas"].values():
        if "model" in body.get("properties", {}):
            body["properties"]["model"] = {"type": "string", "enum": models}
    return schemathesis.openapi.from_dict(spec)


def _headers(gw, path: str) -> dict[str, str]:
    key = ADMIN_KEY if path.startswith("/admin") else gw.key
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("method,path,mode", OPERATIONS,
                         ids=[f"{m} {p} {mode.value}" for m, p, mode in OPERATIONS])
def test_no_generated_request_is_answered_with_a_5xx(gw, schema, method, path, mode):
    operation = schema[path][method]
    failures: list[str] = []

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        response = case.call(base_url=gw.base_url, headers=_headers(gw, path), timeout=30)
        if response.status_code >= 500:
            failures.append(f"{response.status_code} {response.text[:300]}\n"
                            f"{case.as_curl_command()}")

    run()
    assert not failures, f"{len(failures)} answers >= 500, first:\n{failures[0]}"


# -- odd values, field by field -------------------------------------------------------------

_HUGE = st.sampled_from([1e20, -1e20, 1e308, -1e308, 10**19, 2**63, 2**31, -(2**63) - 1,
                         1e-320, -0.0, 0.5, 18446744073709551615])
_TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.sampled_from(
    ["\x00", "a\x00b", "x" * 5000, "\ud7ff", "9999-12-31T23:59:59-14:00", "99999999999d"])
_SCALAR = st.none() | st.booleans() | st.integers() | _HUGE | st.floats(
    allow_nan=False, allow_infinity=False) | _TEXT
_JSON = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    _TEXT, inner, max_size=3), max_leaves=8)


def _deep(levels: int) -> object:
    value: object = 1
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


# just past the limit, past what orjson re-encodes (254), past Python's recursion limit
_ODD = st.one_of(_HUGE, _TEXT, _JSON, st.sampled_from([65, 256, 1100]).map(_deep))

_MESSAGE = {"role": "user", "content": "hi"}
_VALID_BODIES: dict[str, dict] = {
    "/v1/chat/completions": {"model": "gpt-4o", "messages": [_MESSAGE], "max_tokens": 5},
    "/v1/completions": {"model": "gpt-4o", "prompt": "hi", "max_tokens": 5},
    "/v1/messages": {"model": "gpt-4o", "messages": [_MESSAGE], "max_tokens": 5},
    "/v1/messages/count_tokens": {"model": "gpt-4o", "messages": [_MESSAGE]},
    "/v1/embeddings": {"model": "embed-up", "input": "hi"},
    "/admin/keys": {"name": "k", "budget": 1},
}
def _fields(path: str) -> list[str]:
    """Every field /openapi.json describes for ``path``'s body, and those of its first message."""
    ref = SPEC["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = SPEC["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
    fields = list(body["properties"])
    items = body["properties"].get("messages", {}).get("items")
    if items:  # one message type, or one per role
        variants = [SPEC["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
                    for ref in items.get("anyOf", [items])]
        names = dict.fromkeys(name for v in variants for name in v["properties"])
        fields += ["messages[0]"] + [f"messages[0].{name}" for name in names]
    return fields


_FIELDS = {path: _fields(path) for path in _VALID_BODIES}
_CASES = [(path, field) for path, fields in _FIELDS.items() for field in fields]


def _with(body: dict, field: str, value: object) -> dict:
    out = orjson.loads(orjson.dumps(body))
    if field.startswith("messages[0]"):
        target = out["messages"]
        if field == "messages[0]":
            target[0] = value
        else:
            target[0][field.split(".", 1)[1]] = value
    else:
        out[field] = value
    return out


def _dumps(value: object) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # deeper than orjson writes, or an integer past 64 bits
        import json

        return json.dumps(value).encode()


@pytest.mark.parametrize("path,field", _CASES, ids=[f"{p} {f}" for p, f in _CASES])
def test_odd_values_in_any_field_are_never_a_5xx(gw, path, field):
    headers = {**_headers(gw, path), "content-type": "application/json"}

    @settings(FUZZ_SETTINGS, max_examples=4, phases=NO_SHRINK)
    @given(value=_ODD)
    @example(value=1e20)  # the attack's values, always tried
    @example(value=_deep(256))
    @example(value=_deep(1100))
    @example(value="a\x00b")
    def run(value: object) -> None:
        raw = _dumps(_with(_VALID_BODIES[path], field, value))
        r = httpx.post(gw.base_url + path, content=raw, headers=headers, timeout=30)
        assert r.status_code < 500, (raw[:300], r.text[:300])
        if r.status_code == 400 and path.startswith("/v1/messages"):
            assert r.json()["type"] == "error"
        elif r.status_code == 400:
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}

    run()


@pytest.mark.parametrize("path", list(_VALID_BODIES))
@pytest.mark.parametrize("raw,content_type", [
    (b"", "application/json"), (b"\xff\xfe\x00", "application/json"),
    (b'{"model": "\xc3\x28"}', "application/json"), (b"NaN", "application/json"),
    (b'{"max_tokens": Infinity}', "application/json"), (b"[1, 2]", "application/json"),
    (b'"text"', "application/json"), (b"null", "application/json"), (b"1e999", "application/json"),
    (b"model=gpt-4o", "application/x-www-form-urlencoded"), (b"{}", "text/plain"),
    (b"[" * 2000 + b"]" * 2000, "application/json"),
], ids=lambda v: v[:16].decode("latin-1") if isinstance(v, bytes) else v)
def test_bodies_that_are_not_a_json_object_are_a_400(gw, path, raw, content_type):
    r = httpx.post(gw.base_url + path, content=raw, timeout=30,
                   headers={**_headers(gw, path), "content-type": content_type})
    if path == "/admin/keys" and raw in (b"", b"null", b"{}"):
        assert r.status_code == 201  # an empty body creates a key with no limits
        return
    assert r.status_code == 400, r.text
    if path.startswith("/v1/messages"):
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    else:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
