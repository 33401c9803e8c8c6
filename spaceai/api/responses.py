"""The OpenAI Responses API in front of every chat model.

``POST /v1/responses`` translates the request to the internal :class:`ChatRequest`
(:mod:`spaceai.api.responses_request`), goes through the same admission, router and metering
as ``/v1/chat/completions`` (:mod:`spaceai.api.metered`; ledger endpoint ``/v1/responses``)
and renders the chat answer or stream back (:mod:`spaceai.api.responses_render`); a model
configured with ``responses_api: native`` gets the body as it is instead
(:mod:`spaceai.api.responses_native`).
``store`` (default true) keeps the answer and its conversation, owned by the calling key
(:mod:`spaceai.storage.responses`), for ``previous_response_id`` — on any model, also
another provider's — and for ``GET``/``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items``. Another key's response is a 404.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from spaceai.api import metered, responses_native
from spaceai.api.http import Request, Response, StreamResponse, json_response
from spaceai.api.responses_native import is_native
from spaceai.api.responses_render import ResponsesStreamEncoder, render_response
from spaceai.api.responses_request import ResponsesRequest, new_id, parse_responses
from spaceai.api.validation import bad
from spaceai.auth import request_token
from spaceai.bodies import logged
from spaceai.gateway import Gateway
from spaceai.keys import KeyRecord
from spaceai.metering.meter import usd
from spaceai.storage.responses import StoredResponse
from spaceai.types import GatewayError, UpstreamError

ENDPOINT = "/v1/responses"


async def _key(gw: Gateway, request: Request) -> KeyRecord:
    return await gw.key_cache.authenticate(request_token(request))


def _not_found(response_id: str, param: str | None = None) -> GatewayError:
    return GatewayError(404, f"No response found with id '{response_id}'.", param=param,
                        code="response_not_found")


async def create_response(gw: Gateway, request: Request) -> Response | StreamResponse:
    """POST /v1/responses (its bodies logged when the operator turns it on)."""
    started, created_at = time.perf_counter(), int(time.time())
    key = await _key(gw, request)
    arrival = await metered.arrive(gw, request, key, ENDPOINT, started)
    answer = await _create_response(arrival, created_at)
    return logged(gw.bodies, request.request_id, key, arrival.body, answer)


async def _create_response(arrival: metered.Arrival,
                           created_at: int) -> Response | StreamResponse:
    gw, key, body = arrival.gw, arrival.key, arrival.body
    history = None
    previous = body.get("previous_response_id") if isinstance(body, dict) else None
    if previous is not None:
        if not isinstance(previous, str):
            raise bad("Invalid type for 'previous_response_id': expected a string.",
                      "previous_response_id", "invalid_type")
        stored = await gw.responses.get(previous, key.id)
        if stored is None:
            raise _not_found(previous, "previous_response_id")
        history = stored.history()
    rr = parse_responses(body, history)
    call = await metered.admit(arrival, rr.chat, "chat", native=is_native)
    native = is_native(call.model)
    if not native:
        call.note_dropped(rr.dropped)
    resp_id = new_id("resp")
    if not rr.chat.stream:
        if native:
            answer = await responses_native.answer(call, rr, body, resp_id, created_at)
        else:
            _, data = await metered.complete(call)
            answer = render_response(resp_id, rr.chat.model, rr.echo, created_at, data)
        await _store(gw, key, rr, answer)
        return json_response(200, answer, call.headers)
    if native:
        served, relayed, first, rest = await responses_native.open_stream(call, rr, body)
        if relayed:
            async def save(answer: dict[str, Any]) -> None:
                await _store(gw, key, rr, answer)

            return StreamResponse(
                responses_native.relay(call.meter, served, rr, resp_id, first, rest, save),
                call.headers, on_close=call.abandon)
        chunks = metered.metered_chunks(call.meter, served, first, rest)
    else:
        _, chunks = await metered.open_stream(call)
    encoder = ResponsesStreamEncoder(resp_id, rr.chat.model, rr.echo, created_at)
    return StreamResponse(_events(gw, key, rr, call, encoder, chunks), call.headers,
                          on_close=call.abandon)


async def _events(gw: Gateway, key: KeyRecord, rr: ResponsesRequest, call: metered.Call,
                  encoder: ResponsesStreamEncoder,
                  chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """The SSE body: the metered chat chunks as Responses events, stored before the last."""
    try:
        yield encoder.start()
        usage = None
        try:
            async for item in chunks:
                for chunk in item.chunks():
                    if chunk.final_usage is not None:
                        usage = chunk["usage"]  # priced by metered_chunks
                        continue
                    out = encoder.encode(chunk)
                    if out:
                        yield out
            last = encoder.finish(usage)
        except UpstreamError as exc:  # already recorded, with what was produced
            last = encoder.fail(exc, exc.usage.to_openai(cost=usd(call.meter.cost)))
        await _store(gw, key, rr, encoder.response)
        yield last
    finally:
        await chunks.aclose()


async def _store(gw: Gateway, key: KeyRecord, rr: ResponsesRequest,
                 answer: dict[str, Any] | None) -> None:
    if rr.store and answer is not None:
        await gw.responses.save(StoredResponse(answer["id"], key.id, answer["model"], answer,
                                               rr.input_items, rr.context))


async def _owned(gw: Gateway, request: Request, response_id: str) -> StoredResponse:
    key = await _key(gw, request)
    stored = await gw.responses.get(response_id, key.id)
    if stored is None:
        raise _not_found(response_id)
    return stored


async def get_response(gw: Gateway, request: Request) -> Response:
    """GET /v1/responses/{id} and GET /v1/responses/{id}/input_items."""
    path = request.path_params["id"]
    response_id, _, sub = path.partition("/")
    if sub == "input_items":
        return await _input_items(gw, request, response_id)
    if sub:
        raise GatewayError(404, f"Unknown request URL: GET {request.path}.", code="unknown_url")
    stored = await _owned(gw, request, response_id)
    return json_response(200, stored.body)


async def delete_response(gw: Gateway, request: Request) -> Response:
    """DELETE /v1/responses/{id}."""
    response_id = request.path_params["id"]
    key = await _key(gw, request)
    if not await gw.responses.delete(response_id, key.id):
        raise _not_found(response_id)
    return json_response(200, {"id": response_id, "object": "response", "deleted": True})


async def _input_items(gw: Gateway, request: Request, response_id: str) -> Response:
    """OpenAI's list shape; ``order`` (default desc), ``limit`` (1-100, default 20), ``after``."""
    stored = await _owned(gw, request, response_id)
    query = request.query
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad("Invalid value for 'order': expected 'asc' or 'desc'.", "order")
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        raise bad("Invalid type for 'limit': expected an integer.", "limit",
                  "invalid_type") from None
    if not 1 <= limit <= 100:
        raise bad("Invalid 'limit': expected a value between 1 and 100.", "limit")
    items = stored.input_items if order == "asc" else stored.input_items[::-1]
    after = query.get("after")
    if after:
        ids = [i.get("id") for i in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    page = items[:limit]
    return json_response(200, {
        "object": "list", "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    })
