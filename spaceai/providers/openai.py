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
from spaceai.providers.deadline import StreamClock, attempt_deadlines
from spaceai.providers.events import NamedEvent, StreamEvent
from spaceai.providers.http import HttpClient
from spaceai.providers.openai_errors import openai_error
from spaceai.providers.openai_stream import OpenAIStreamDecoder, WireBlock
from spaceai.providers.sse import SSEParser
from spaceai.types import ChatRequest, EmbeddingRequest, UpstreamError, Usage


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
        raise openai_error(model, event)
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
        head_by, done_by = attempt_deadlines(model)
        resp = await self.http.send(model, path, self._headers(model, False), orjson.dumps(body),
                                    head_by)
        try:
            raw = await self.http.read(resp, model, done_by)
        finally:
            resp.release()
        if resp.status >= 400:
            raise openai_error(model, raw, resp.status, headers=resp.headers)
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

    def chat_stream(self, req: ChatRequest, model: ModelConfig) -> AsyncIterator[StreamEvent]:
        return self._stream("/chat/completions", _body(req, model, True), model, req)

    def completion_stream(self, req: ChatRequest, model: ModelConfig) -> AsyncIterator[StreamEvent]:
        return self._stream("/completions", _body(req, model, True), model, req)

    async def responses(self, body: dict[str, Any], model: ModelConfig) -> dict[str, Any]:
        return await self._post("/responses", {**body, "model": model.upstream_model}, model)

    async def responses_stream(self, body: dict[str, Any],
                               model: ModelConfig) -> AsyncIterator[NamedEvent]:
        """A Responses body streamed: its events, the terminal one (``response.completed``,
        ``.incomplete`` or ``.failed``) carrying the response's usage as ``final_usage``;
        each output delta counts as produced."""
        payload = orjson.dumps({**body, "model": model.upstream_model, "stream": True})
        clock = StreamClock(model)
        resp = await self.http.send(model, "/responses", self._headers(model, True), payload,
                                    clock.at)
        try:
            if resp.status >= 400:
                raw = await self.http.read(resp, model, clock.at)
                raise openai_error(model, raw, resp.status, headers=resp.headers)
            parser, finished = SSEParser(), False
            try:
                while data := await resp.receive(clock.at):
                    for _, raw_event in parser.feed(data):
                        event = _responses_event(raw_event, model)
                        kind = event.get("type") or ""
                        finished = kind in RESPONSES_TERMINAL
                        if kind not in _RESPONSES_KEEPALIVE:
                            clock.progress()
                        response = event.get("response")
                        yield NamedEvent(kind, event, int(kind in _RESPONSES_OUTPUT), (
                            Usage.from_responses(response.get("usage"))
                            if finished and isinstance(response, dict) else None))
                    if finished:
                        break
            except TimeoutError:
                raise clock.expired() from None
            except OSError as exc:
                raise UpstreamError(502, f"model {model.id}: upstream stream ended before "
                                    f"completion ({type(exc).__name__})") from None
            if not finished:
                raise UpstreamError(502, f"model {model.id}: upstream stream ended before "
                                    "completion")
        finally:
            resp.release()  # pooled if its body was read to the end, else closed

    async def _stream(self, path: str, body: dict, model: ModelConfig,
                      req: ChatRequest) -> AsyncIterator[StreamEvent]:
        clock = StreamClock(model)
        resp = await self.http.send(model, path, self._headers(model, True), orjson.dumps(body),
                                    clock.at)
        try:
            if resp.status >= 400:
                raw = await self.http.read(resp, model, clock.at)
                raise openai_error(model, raw, resp.status, headers=resp.headers)
            decoder = OpenAIStreamDecoder(model)
            receive = resp.receive
            try:
                while data := await receive(clock.at):
                    items = decoder.feed(data)
                    if items and _moves(items):
                        clock.progress()
                    for item in items:
                        yield item
                    if decoder.failed is not None:
                        raise decoder.failed
                    if decoder.done:
                        break
            except TimeoutError:
                raise clock.expired(decoder.usage_so_far()) from None
            except OSError as exc:
                raise decoder.cut(type(exc).__name__) from None
            if not decoder.done:
                raise decoder.cut()
            yield decoder.final()
        finally:
            resp.release()  # pooled if its body was read to the end, else closed


# Responses events that say the stream lives but carry nothing new (no progress for deadlines)
_RESPONSES_KEEPALIVE = frozenset({"response.created", "response.in_progress", "keepalive"})
# Responses events that carry output (what is billed if the stream ends without usage)
_RESPONSES_OUTPUT = frozenset({"response.output_text.delta",
                               "response.function_call_arguments.delta"})


def _moves(items: list) -> bool:
    """Whether decoded stream items carry content (keep-alives and empty deltas do not)."""
    for item in items:
        if type(item) is WireBlock:
            if item.produced:
                return True
        else:
            for choice in item.get("choices") or ():
                if choice.get("finish_reason") or choice.get("text"):
                    return True
                delta = choice.get("delta") or {}
                if any(v for k, v in delta.items() if k != "role"):
                    return True
    return False
