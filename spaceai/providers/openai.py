"""OpenAI and every server that speaks its API (vLLM, llama.cpp server, Ollama, another SpaceAI).

Requests are forwarded with every OpenAI parameter; streams are relayed chunk by chunk.
Models configured with ``responses_api: native`` also take Responses API bodies as they are
(``/responses``, streamed as parsed events). Upstream
is always asked for usage in streams (``stream_options.include_usage``) so every token is
metered; the gateway hides that extra chunk from clients that did not ask for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from spaceai.catalog import ModelConfig
from spaceai.providers.base import Provider
from spaceai.providers.http import HttpClient, retry_after_seconds, upstream_failure
from spaceai.providers.openai_stream import OpenAIStreamDecoder
from spaceai.providers.sse import SSEParser
from spaceai.types import ChatRequest, EmbeddingRequest, UpstreamError


def _body(req: ChatRequest, model: ModelConfig, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model.upstream_model}
    if req.prompt is not None:
        body["prompt"] = req.prompt
    else:
        body["messages"] = req.messages
    body.update(req.params)
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _error_from_response(status: int, raw: bytes, headers: Any, model: ModelConfig) -> UpstreamError:
    message = ""
    try:
        err = orjson.loads(raw).get("error") or {}
        message = err.get("message") or ""
    except (orjson.JSONDecodeError, AttributeError):
        message = raw[:200].decode("utf-8", "replace")
    return upstream_failure(status, message, model, retry_after_seconds(headers))


RESPONSES_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _responses_event(raw: str, model: ModelConfig) -> dict[str, Any]:
    """One Responses stream event; an ``error`` event (or garbage) is an UpstreamError."""
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError(502, f"model {model.id}: invalid JSON in stream") from None
    if not isinstance(event, dict):
        raise UpstreamError(502, f"model {model.id}: unexpected stream event")
    if event.get("type") == "error":
        raise UpstreamError(502, f"model {model.id}: upstream error mid-stream: "
                            f"{event.get('message') or 'unknown error'}")
    return event


class OpenAIProvider(Provider):
    """The OpenAI-compatible adapter."""

    name = "openai"

    def __init__(self, http: HttpClient) -> None:
        self.http = http

    @staticmethod
    def _headers(model: ModelConfig, stream: bool) -> tuple[tuple[str, str], ...]:
        cred = model.credential()
        accept = "text/event-stream" if stream else "application/json"
        base = (("Content-Type", "application/json"), ("Accept", accept))
        return base + ((("Authorization", f"Bearer {cred}"),) if cred else ())

    async def _post(self, path: str, body: dict, model: ModelConfig) -> dict[str, Any]:
        resp = await self.http.send(model, path, self._headers(model, False), orjson.dumps(body))
        try:
            raw = await self.http.read(resp, model)
        finally:
            resp.release()
        if resp.status >= 400:
            raise _error_from_response(resp.status, raw, resp.headers, model)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError(502, f"model {model.id}: upstream answered with invalid JSON",
                                retryable=True) from None
        if not isinstance(data, dict):
            raise UpstreamError(502, f"model {model.id}: upstream answered with unexpected JSON",
                                retryable=True)
        data["model"] = model.id
        return data

    async def chat(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        return await self._post("/chat/completions", _body(req, model, False), model)

    async def completion(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        return await self._post("/completions", _body(req, model, False), model)

    async def embeddings(self, req: EmbeddingRequest, model: ModelConfig) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model.upstream_model, "input": req.inputs,
                                "encoding_format": req.encoding_format}
        if req.dimensions is not None:
            body["dimensions"] = req.dimensions
        if req.user is not None:
            body["user"] = req.user
        return await self._post("/embeddings", body, model)

    def chat_stream(self, req: ChatRequest, model: ModelConfig) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/chat/completions", _body(req, model, True), model, req)

    def completion_stream(self, req: ChatRequest, model: ModelConfig) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/completions", _body(req, model, True), model, req)

    async def responses(self, body: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
        return await self._post("/responses", {**body, "model": model.upstream_model}, model)

    async def responses_stream(self, body: dict[str, Any],
                               model: ModelConfig) -> AsyncIterator[dict[str, Any]]:
        payload = orjson.dumps({**body, "model": model.upstream_model, "stream": True})
        resp = await self.http.send(model, "/responses", self._headers(model, True), payload)
        clean = False
        try:
            if resp.status >= 400:
                raw = await self.http.read(resp, model)
                clean = True
                raise _error_from_response(resp.status, raw, resp.headers, model)
            parser, finished = SSEParser(), False
            try:
                async for data in resp.iter_chunks(model.timeout_s):
                    for _, raw_event in parser.feed(data):
                        event = _responses_event(raw_event, model)
                        finished = event.get("type") in RESPONSES_TERMINAL
                        yield event
                    if finished:
                        break
            except (TimeoutError, OSError) as exc:
                raise UpstreamError(502, f"model {model.id}: upstream stream ended before "
                                    f"completion ({type(exc).__name__})") from None
            if not finished:
                raise UpstreamError(502, f"model {model.id}: upstream stream ended before "
                                    "completion")
            clean = True
        finally:
            if clean:
                resp.release()
            else:
                resp.close()

    async def _stream(self, path: str, body: dict, model: ModelConfig,
                      req: ChatRequest) -> AsyncIterator[dict[str, Any]]:
        resp = await self.http.send(model, path, self._headers(model, True), orjson.dumps(body))
        clean = False
        try:
            if resp.status >= 400:
                raw = await self.http.read(resp, model)
                clean = True
                raise _error_from_response(resp.status, raw, resp.headers, model)
            decoder = OpenAIStreamDecoder(model)
            try:
                async for data in resp.iter_chunks(model.timeout_s):
                    for chunk in decoder.feed(data):
                        yield chunk
                    if decoder.failed is not None:
                        raise decoder.failed
                    if decoder.done:
                        break
            except (TimeoutError, OSError) as exc:
                raise decoder.cut(type(exc).__name__) from None
            if not decoder.done:
                raise decoder.cut()
            clean = True
            yield decoder.final()
        finally:
            if clean:
                resp.release()  # the connection goes back to the keep-alive pool
            else:
                resp.close()
