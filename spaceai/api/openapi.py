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
                            "token. A request is honoured on the model it reaches or refused "
                            "with a 400 naming what cannot be honoured (param): tools on a model "
                            "without the tools capability, response_format without json_schema, "
                            "images without vision, parameters a translated provider cannot "
                            "honour. A model configured with drop_unsupported drops those "
                            "parameters instead and names them in the x-spaceai-dropped header."},
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
                _path_param("id"), _query("order"), _query("limit", "integer"),
                _query("after")])},
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
            "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"],
                                      "additionalProperties": True,
                                      "description": "Parameters not listed here are forwarded "
                                      "unchanged to OpenAI-compatible upstreams (a 400 naming "
                                      "them on a model with strict_params); Anthropic and local "
                                      "models refuse what they cannot honour with a 400 naming "
                                      "it, or drop it (drop_unsupported) and name it in "
                                      "x-spaceai-dropped.",
                                      "properties": {
                "model": {"type": "string"},
                "messages": {"type": "array", "minItems": 1, "items": {"type": "object",
                             "required": ["role"], "properties": {
                                 "role": {"type": "string", "enum": [
                                     "system", "developer", "user", "assistant", "tool"]},
                                 "content": {}}}},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.7,
                                "description": "default 0.7; none is sent to a reasoning "
                                "model unless given"},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "max_tokens": {"type": "integer", "minimum": 1, "description": "sent as "
                               "max_completion_tokens where the upstream needs it"},
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
                "tools": {"type": "array", "description": "models with the tools capability; "
                          "a 400 with param tools otherwise"},
                "tool_choice": {},
                "response_format": {"type": "object", "description": "json_schema or "
                                    "json_object on models with the json_schema capability: "
                                    "passed to OpenAI, a forced tool on Claude (the answer is "
                                    "the JSON text of message.content), grammar-constrained "
                                    "decoding on the local model"},
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
                "input": {"oneOf": [{"type": "string"}, {"type": "array"}], "description":
                          "text, texts, or token arrays: OpenAI cl100k_base ids (the local "
                          "model decodes them and embeds the text, or answers 400 saying to "
                          "send text)"},
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
            "ResponsesRequest": {"type": "object", "required": ["model", "input"],
                                 "properties": {
                "model": {"type": "string"},
                "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {
                    "type": "object", "description": "message (input_text / input_image "
                    "parts), function_call, function_call_output or reasoning item"}}]},
                "instructions": {"type": "string"},
                "max_output_tokens": {"type": "integer", "minimum": 1},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "tools": {"type": "array", "description": "function tools; hosted tools "
                          "(web_search, ...) are dropped and named in x-spaceai-dropped"},
                "tool_choice": {}, "parallel_tool_calls": {"type": "boolean"},
                "text": {"type": "object", "properties": {"format": {"type": "object"}}},
                "reasoning": {"type": "object"}, "metadata": {"type": "object"},
                "user": {"type": "string"}, "store": {"type": "boolean", "default": True},
                "previous_response_id": {"type": "string"},
                "stream": {"type": "boolean", "default": False},
                "include": {"type": "array", "items": {"type": "string"}}}},
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

_BODY = orjson.dumps(SPEC)


async def openapi_response(gw, request: Request) -> Response:  # noqa: ANN001
    return Response(200, _BODY, [JSON_CT])
