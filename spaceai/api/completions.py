"""POST /v1/chat/completions and POST /v1/completions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from spaceai.api.http import Request, Response, StreamResponse, json_response
from spaceai.api.validation import parse_chat, parse_completion
from spaceai.auth import authorize_model, bearer_token
from spaceai.catalog import ModelConfig
from spaceai.gateway import Gateway
from spaceai.metering.meter import Meter, status_of, usd, usd_header
from spaceai.types import ChatRequest, GatewayError, UpstreamError, Usage


def _has_output(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta is None:  # legacy text completion chunk
            if choice.get("text"):
                return True
        elif delta.get("content") or delta.get("tool_calls") or delta.get("refusal"):
            return True
    return False


async def chat_completions(gw: Gateway, request: Request) -> Response | StreamResponse:
    return await _complete(gw, request, parse_chat, "chat", "/v1/chat/completions")


async def completions(gw: Gateway, request: Request) -> Response | StreamResponse:
    return await _complete(gw, request, parse_completion, "completions", "/v1/completions")


async def _complete(gw: Gateway, request: Request, parse, capability: str,  # noqa: ANN001
                    endpoint: str) -> Response | StreamResponse:
    started = time.perf_counter()
    key = await gw.key_cache.authenticate(bearer_token(request.header(b"authorization")))
    req: ChatRequest = parse(await request.json(gw.settings.max_body_bytes))
    model = authorize_model(key, req.model, gw.catalog, capability)
    admission = await gw.control.admit(key, model, req)
    meter = Meter(gw.ledger, gw.control, request.request_id, key, model, req, admission, endpoint,
                  started)
    headers = list(admission.headers)
    if not req.stream:
        try:
            served, data = await gw.router.complete(req, model)
        except GatewayError as exc:
            usage = exc.usage if isinstance(exc, UpstreamError) else Usage()
            await meter.finish(model, usage, status_of(exc), exc.status, exc.message)
            exc.headers.update({k.decode(): v.decode() for k, v in headers})
            raise
        usage = Usage.from_openai(data.get("usage"))
        nanos = await meter.finish(served, usage, "ok", 200)
        data["usage"] = usage.to_openai(cost=usd(nanos))
        headers.append((b"x-spaceai-cost", usd_header(nanos)))
        return json_response(200, data, headers)
    try:
        served, first, rest = await gw.router.open_stream(req, model)
    except GatewayError as exc:
        usage = exc.usage if isinstance(exc, UpstreamError) else Usage()
        await meter.finish(model, usage, status_of(exc), exc.status, exc.message)
        exc.headers.update({k.decode(): v.decode() for k, v in headers})
        raise
    return StreamResponse(_relay(meter, served, req, first, rest), headers)


async def _relay(meter: Meter, served: ModelConfig, req: ChatRequest, first: dict[str, Any],
                 rest: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The SSE body: chunks as they come, the usage chunk when asked, then [DONE] or an error."""
    dumps = orjson.dumps
    produced = 0
    usage: Usage | None = None
    status, http_status, error = "client_disconnected", 499, "client disconnected mid-stream"
    try:
        chunk: dict[str, Any] | None = first
        while chunk is not None:
            if chunk.get("usage") and not chunk.get("choices"):
                usage = Usage.from_openai(chunk["usage"])
                status, http_status, error = "ok", 200, None
                nanos = await meter.finish(served, usage, status, http_status)
                if req.include_usage:
                    chunk["usage"] = usage.to_openai(cost=usd(nanos))
                    yield b"data: " + dumps(chunk) + b"\n\n"
            else:
                if _has_output(chunk):
                    produced += 1
                    meter.first_token()
                yield b"data: " + dumps(chunk) + b"\n\n"
            try:
                chunk = await rest.__anext__()
            except StopAsyncIteration:
                chunk = None
        yield b"data: [DONE]\n\n"
    except UpstreamError as exc:
        status, http_status, error = status_of(exc), exc.status, exc.message
        usage = exc.usage  # what upstream reported before failing, if anything
        usage.completion_tokens = max(usage.completion_tokens, produced)
        yield b"data: " + dumps(exc.to_dict()) + b"\n\n"
    finally:
        await rest.aclose()
        if usage is None:
            usage = Usage(completion_tokens=produced)
        await meter.finish(served, usage, status, http_status, error)
