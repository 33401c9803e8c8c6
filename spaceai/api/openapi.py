"""GET /openapi.json: the gateway's OpenAPI 3.1 description, built once."""

from __future__ import annotations

from typing import Any

import orjson

from spaceai import __version__
from spaceai.api.http import JSON_CT, MAX_JSON_DEPTH, Request, Response
from spaceai.api.schemas import SCHEMAS, UsageQuery, query_parameters

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


def _query(name: str, schema: dict[str, Any] | str = "string") -> dict:
    """A query parameter; ``schema`` a JSON Schema, or just its type's name."""
    if isinstance(schema, str):
        schema = {"type": schema}
    return {"name": name, "in": "query", "required": False, "schema": schema}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "SpaceAI", "version": __version__,
             "description": "One OpenAI-compatible API in front of many models, metered to the "
                            "token. Every request body is JSON nested at most "
                            f"{MAX_JSON_DEPTH} levels deep; anything else is a 400. A request is honoured on "
                            "the model it reaches or refused with a 400 naming what cannot be "
                            "honoured (param): tools on a model without the tools capability, "
                            "response_format without json_schema, images without vision, "
                            "parameters a translated provider cannot honour. A model configured "
                            "with drop_unsupported drops those parameters instead and names "
                            "them in the x-spaceai-dropped header."},
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
        "/v1/responses": {"post": _op("OpenAI Responses API in front of any chat model (SSE "
                                      "events when stream is true; store, previous_response_id)",
                                      body="ResponsesRequest", ok="Response")},
        "/v1/responses/{id}": {
            "get": _op("Retrieve a stored response (the key's own)", ok="Response",
                       params=[_path_param("id")]),
            "delete": _op("Delete a stored response", params=[_path_param("id")]),
        },
        "/v1/responses/{id}/input_items": {"get": _op(
            "The input items of a stored response (OpenAI's list shape)", params=[
                _path_param("id"), _query("order", {"type": "string", "enum": ["asc", "desc"]}),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
                _query("after", {"type": "string"})])},
        "/v1/key": {"get": _op("The calling key's limits, budget and spend", ok="Key")},
        "/admin/keys": {
            "get": _op("List keys", auth="admin"),
            "post": _op("Create a key (the secret is shown once)", auth="admin", body="KeyCreate",
                        ok="Key"),
        },
        "/admin/keys/{id}": {"delete": _op("Revoke a key", auth="admin", ok="Key",
                                           params=[_path_param("id")])},
        "/admin/usage": {"get": _op("Usage rows and totals", auth="admin",
                                    params=query_parameters(UsageQuery))},
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
            **SCHEMAS,
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                "type": "object", "properties": {
                    "message": {"type": "string"}, "type": {"type": "string"},
                    "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
            "Model": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string", "enum": ["model"]},
                "created": {"type": "integer"}, "owned_by": {"type": "string"},
                "capabilities": {"type": "array", "items": {"type": "string", "enum": [
                    "chat", "completions", "embeddings", "tools", "json_schema", "vision",
                    "reasoning"]}, "description": "the endpoints the model serves (chat, "
                    "completions, embeddings), then the features it honours: tools (function "
                    "calling), json_schema (structured output: response_format / text.format), "
                    "vision (image input), reasoning (no default temperature; max_tokens sent "
                    "as max_completion_tokens)"},
                "context_window": {"type": "integer"},
                "max_output_tokens": {"type": "integer"},
                "pricing": {"type": "object", "properties": {
                    "input": {"type": "number"}, "output": {"type": "number"}}}}},
            "ModelList": {"type": "object", "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}}},
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
            "Response": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string", "enum": ["response"]},
                "created_at": {"type": "integer"}, "model": {"type": "string"},
                "status": {"type": "string", "enum": [
                    "completed", "incomplete", "failed", "in_progress"]},
                "output": {"type": "array", "items": {"type": "object"}},
                "previous_response_id": {"type": ["string", "null"]},
                "usage": {"type": "object", "properties": {
                    "input_tokens": {"type": "integer"}, "output_tokens": {"type": "integer"},
                    "total_tokens": {"type": "integer"}, "cost": {"type": "number"},
                    "input_tokens_details": {"type": "object"},
                    "output_tokens_details": {"type": "object"}}}}},
            "Key": {"type": "object", "properties": {
                "id": {"type": "string"}, "name": {"type": ["string", "null"]},
                "prefix": {"type": "string"}, "models": {"type": ["array", "null"]},
                "budget": {"type": ["number", "null"]}, "spend": {"type": "number"},
                "remaining": {"type": ["number", "null"]}, "rpm": {"type": ["integer", "null"]},
                "tpm": {"type": ["integer", "null"]}, "expires_at": {"type": ["string", "null"]},
                "revoked": {"type": "boolean"}, "created_at": {"type": "string"},
                "log_bodies": {"type": ["boolean", "null"],
                               "description": "store this key's request and response bodies; "
                                              "null: the gateway's SPACEAI_LOG_BODIES"},
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
        "The request log, newest first: ledger rows with the key's name, the model asked for "
        "(model_requested) and the one that served (model), the deployment, retries and "
        "fallbacks taken, upstream_ms and overhead_ms (the gateway's own share of latency_ms)",
        auth="admin", params=[
            _query("key"),
            {**_query("model"), "description": "the model asked for, or the one that served"},
            {**_query("status"), "description": "ok, error (anything not ok), a row status "
                                                "(refused, invalid_request, timeout, ...) or an "
                                                "HTTP status"},
            _query("since"), _query("until"),
            {**_query("before", "integer"), "description": "a row id: the rows older than it "
                                                           "(next_before of the last page)"},
            {**_query("limit", "integer"), "description": "1 to 500, default 50"}])},
    "/admin/requests/{request_id}/bodies": {"get": _op(
        "A request's request and response bodies, when they were logged (SPACEAI_LOG_BODIES or "
        "the key's log_bodies; kept SPACEAI_LOG_BODIES_DAYS); logged false when none were",
        auth="admin", ok="RequestBodies", params=[_path_param("request_id")])},
    "/admin/models": {"get": _op("The live catalog with prices, capabilities, fallbacks and "
                                 "whether each model is configured", auth="admin")},
    "/admin/keys/activity": {"get": _op("When each key was last used", auth="admin")},
    "/admin/alerts": {"get": _op("Budget alerts sent (or being sent), newest first, with their "
                                 "delivery", auth="admin")},
    "/admin/reports/daily": {"post": _op(
        "Send a UTC day's spend report to the alert webhook now (once per day unless again)",
        auth="admin", params=[
            {"name": "day", "in": "query", "required": False, "schema": {
                "type": "string", "format": "date", "description": "default: yesterday"}},
            {"name": "again", "in": "query", "required": False,
             "schema": {"type": "boolean", "default": False}}])},
    "/console": {"get": _op("The operator console (HTML; asks for the admin key)", auth="none")},
})
_FIGURES = {"requests": {"type": "integer"}, "errors": {"type": "integer"},
            "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
            "cost": {"type": "number"}, "avg_latency_ms": {"type": ["number", "null"]},
            "p50_latency_ms": {"type": ["number", "null"]},
            "p95_latency_ms": {"type": ["number", "null"]}}
SPEC["components"]["schemas"].update({
    "RequestBodies": {"type": "object", "properties": {
        "object": {"type": "string", "enum": ["request.bodies"]},
        "request_id": {"type": "string"}, "logged": {"type": "boolean"},
        "key_id": {"type": ["string", "null"]},
        "request": {"type": ["string", "null"], "description": "the request's JSON, secrets "
                                                               "redacted"},
        "response": {"type": ["string", "null"], "description": "the answer's JSON, or the "
                                                                "text a stream produced"},
        "created_at": {"type": "string"}}},
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
