"""Native pass-through of ``/v1/responses`` to an upstream that speaks the Responses API.

A catalog model with ``responses_api: native`` (provider ``openai``) gets the client's body
through :meth:`Provider.responses` / :meth:`Provider.responses_stream` instead of the chat
translation, so hosted tools run and reasoning items go back to the model that made them.
The gateway keeps the conversation itself: upstream receives the whole context as ``input``
and ``store: false``. Answers are relabelled with the gateway's response id and model and
metered from the upstream's own ``usage``. A fallback to a model that is not native goes
through the chat translation, as every other request does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from spaceai.api import metered
from spaceai.api.responses_render import render_response, sse
from spaceai.api.responses_request import ResponsesRequest
from spaceai.catalog import ModelConfig
from spaceai.metering.meter import Meter, status_of, usd
from spaceai.providers.base import Provider
from spaceai.providers.events import NamedEvent
from spaceai.providers.fit import fit
from spaceai.router import first_chunk
from spaceai.types import UpstreamError, Usage

Save = Callable[[dict[str, Any]], Awaitable[None]]


def is_native(model: ModelConfig) -> bool:
    """Whether ``model`` takes Responses bodies natively (catalog ``responses_api: native``)."""
    return model.extra.get("responses_api") == "native"


def upstream_body(body: dict[str, Any], rr: ResponsesRequest) -> dict[str, Any]:
    """The client's body with the whole conversation as input, and nothing kept upstream.

    Item ids are the gateway's own (or a stateless upstream's), so they are left out, except
    on reasoning items, which upstream matches to their encrypted content.
    """
    out = {k: v for k, v in body.items() if k not in ("previous_response_id", "model")}
    out["input"] = [item if item["type"] == "reasoning" else
                    {k: v for k, v in item.items() if k != "id"} for item in rr.context]
    out["store"] = False
    return out


def relabel(response: dict[str, Any], resp_id: str, rr: ResponsesRequest,
            nanos: int | None = None) -> dict[str, Any]:
    """Upstream's response object as the gateway's: its id, the catalog model, the cost."""
    out = {**response, "id": resp_id, "model": rr.chat.model, "store": rr.store,
           "previous_response_id": rr.echo["previous_response_id"],
           "metadata": rr.echo["metadata"]}
    if nanos is not None and isinstance(out.get("usage"), dict):
        out["usage"] = {**out["usage"], "cost": usd(nanos)}
    return out


async def answer(call: metered.Call, rr: ResponsesRequest, body: dict[str, Any],
                 resp_id: str, created_at: int) -> dict[str, Any]:
    """A non-streaming answer, native where the serving model is."""
    upstream = upstream_body(body, rr)

    async def attempt(provider: Provider, model: ModelConfig) -> tuple[bool, dict[str, Any]]:
        if is_native(model):
            return True, await provider.responses(upstream, model)
        return False, await provider.chat(fit(rr.chat, model).req, model)

    def usage_of(result: tuple[bool, dict[str, Any]]) -> Usage:
        native, data = result
        return Usage.from_responses(data.get("usage")) if native else Usage.from_openai(
            data.get("usage"))

    _, (native, data), nanos = await metered.run(call, attempt, usage_of)
    if native:
        return relabel(data, resp_id, rr, nanos)
    data["usage"] = usage_of((False, data)).to_openai(cost=usd(nanos))
    return render_response(resp_id, rr.chat.model, rr.echo, created_at, data)


async def open_stream(call: metered.Call, rr: ResponsesRequest, body: dict[str, Any]
                      ) -> tuple[ModelConfig, bool, Any, AsyncIterator[Any]]:
    """Open a stream, native where the serving model is: (served model, native, the first
    event or chat chunk, the rest). Native events are metered by :func:`relay`, chat chunks
    by :func:`metered.metered_chunks`."""
    upstream = upstream_body(body, rr)

    async def attempt(provider: Provider, model: ModelConfig):  # noqa: ANN202
        native = is_native(model)
        it = provider.responses_stream(upstream, model) if native else provider.chat_stream(
            fit(rr.chat, model).req, model)
        first = await first_chunk(it, model)
        return native, first, call.gw.router.track(it, model)

    served, (native, first, rest) = await call.gw.router.run(call.model, attempt,
                                                            call.meter.route)
    call.source = rest
    return served, native, first, rest


async def relay(meter: Meter, served: ModelConfig, rr: ResponsesRequest, resp_id: str,
                first: NamedEvent, rest: AsyncIterator[NamedEvent],
                save: Save) -> AsyncIterator[bytes]:
    """Upstream's events as they come, relabelled; metered from the usage the provider read
    out of the terminal event."""
    produced, seq, usage = 0, -1, None
    status, http_status, error = "client_disconnected", 499, "client disconnected mid-stream"
    try:
        event: NamedEvent | None = first
        while event is not None:
            data = event.data
            seq = data.get("sequence_number", seq + 1)
            if event.produced:
                produced += event.produced
                meter.first_token()
            if isinstance(data.get("response"), dict):
                response = relabel(data["response"], resp_id, rr)
                if event.final_usage is not None:
                    usage = event.final_usage
                    status, http_status, error = "ok", 200, None
                    if event.name == "response.failed":
                        status, http_status = "upstream_error", 502
                        error = ((response.get("error") or {}).get("message")
                                 or "upstream response failed")
                    nanos = await meter.finish(served, usage, status, http_status, error)
                    response = relabel(response, resp_id, rr, nanos)
                    await save(response)
                event.data = {**data, "response": response}
            yield event.sse_bytes()
            try:
                event = await rest.__anext__()
            except StopAsyncIteration:
                event = None
    except UpstreamError as exc:  # OpenAI's own way to end a broken stream: an error event
        status, http_status, error = status_of(exc), exc.status, exc.message
        yield sse({"type": "error", "sequence_number": seq + 1,
                   "code": exc.code or "server_error", "message": exc.message, "param": None})
    finally:
        await rest.aclose()
        await meter.finish(served, usage or Usage(completion_tokens=produced), status,
                           http_status, error)
