"""/openapi.json describes exactly what the validator accepts: both come from the same types.

Structurally, every request body in the served document is the JSON Schema msgspec generates
from the type its endpoint's validator converts with (so a hand edit of the document, or a
field added to a type, cannot go unnoticed), and its parameters are the names the type
declares. Behaviourally, driven from the served document alone through a real gateway: for
every parameter, a value just inside each constraint the document states (minimum, maximum,
enum, maxLength, minLength, maxItems, minItems, its type) is not refused naming it, and a
value just outside is a 400 whose ``param`` (for /v1/messages, Anthropic's message) names it;
a required parameter left out is a 400 naming it. A parameter whose schema states nothing
that can be probed fails the test: every field the gateway takes is constrained somehow.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import msgspec
import pytest
from conftest import anthropic_model, openai_model
from support.server import ADMIN_KEY, GatewayServer

from spaceai.api import schemas
from spaceai.api.schemas import BODIES, field_names

# each operation with a body, its validator's type, and a valid body the probes vary
BODY_TYPES: dict[tuple[str, str], type[msgspec.Struct]] = {
    ("post", "/v1/chat/completions"): schemas.ChatCompletionRequest,
    ("post", "/v1/completions"): schemas.CompletionRequest,
    ("post", "/v1/embeddings"): schemas.EmbeddingRequest,
    ("post", "/v1/messages"): schemas.MessagesRequest,
    ("post", "/v1/messages/count_tokens"): schemas.MessagesRequest,
    ("post", "/v1/responses"): schemas.ResponsesRequest,
    ("post", "/admin/keys"): schemas.KeyCreate,
    ("patch", "/admin/keys/{id}"): schemas.KeyUpdate,
}
_USER = [{"role": "user", "content": "hi"}]
_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
BASES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "gpt-4o", "messages": _USER, "max_tokens": 5,
                             "tools": [_TOOL]},
    "/v1/completions": {"model": "gpt-4o", "prompt": "hi", "max_tokens": 5},
    "/v1/embeddings": {"model": "embed-up", "input": "hi"},
    # Claude natively: fields only Claude can honour are a 400 on translated models
    "/v1/messages": {"model": "claude-3.5-sonnet", "messages": _USER, "max_tokens": 5},
    "/v1/responses": {"model": "gpt-4o", "input": "hi", "store": False},
    "/admin/keys": {},
    "/admin/keys/{id}": {},
}
# what a value needs beside it, by the rules no type can say (spaceai/api/validation.py)
COMPANIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/chat/completions", "stream_options"): {"stream": True},
    ("/v1/completions", "stream_options"): {"stream": True},
    ("/v1/responses", "tool_choice"): {"tools": [{"type": "function", "name": "f"}]},
}
# strings whose content matters beyond their length: the longest valid one
INSIDE_TEXT = {"expires": "30d".rjust(100), "expires_at": "30d".rjust(100),
               "since": "2026-01-01", "until": "2026-01-01"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory, fakes):
    oai, ant = fakes
    embed = {"id": "embed-up", "provider": "openai", "upstream_model": "text-embedding-3-small",
             "base_url": oai.base_url, "api_key": oai.api_key, "capabilities": ["embeddings"],
             "pricing": {"input": 0.0001, "output": 0}}
    models = [openai_model(oai), anthropic_model(ant), embed]
    with GatewayServer(tmp_path_factory.mktemp("openapi-types"), models=models) as server:
        server.key = server.create_key()
        server.key_id = server.admin("GET", "/admin/keys").json()["data"][0]["id"]
        yield server


@pytest.fixture(scope="module")
def spec(gw) -> dict[str, Any]:
    return httpx.get(gw.base_url + "/openapi.json", timeout=30).json()


def _body_schema(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    ref = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return _resolve(spec, ref)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


# -- the same types ------------------------------------------------------------------------


def test_every_body_in_the_document_is_one_the_validators_convert_to(spec):
    with_body = {(m, p) for p, ops in spec["paths"].items() for m, op in ops.items()
                 if "requestBody" in op}
    assert with_body == set(BODY_TYPES)
    assert set(BODY_TYPES.values()) <= set(BODIES)


def test_the_document_is_generated_from_the_validators_types(spec):
    _, generated = msgspec.json.schema_components(
        BODIES, ref_template="#/components/schemas/{name}")
    served = spec["components"]["schemas"]
    for name, schema in generated.items():
        described = dict(served[name])
        described.pop("additionalProperties", None)  # said outright for the open bodies
        schema.pop("additionalProperties", None)
        # descriptions are the same text, its line breaks folded
        assert {k: v for k, v in described.items() if k != "description"} == \
            {k: v for k, v in schema.items() if k != "description"}, name


@pytest.mark.parametrize("method,path", list(BODY_TYPES), ids=[p for _, p in BODY_TYPES])
def test_the_document_lists_every_parameter_the_validator_knows(spec, method, path):
    body = _body_schema(spec, method, path)
    assert set(body["properties"]) == field_names(BODY_TYPES[method, path])
    refuses_others = BODY_TYPES[method, path].__struct_config__.forbid_unknown_fields
    assert (body.get("additionalProperties") is False) == refuses_others


def test_embedding_input_is_described_as_its_four_shapes(spec):
    prop = _body_schema(spec, "post", "/v1/embeddings")["properties"]["input"]
    text, array = prop["anyOf"]
    assert text == {"type": "string", "minLength": 1}
    assert array["type"] == "array" and array["minItems"] == 1
    token = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    assert array["items"]["anyOf"] == [
        {"type": "string", "minLength": 1}, token,
        {"type": "array", "items": token, "minItems": 1}]
    for shape in ("a string", "an array of strings", "an array of token ids",
                  "an array of token-id arrays"):
        assert shape in prop["description"]


def test_responses_input_items_are_described_by_their_types(spec):
    prop = _body_schema(spec, "post", "/v1/responses")["properties"]["input"]
    text, array = prop["anyOf"]
    assert text == {"type": "string"} and array["type"] == "array"
    items = {"message": "MessageItem", "function_call": "FunctionCallItem",
             "function_call_output": "FunctionCallOutputItem", "reasoning": "ReasoningItem"}
    refs = {tag: f"#/components/schemas/{name}" for tag, name in items.items()}
    assert array["items"]["anyOf"] == [{"$ref": ref} for ref in refs.values()]
    assert array["items"]["discriminator"] == {"propertyName": "type", "mapping": refs}
    schemas = spec["components"]["schemas"]
    for tag, name in items.items():
        assert schemas[name]["properties"]["type"] == {"enum": [tag]}
    assert {"call_id", "name", "arguments"} <= set(schemas["FunctionCallItem"]["required"])
    assert {"call_id", "output"} <= set(schemas["FunctionCallOutputItem"]["required"])
    assert "EasyInputMessage" in schemas["MessageItem"]["description"]  # type may be left out
    parts = schemas["MessageItem"]["properties"]["content"]["anyOf"][1]["items"]["anyOf"][1]
    assert set(parts["discriminator"]["mapping"]) == {
        "input_text", "output_text", "text", "refusal", "input_image", "input_file"}


def test_usage_query_parameters_are_the_query_types_fields(spec):
    names = {p["name"] for p in spec["paths"]["/admin/usage"]["get"]["parameters"]}
    assert names == field_names(schemas.UsageQuery)


# -- the same constraints, through the real server -----------------------------------------


def _alternatives(spec: dict[str, Any], prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas a property allows, references resolved; null is absent and left out."""
    if "anyOf" in prop:
        return [a for alt in prop["anyOf"] if alt.get("type") != "null"
                for a in _alternatives(spec, alt)]
    return [_resolve(spec, prop)] if "$ref" in prop else [prop]


