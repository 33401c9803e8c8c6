"""POST /v1/messages and POST /v1/messages/count_tokens: Anthropic's Messages API in front of
every catalog model with the ``chat`` capability.

A Claude model (provider ``anthropic``) gets the client's body as it is and answers natively
(:mod:`spaceai.providers.anthropic.native`); any other model goes through the one internal
representation: :func:`messages_to_chat_request` -> router -> :func:`completion_to_message`
or :class:`AnthropicStreamEncoder`. Admission, limits, budgets and metering are the ones of
``/v1/chat/completions`` (:mod:`spaceai.api.metered`). Every error on this surface, ours or
upstream's, is Anthropic-shaped: ``{"type": "error", "error": {"type", "message"}}``.

What Claude Code sends works on every model: ``role: system`` entries of ``messages`` (folded
into ``system`` for Claude, system messages in place otherwise), ``thinking``,
``context_management``, ``output_config`` and ``cache_control`` (honoured by Claude; hints a
translated model ignores, except ``output_config.format``, translated to
``response_format``), ``?beta=true``, and the ``anthropic-beta`` / ``anthropic-version``
headers (carried to Claude upstreams). What only Claude can do (server tools, MCP servers,
documents...) is refused with a 400 naming it when the model is not a Claude model.

``count_tokens`` is exact where the model can count (a Claude upstream's own
``/v1/messages/count_tokens``; the local model's tokenizer), else an upper bound
(:func:`~spaceai.metering.tokens.max_prompt_tokens`): never below the real prompt.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from spaceai.api import metered
from spaceai.api.http import Request, Response, StreamResponse, json_response
from spaceai.auth import authorize_model, request_token
from spaceai.bodies import logged
from spaceai.catalog import ModelConfig
from spaceai.gateway import Gateway
from spaceai.keys import KeyRecord
from spaceai.metering.meter import Meter, status_of
from spaceai.metering.tokens import estimate_prompt_tokens, max_prompt_tokens
from spaceai.providers.anthropic.errors import to_anthropic_error
from spaceai.providers.anthropic.native import FORWARDED_HEADERS
from spaceai.providers.anthropic.reverse import (
    AnthropicStreamEncoder,
    claude_only_features,
    completion_to_message,
    messages_to_chat_request,
)
from spaceai.providers.base import Provider
from spaceai.providers.events import NamedEvent, named_sse
from spaceai.providers.fit import fit
from spaceai.router import first_chunk
from spaceai.types import GatewayError, UpstreamError, Usage

ENDPOINT = "/v1/messages"


def anthropic_error_response(err: GatewayError) -> Response:
    """A gateway error as Anthropic answers errors (same status, Anthropic's error type)."""
    headers = [(k.encode(), v.encode()) for k, v in err.headers.items()]
    return json_response(err.status, to_anthropic_error(err), headers)


def _forwarded_headers(request: Request) -> dict[str, str]:
    """The client's ``anthropic-beta`` / ``anthropic-version``, for a Claude upstream."""
    return {name.decode(): value for name in FORWARDED_HEADERS
            if (value := request.header(name))}


def _refuse_untranslatable(body: dict[str, Any], model: ModelConfig) -> None:
    features = claude_only_features(body)
    if features:
        raise GatewayError(400, f"The model `{model.id}` is not a Claude model: it cannot take "
                           f"{', '.join(features)} (only Claude models can).",
                           param="model", code="unsupported_parameter")


async def _authenticate(gw: Gateway, request: Request) -> KeyRecord:
    token = request_token(request)
    if not token:
        raise GatewayError(401, "x-api-key header is required (a SpaceAI key; "
                           "'Authorization: Bearer' works too).", type="authentication_error")
    try:
        return await gw.key_cache.authenticate(token)
    except GatewayError as exc:  # in Anthropic's words, which its clients recognise
        raise GatewayError(401, f"invalid x-api-key: {exc.message}",
                           type="authentication_error") from None


async def messages(gw: Gateway, request: Request) -> Response | StreamResponse:
    """POST /v1/messages (its errors rendered in Anthropic's shape by the app)."""
    started = time.perf_counter()
    key = await _authenticate(gw, request)
    arrival = await metered.arrive(gw, request, key, ENDPOINT, started)
    body = arrival.body
    req = messages_to_chat_request(body)
    call = await metered.admit(arrival, req, "chat",
                               native=lambda model: gw.providers[model.provider].speaks_messages)
    headers = _forwarded_headers(request)
    if req.stream:
        answer = await _stream(call, body, headers)
    else:
        answer = await _answer(call, body, headers)
    return logged(gw.bodies, request.request_id, key, body, answer)


async def count_tokens(gw: Gateway, request: Request) -> Response:
    """POST /v1/messages/count_tokens: ``{"input_tokens": N}`` (free, not metered)."""
    key = await _authenticate(gw, request)
    body = await request.json(gw.settings.max_body_bytes)
    if isinstance(body, dict):  # not part of count_tokens; large, for any thinking budget
        body = {**body, "max_tokens": 1 << 30, "stream": False}
    req = messages_to_chat_request(body)
    model = authorize_model(key, req.model, gw.catalog, "chat")
    provider = gw.providers[model.provider]
    tokens: int | None = None
    if provider.speaks_messages:
        if model.missing_credential():  # served by its fallbacks: no upstream of its own
            return json_response(200, {"input_tokens": max_prompt_tokens(req)})
        try:
            tokens = await provider.count_message_tokens(body, model, _forwarded_headers(request))
        except UpstreamError as exc:
            if exc.status != 404:  # an Anthropic-compatible server without count_tokens
                raise
    else:
        _refuse_untranslatable(body, model)
        tokens = await provider.count_tokens(req, model)
    if tokens is None:
        tokens = max_prompt_tokens(req)
    return json_response(200, {"input_tokens": tokens})


# -- non-streaming ---------------------------------------------------------------------------


async def _answer(call: metered.Call, body: dict[str, Any],
                  headers: dict[str, str]) -> Response:
    req = call.req

    async def attempt(provider: Provider, model: ModelConfig) -> tuple[str, dict[str, Any]]:
        if provider.speaks_messages:
            return "native", await provider.messages(body, model, headers)
        _refuse_untranslatable(body, model)
        return "openai", await provider.chat(fit(req, model).req, model)

    def usage_of(result: tuple[str, dict[str, Any]]) -> Usage:
        kind, data = result
        if kind == "native":
            return Usage.from_anthropic(data.get("usage"))
        return Usage.from_openai(data.get("usage"))

    served, (kind, data), _ = await metered.run(call, attempt, usage_of)
    if kind == "native":
        message = dict(data, model=req.model)
    else:
        message = completion_to_message(data, req.model, req.params.get("stop"))
    return json_response(200, message, call.headers)


# -- streaming -------------------------------------------------------------------------------


async def _stream(call: metered.Call, body: dict[str, Any],
                  headers: dict[str, str]) -> StreamResponse:
    req = call.req

    async def attempt(provider: Provider, model: ModelConfig):  # noqa: ANN202
        native = provider.speaks_messages
        if native:
            it = provider.messages_stream(body, model, headers)
        else:
            _refuse_untranslatable(body, model)
            it = provider.chat_stream(fit(req, model).req, model)
        first = await first_chunk(it, model)
        return native, first, call.gw.router.track(it, model)

    served, (native, first, rest) = await call.gw.router.run(call.model, attempt,
                                                            call.meter.route)
    call.source = rest
    if native:
        body_iter = _native_relay(call.meter, served, req.model, first, rest)
    else:
        encoder = AnthropicStreamEncoder(req.model, req.params.get("stop"),
                                         input_tokens=estimate_prompt_tokens(req))
        chunks = metered.metered_chunks(call.meter, served, first, rest)
        body_iter = _encode(encoder, chunks)
    return StreamResponse(body_iter, call.headers, on_close=call.abandon)


async def _encode(encoder: AnthropicStreamEncoder,
                  chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """OpenAI chunks (metered) as Anthropic's event sequence; a failure as an error event."""
    try:
        async for item in chunks:
            for chunk in item.chunks():
                out = encoder.encode(chunk)
                if out:
                    yield out
        yield encoder.finish()
    except UpstreamError as exc:
        yield encoder.error(exc)
    finally:
        await chunks.aclose()


async def _native_relay(meter: Meter, served: ModelConfig, model_id: str, first: NamedEvent,
                        rest: AsyncIterator[NamedEvent]) -> AsyncIterator[bytes]:
    """A Claude stream relayed event by event, its message labelled with the catalog model,
    metered from the usage the provider read out of it."""
    usage: Usage | None = None
    produced = 0
    status, http_status, error = "client_disconnected", 499, "client disconnected mid-stream"
    try:
        event: NamedEvent | None = first
        while event is not None:
            if event.name == "message_start":
                msg = event.data.get("message") or {}
                event.data = dict(event.data, message=dict(msg, model=model_id))
            elif event.produced:
                produced += event.produced
                meter.first_token()
            if event.final_usage is not None:
                usage = event.final_usage
                status, http_status, error = "ok", 200, None
                await meter.finish(served, usage, status, http_status)
            yield event.sse_bytes()
            try:
                event = await rest.__anext__()
            except StopAsyncIteration:
                event = None
    except UpstreamError as exc:
        status, http_status, error = status_of(exc), exc.status, exc.message
        usage = exc.usage  # what the stream reported before it failed
        usage.completion_tokens = max(usage.completion_tokens, produced)
        yield named_sse("error", to_anthropic_error(exc))
    finally:
        await rest.aclose()
        if usage is None:
            usage = Usage(completion_tokens=produced)
        await meter.finish(served, usage, status, http_status, error)

