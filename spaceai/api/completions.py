"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import orjson

from spaceai.api import metered
from spaceai.api.http import Last, Request, Response, StreamResponse, json_response
from spaceai.api.validation import parse_chat, parse_completion
from spaceai.auth import request_token
from spaceai.bodies import stream_text
from spaceai.gateway import Gateway
from spaceai.providers.events import StreamEvent
from spaceai.types import ChatRequest, GatewayError, UpstreamError


async def chat_completions(gw: Gateway, request: Request) -> Response | StreamResponse:
    return await _complete(gw, request, parse_chat, "chat", "/v1/chat/completions")


async def completions(gw: Gateway, request: Request) -> Response | StreamResponse:
    return await _complete(gw, request, parse_completion, "completions", "/v1/completions")


async def _complete(gw: Gateway, request: Request, parse, capability: str,  # noqa: ANN001
                    endpoint: str) -> Response | StreamResponse:
    started = time.perf_counter()
    key = await gw.key_cache.authenticate(request_token(request))
    arrival = await metered.arrive(gw, request, key, endpoint, started)
    body = arrival.body
    req: ChatRequest = parse(body)
    call = await metered.admit(arrival, req, capability)
    log_body = gw.bodies.wanted(key)
    if not req.stream:
        try:
            _, data = await metered.complete(call)
        except GatewayError as exc:
            if log_body:
                gw.bodies.submit(request.request_id, key.id, body, exc.to_dict())
            raise
        if log_body:
            gw.bodies.submit(request.request_id, key.id, body, data)
        return json_response(200, data, call.headers)
    _, chunks = await metered.open_stream(call)
    if log_body:
        chunks = _kept(chunks, lambda text: gw.bodies.submit(request.request_id, key.id, body,
                                                             text))
    return StreamResponse(_relay(req, chunks), call.headers, on_close=call.abandon)


async def _kept(chunks: AsyncIterator[StreamEvent],
                done: Callable[[str], None]) -> AsyncIterator[StreamEvent]:
    """The stream's events, unchanged; its text handed to ``done`` when it ends (bodies log)."""
    seen: list[dict] = []
    try:
        async for event in chunks:
            seen.extend(event.chunks())
            yield event
    finally:
        await chunks.aclose()
        done(stream_text(seen))


async def _relay(req: ChatRequest, chunks: AsyncIterator[StreamEvent]) -> AsyncIterator[bytes]:
    """The SSE body: chunks as they come, the usage chunk when asked, then [DONE] or an error.

    From an OpenAI-compatible upstream, content arrives as blocks of wire bytes: each block
    (all the complete events of one upstream read) leaves in one write, as upstream sent it.
    """
    hide_usage = not req.include_usage
    usage = b""  # the usage chunk (the stream's last) leaves with [DONE]
    try:
        async for event in chunks:
            if usage:
                yield usage
                usage = b""
            if event.final_usage is not None:
                if not hide_usage:
                    usage = event.sse_bytes()
                continue
            yield event.sse_bytes()
        yield Last(usage + b"data: [DONE]\n\n")
    except UpstreamError as exc:
        yield Last(usage + b"data: " + orjson.dumps(exc.to_dict()) + b"\n\n")
    finally:
        await chunks.aclose()