def valid(spec: dict[str, Any], prop: dict[str, Any]) -> Any:
    """The smallest value a schema accepts (the first alternative's)."""
    alt = _alternatives(spec, prop)[0]
    if "enum" in alt:
        return alt["enum"][0]
    kind = alt.get("type")
    if kind == "object":
        return {name: valid(spec, alt["properties"][name]) for name in alt.get("required", [])}
    if kind == "array":
        return [valid(spec, alt["items"]) for _ in range(alt.get("minItems", 0))]
    return {"string": "a" * alt.get("minLength", 0), "integer": alt.get("minimum", 0),
            "number": alt.get("minimum", 0), "boolean": False}[kind]


# a value of each JSON type, in the order a wrong one is picked
_OF_TYPE = {"boolean": True, "string": "x", "object": {"x": 1}, "array": ["x"], "number": 0.5}


def probes(spec: dict[str, Any], name: str,
           prop: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(what, value, accepted) for each constraint the schema states of ``name``."""
    alts = _alternatives(spec, prop)
    kinds = {"string" if "enum" in a else a.get("type") for a in alts}
    out: list[tuple[str, Any, bool]] = []
    wrong = next((v for k, v in _OF_TYPE.items() if k not in kinds), None)
    if None not in kinds and wrong is not None:
        out += [("type", valid(spec, prop), True), ("type", wrong, False)]
    for alt in alts:
        kind = alt.get("type")
        # past 2**53 a JSON number is not exact in every decoder: a step it cannot round away
        largest = max(abs(alt.get("minimum", 0)), abs(alt.get("maximum", 0)))
        step = 0.5 if kind != "integer" else 1 if largest < 2**53 else 2**12
        if "minimum" in alt:
            out += [("minimum", alt["minimum"], True), ("minimum", alt["minimum"] - step, False)]
        if "maximum" in alt:
            out += [("maximum", alt["maximum"], True), ("maximum", alt["maximum"] + step, False)]
        if "enum" in alt:
            out += [("enum", v, True) for v in alt["enum"]] + [("enum", "zz-none-of-these", False)]
        if "maxLength" in alt:
            inside = INSIDE_TEXT.get(name, "a" * alt["maxLength"])
            out += [("maxLength", inside, True), ("maxLength", "a" * (alt["maxLength"] + 1), False)]
        if alt.get("minLength"):
            out += [("minLength", "a" * alt["minLength"], True),
                    ("minLength", "a" * (alt["minLength"] - 1), False)]
        if "maxItems" in alt:
            item = valid(spec, alt["items"])
            out += [("maxItems", [item] * alt["maxItems"], True),
                    ("maxItems", [item] * (alt["maxItems"] + 1), False)]
        if alt.get("minItems"):
            item = valid(spec, alt["items"])
            out += [("minItems", [item] * alt["minItems"], True),
                    ("minItems", [item] * (alt["minItems"] - 1), False)]
    return out


def _send(gw, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    key = ADMIN_KEY if path.startswith("/admin") else gw.key
    url = gw.base_url + path.replace("{id}", gw.key_id)
    return httpx.request(method.upper(), url, content=json.dumps(body).encode(), timeout=60,
                         headers={"Authorization": f"Bearer {key}",
                                  "content-type": "application/json"})


def _names(r: httpx.Response, path: str, name: str) -> bool:
    """Whether ``r`` is a 400 naming parameter ``name``."""
    if r.status_code != 400:
        return False
    if path.startswith("/v1/messages"):  # Anthropic's shape: the message names it
        return f"'{name}'" in r.json()["error"]["message"]
    return r.json()["error"]["param"] == name


CASES = [(m, p) for (m, p) in BODY_TYPES if p != "/v1/messages/count_tokens"]


@pytest.mark.parametrize("method,path", CASES, ids=[p for _, p in CASES])
def test_each_constraint_in_the_document_is_the_validators(gw, spec, method, path):
    body = _body_schema(spec, method, path)
    base = BASES[path]
    failures = []
    for name, prop in body["properties"].items():
        found = probes(spec, name, prop)
        if not found:
            failures.append(f"{name}: the document states nothing to check it by")
        for what, value, accepted in found:
            sent = {**base, **COMPANIONS.get((path, name), {}), name: value}
            r = _send(gw, method, path, sent)
            if r.status_code >= 500 and r.status_code != 502 or \
                    _names(r, path, name) != (not accepted):
                failures.append(f"{name} {what} {json.dumps(value)[:60]}: "
                                f"{r.status_code} {r.text[:200]}")
    for name in body.get("required", []):
        r = _send(gw, method, path, {k: v for k, v in base.items() if k != name})
        if not _names(r, path, name):
            failures.append(f"{name} missing: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)


def test_usage_query_constraints_are_the_validators(gw, spec):
    failures = []
    for param in spec["paths"]["/admin/usage"]["get"]["parameters"]:
        name = param["name"]
        for what, value, accepted in probes(spec, name, param["schema"]):
            if what == "type" and isinstance(value, int | float):
                continue  # a query string has no types beside text
            r = gw.admin("GET", "/admin/usage", params={name: value})
            if _names(r, "/admin/usage", name) != (not accepted):
                failures.append(f"{name} {what} {str(value)[:60]}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
