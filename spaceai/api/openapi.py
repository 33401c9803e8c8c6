"""GET /openapi.json: the gateway's OpenAPI 3.1 description, built once."""

from __future__ import annotations

from typing import Any

import orjson

from spaceai import __version__
from spaceai.api.http import JSON_CT, Request, Response

_ERROR = {"$ref": "#/components/schemas/Error"}


def _op(summary: str, *, body: str | None = None, ok: str | None = None, auth: str = "key",
        params: list | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{ok}"} if ok else {"type": "object"}}}},
            "default": {"description": "Error", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if auth == "key":
        op["security"] = [{"bearer": []}]
    elif auth == "admin":
        op["security"] = [{"admin": []}]
    else:
        op["security"] = []
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, kind: str = "string") -> dict:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "SpaceAI", "version": __version__,
             "description": "One OpenAI-compatible API in front of many models, metered to the "
                            "token."},
    "paths": {
        "/v1/models": {"get": _op("List models", ok="ModelList")},
        "/v1/models/{id}": {"get": _op("Retrieve a model", ok="Model",
                                       params=[_path_param("id")])},
        "/v1/chat/completions": {"post": _op("Create a chat completion (SSE when stream is true)",
                                             body="ChatCompletionRequest", ok="ChatCompletion")},
        "/v1/completions": {"post": _op("Create a legacy text completion",
                                        body="CompletionRequest")},
        "/v1/embeddings": {"post": _op("Create embeddings (float or base64)",
                                       body="EmbeddingRequest")},
        "/v1/messages": {"post": _op("Anthropic Messages API in front of any chat model "
                                     "(x-api-key or Bearer; SSE when stream is true)",
                                     body="MessagesRequest")},
        "/v1/messages/count_tokens": {"post": _op("Count the input tokens of a Messages request",
                                                  body="MessagesRequest")},
        "/v1/key": {"get": _op("The calling key's limits, budget and spend", ok="Key")},
        "/admin/keys": {
            "get": _op("List keys", auth="admin"),
            "post": _op("Create a key (the secret is shown once)", auth="admin", body="KeyCreate",
                        ok="Key"),
        },
        "/admin/keys/{id}": {"delete": _op("Revoke a key", auth="admin", ok="Key",
                                           params=[_path_param("id")])},
        "/admin/usage": {"get": _op("Usage rows and totals", auth="admin", params=[
            _query("key"), _query("model"), _query("since"), _query("until"),
            _query("limit", "integer"), _query("offset", "integer")])},
        "/health/live": {"get": _op("Liveness", auth="none")},
        "/health/ready": {"get": _op("Readiness (database, Redis)", auth="none")},
        "/metrics": {"get": _op("Prometheus metrics (text format)", auth="none")},
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "sk-space-... API key"},
            "admin": {"type": "http", "scheme": "bearer", "description": "SPACEAI_ADMIN_KEY"},
        },
        "schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"},
                    "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
            "Model": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string", "enum": ["model"]},
                "created": {"type": "integer"}, "owned_by": {"type": "string"},
                "capabilities": {"type": "array", "items": {"type": "string"}},
                "pricing": {"type": "object", "properties": {
                    "input": {"type": "number"}, "output": {"type": "number"}}}}},
            "ModelList": {"type": "object", "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
            "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"],
                                      "properties": {
                "model": {"type": "string"},
                "messages": {"type": "array", "minItems": 1, "items": {"type": "object",
                             "required": ["role"], "properties": {
                                 "role": {"type": "string", "enum": [
                                     "system", "developer", "user", "assistant", "tool"]},
                                 "content": {}}}},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "max_tokens": {"type": "integer", "minimum": 1},
                "max_completion_tokens": {"type": "integer", "minimum": 1},
                "stream": {"type": "boolean", "default": False},
                "stream_options": {"type": "object", "properties": {
                    "include_usage": {"type": "boolean"}}},
                "stop": {"oneOf": [{"type": "string"}, {"type": "array", "maxItems": 4,
                                                         "items": {"type": "string"}}]},
                "n": {"type": "integer", "minimum": 1, "maximum": 128},
                "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                "seed": {"type": "integer"}, "user": {"type": "string"},
                "tools": {"type": "array"}, "tool_choice": {}, "response_format": {"type": "object"},
            }},
            "CompletionRequest": {"type": "object", "required": ["model", "prompt"], "properties": {
                "model": {"type": "string"}, "prompt": {"type": "string"},
                "max_tokens": {"type": "integer", "minimum": 1, "default": 16},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7},
                "stream": {"type": "boolean"}}},
            "ChatCompletion": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string", "enum": ["chat.completion"]},
                "created": {"type": "integer"}, "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object", "properties": {
                    "index": {"type": "integer"},
                    "message": {"type": "object", "properties": {
                        "role": {"type": "string", "enum": ["assistant"]},
                        "content": {"type": ["string", "null"]}}},
                    "finish_reason": {"type": "string"}}}},
                "usage": {"$ref": "#/components/schemas/Usage"}}},
            "Usage": {"type": "object", "properties": {
                "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"}, "cost": {"type": "number"}}},
            "EmbeddingRequest": {"type": "object", "required": ["model", "input"], "properties": {
                "model": {"type": "string"},
                "input": {"oneOf": [{"type": "string"}, {"type": "array"}]},
                "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                "dimensions": {"type": "integer", "minimum": 1}, "user": {"type": "string"}}},
            "MessagesRequest": {"type": "object", "required": ["model", "messages", "max_tokens"],
                                "properties": {
                "model": {"type": "string"}, "messages": {"type": "array"},
                "max_tokens": {"type": "integer", "minimum": 1},
                "system": {"oneOf": [{"type": "string"}, {"type": "array"}]},
                "stop_sequences": {"type": "array", "items": {"type": "string"}},
                "temperature": {"type": "number"}, "top_p": {"type": "number"},
                "top_k": {"type": "integer"}, "stream": {"type": "boolean"},
                "tools": {"type": "array"}, "tool_choice": {"type": "object"}}},
            "KeyCreate": {"type": "object", "properties": {
                "name": {"type": "string"}, "models": {"type": "array", "items": {"type": "string"}},
                "budget": {"type": "number"}, "budget_period": {"type": "string",
                                                                  "enum": ["monthly"]},
                "rpm": {"type": "integer"}, "tpm": {"type": "integer"},
                "expires": {"type": "string", "description": "ISO 8601 or a duration like 30d"}}},
            "Key": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": ["string", "null"]},
                "prefix": {"type": "string"}, "models": {"type": ["array", "null"]},
                "budget": {"type": ["number", "null"]}, "spend": {"type": "number"},
                "remaining": {"type": ["number", "null"]}, "rpm": {"type": ["integer", "null"]},
                "tpm": {"type": ["integer", "null"]}, "expires_at": {"type": ["string", "null"]},
                "revoked": {"type": "boolean"}, "created_at": {"type": "string"},
                "key": {"type": "string", "description": "only in the create answer"}}},
        },
    },
}

# the operator console's endpoints (GET /console is the page itself)
SPEC["paths"]["/admin/keys/{id}"]["patch"] = _op(
    "Change a key's name, models, budget, rpm, tpm or expiry (null removes a limit); the new "
    "limits hold from the key's next request", auth="admin", body="KeyUpdate", ok="Key",
    params=[_path_param("id")])
SPEC["paths"].update({
    "/admin/overview": {"get": _op(
        "Spend, requests, errors, tokens and p50/p95 latency per hour or day, by key and by "
        "model, summed from the hourly rollup", auth="admin", ok="Overview", params=[
            {**_query("window"), "schema": {"type": "string", "enum": ["24h", "7d", "30d"],
                                            "default": "24h"}},
            {**_query("bucket"), "schema": {"type": "string", "enum": ["hour", "day"]},
             "description": "default: hour for 24h, day for 7d and 30d"},
            _query("key"), _query("model"),
            {**_query("split"), "schema": {"type": "string", "enum": ["key_id", "model"]},
             "description": "adds series: cost and requests per bucket for each key or model"}])},
    "/admin/requests": {"get": _op(
        "The request log, newest first: ledger rows with the key's name", auth="admin", params=[
            _query("key"), _query("model"),
            {**_query("status"), "description": "ok, error (anything not ok), a row status "
                                                "(refused, timeout, ...) or an HTTP status"},
            _query("since"), _query("until"),
            {**_query("before", "integer"), "description": "a row id: the rows older than it "
                                                           "(next_before of the last page)"},
            {**_query("limit", "integer"), "description": "1 to 500, default 50"}])},
    "/admin/models": {"get": _op("The live catalog with prices, capabilities, fallbacks and "
                                 "whether each model is configured", auth="admin")},
    "/admin/keys/activity": {"get": _op("When each key was last used", auth="admin")},
    "/admin/alerts": {"get": _op("Budget alerts sent (or being sent), newest first, with their "
                                 "delivery", auth="admin")},
    "/console": {"get": _op("The operator console (HTML; asks for the admin key)", auth="none")},
})
_FIGURES = {"requests": {"type": "integer"}, "errors": {"type": "integer"},
            "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
            "cost": {"type": "number"}, "avg_latency_ms": {"type": ["number", "null"]},
            "p50_latency_ms": {"type": ["number", "null"]},
            "p95_latency_ms": {"type": ["number", "null"]}}
SPEC["components"]["schemas"].update({
    "KeyUpdate": {"type": "object", "properties": {
        "name": {"type": ["string", "null"]},
        "models": {"type": ["array", "null"], "items": {"type": "string"}},
        "budget": {"type": ["number", "null"]}, "rpm": {"type": ["integer", "null"]},
        "tpm": {"type": ["integer", "null"]},
        "expires_at": {"type": ["string", "null"],
                       "description": "ISO 8601 or a duration like 30d; null: never"},
        "alert_thresholds": {"type": ["array", "null"], "items": {"type": "integer"},
                             "description": "budget alert thresholds in percent; null: the "
                                            "gateway's default (SPACEAI_ALERT_THRESHOLDS)"}}},
    "Overview": {"type": "object", "properties": {
        "window": {"type": "string"}, "bucket": {"type": "string"},
        "since": {"type": "string", "description": "start of the first bucket (UTC)"},
        "buckets": {"type": "array", "items": {"type": "object", "properties": {
            "start": {"type": "string"}, **_FIGURES}}},
        "totals": {"type": "object", "properties": _FIGURES},
        "by_key": {"type": "array", "items": {"type": "object", "properties": {
            "key_id": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]},
            **_FIGURES}}},
        "by_model": {"type": "array", "items": {"type": "object", "properties": {
            "model": {"type": "string"}, **_FIGURES}}},
        "series": {"type": "array", "description": "with split: cost and requests per bucket, "
                                                   "one entry per key_id or model"}}},
})

_BODY = orjson.dumps(SPEC)


async def openapi_response(gw, request: Request) -> Response:  # noqa: ANN001
    return Response(200, _BODY, [JSON_CT])
