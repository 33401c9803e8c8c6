"""What every model-calling endpoint shares: admission, the router call, and metering.

``/v1/chat/completions``, ``/v1/completions``, ``/v1/messages``, ``/v1/responses`` and
``/v1/embeddings`` differ only in how they parse a request and render an answer. The steps in
between are here, once: :func:`arrive` (the body of a known key's request, which from then on
gets its ledger row however it ends), :func:`admit` (model access, limits and budget
reservation, a :class:`Meter`), then :func:`complete` / :func:`open_stream` / :func:`run` (the
router call, metered whichever way it ends), and :func:`metered_chunks` (an opened stream,
metered to the last token).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from spaceai.api.http import Headers, Request
from spaceai.auth import authorize_model
from spaceai.catalog import ModelConfig
from spaceai.gateway import Gateway
from spaceai.keys import KeyRecord
from spaceai.metering.meter import Meter, record_turned_away, status_of, usd, usd_header
from spaceai.providers.base import Provider
from spaceai.providers.events import StreamEvent
from spaceai.providers.fit import fit
from spaceai.types import ChatRequest, GatewayError, UpstreamError, Usage


@dataclass(slots=True)
class Call:
    """One admitted request: who asked, for which model, and the meter that records it."""

    gw: Gateway
    key: KeyRecord
    model: ModelConfig
    req: ChatRequest
    meter: Meter
    headers: Headers = field(default_factory=list)  # rate-limit and cost headers to answer with
    source: Any = None  # the provider's opened stream, if any
    dropped: list[str] = field(default_factory=list)  # named in x-spaceai-dropped

    def note_dropped(self, names: list[str]) -> None:
        """Name ``names`` (parameters or tools not sent to the model) in ``x-spaceai-dropped``."""
        if not names:
            return
        self.dropped.extend(n for n in names if n not in self.dropped)
        self.headers[:] = [h for h in self.headers if h[0] != b"x-spaceai-dropped"]
        self.headers.append((b"x-spaceai-dropped", ",".join(self.dropped).encode()))

    async def abandon(self) -> None:
        """Close the upstream stream and record the request, if its body never ran.

        A client that leaves while the response headers are being sent never starts the body
        generator; this still closes the upstream and writes the one row (a no-op otherwise).
        """
        if self.source is not None:
            await self.source.aclose()
        await self.meter.finish(self.model, Usage(), "client_disconnected", 499,
                                "client disconnected before the stream started")


@dataclass(slots=True)
class Arrival:
    """A request from a known key to a model endpoint, from its body on: what its ledger row
    needs if it is turned away before a model (bad input, a model it may not use, limits)."""

    gw: Gateway
    request_id: str
    key: KeyRecord
    endpoint: str
    started: float
    body: Any = None
    call: Call | None = None  # once admitted


# the request this task is serving, so an error anywhere after its arrival still records it
_arrival: ContextVar[Arrival | None] = ContextVar("spaceai_arrival", default=None)


async def arrive(gw: Gateway, request: Request, key: KeyRecord, endpoint: str,
                 started: float) -> Arrival:
    """Note that ``key`` called a model endpoint, then read the request's JSON body.

    From here on the request gets its one ledger row however it ends: turned away before
    admission (:func:`settle_unfinished`), or through its meter once admitted.
    """
    arrival = Arrival(gw, request.request_id, key, endpoint, started)
    _arrival.set(arrival)
    arrival.body = await request.json(gw.settings.max_body_bytes)
    return arrival


async def admit(arrival: Arrival, req: ChatRequest, capability: str,
                native: Callable[[ModelConfig], bool] | None = None) -> Call:
    """Authorize the model for the key, check it can honour ``req`` (unless ``native`` says
    the body goes to it as it came), pass limits and budget, and start the meter."""
    gw, key = arrival.gw, arrival.key
    model = authorize_model(key, req.model, gw.catalog, capability)
    dropped = [] if native is not None and native(model) else fit(req, model).dropped
    admission = await gw.control.admit(key, model, req, gw.router.candidates(model))
    meter = Meter(gw.ledger, gw.control, arrival.request_id, key, model, req, admission,
                  arrival.endpoint, arrival.started)
    call = Call(gw, key, model, req, meter, list(admission.headers))
    call.note_dropped(dropped)
    arrival.call = call
    return call


async def settle_unfinished(exc: BaseException) -> None:
    """Record this request if an error left it unrecorded (called by the app on errors).

    Turned away before admission, it gets its row at no cost (:func:`record_turned_away`).
    Admitted, whatever raised after (a bug, a malformed upstream answer), the reservation is
    released and the request gets its one row, as an error, with what is known of its usage.
    """
    arrival = _arrival.get()
    if arrival is None:
        return
    if arrival.call is None:
        _arrival.set(None)  # recorded once
        body = arrival.body if isinstance(arrival.body, dict) else {}
        asked = body.get("model")
        record_turned_away(arrival.gw.ledger, arrival.gw.catalog, arrival.request_id,
                           arrival.key, arrival.endpoint, arrival.started,
                           asked if isinstance(asked, str) else None, body.get("stream") is True,
                           exc)
    elif not arrival.call.meter.done:
        await failed(arrival.call, exc)


async def failed(call: Call, exc: Exception) -> None:
    """Record a request that failed before any answer, and give its error our headers.

    Any exception settles the reservation (a bug past admission must never lock a key's
    budget); only a :class:`GatewayError` is the client's to see. Every error an endpoint
    raises reaches it through :func:`settle_unfinished`, so no endpoint calls it itself.
    """
    if not isinstance(exc, GatewayError):
        await call.meter.finish(call.model, Usage(), "error", 500,
                                f"internal error: {type(exc).__name__}")
        return
    usage = exc.usage if isinstance(exc, UpstreamError) else Usage()
    await call.meter.finish(call.model, usage, status_of(exc), exc.status, exc.message)
    exc.headers.update({k.decode(): v.decode() for k, v in call.headers})


async def run(call: Call, attempt: Callable[[Provider, ModelConfig], Awaitable[Any]],
              usage_of: Callable[[Any], Usage]) -> tuple[ModelConfig, Any, int]:
    """Any non-streaming provider call through the router, metered.

    Returns (the model that served it, the result, its cost in nano-dollars) and adds the
    ``x-spaceai-cost`` header to ``call.headers``.
    """
    served, result = await call.gw.router.run(call.model, attempt, call.meter.route)
    nanos = await call.meter.finish(served, usage_of(result), "ok", 200)
    call.headers.append((b"x-spaceai-cost", usd_header(nanos)))
    return served, result, nanos


async def complete(call: Call) -> tuple[ModelConfig, dict[str, Any]]:
    """A non-streaming chat or text completion; its ``usage`` carries the cost."""
    served, data = await call.gw.router.complete(call.req, call.model, call.meter.route)
    usage = Usage.from_openai(data.get("usage"))
    nanos = await call.meter.finish(served, usage, "ok", 200)
    data["usage"] = usage.to_openai(cost=usd(nanos))
    call.headers.append((b"x-spaceai-cost", usd_header(nanos)))
    return served, data


async def open_stream(call: Call) -> tuple[ModelConfig, AsyncIterator[StreamEvent]]:
    """Open a stream (retries and fallbacks happen here); its chunks, metered."""
    served, first, rest = await call.gw.router.open_stream(call.req, call.model,
                                                            call.meter.route)
    call.source = rest
    return served, metered_chunks(call.meter, served, first, rest)


async def metered_chunks(meter: Meter, served: ModelConfig, first: StreamEvent,
                         rest: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    """The chunks of an opened stream, recorded exactly once however the stream ends.

    The final usage chunk (``choices: []``) is yielded with the cost in its ``usage``. An
    :class:`UpstreamError` mid-stream is recorded, then re-raised for the caller to render in
    its own format. Closing this iterator early (client gone) closes the provider's stream
    and records what was produced so far.
    """
    produced = 0
    usage: Usage | None = None
    status, http_status, error = "client_disconnected", 499, "client disconnected mid-stream"
    try:
        chunk: StreamEvent | None = first
        while chunk is not None:
            final = chunk.final_usage
            if final is not None:
                usage = final
                status, http_status, error = "ok", 200, None
                nanos = await meter.finish(served, usage, status, http_status)
                chunk["usage"] = usage.to_openai(cost=usd(nanos))
            elif n := chunk.produced:
                produced += n
                meter.first_token()
            yield chunk
            try:
                chunk = await rest.__anext__()
            except StopAsyncIteration:
                chunk = None
        if status == "client_disconnected":  # ended cleanly without a usage chunk
            status, http_status, error = "ok", 200, None
    except UpstreamError as exc:
        status, http_status, error = status_of(exc), exc.status, exc.message
        usage = exc.usage  # what upstream reported before failing, if anything
        usage.completion_tokens = max(usage.completion_tokens, produced)
        raise
    except Exception as exc:  # a bug or a malformed chunk: still settled, as an error
        status, http_status, error = "error", 500, f"internal error: {type(exc).__name__}"
        raise
    finally:
        await rest.aclose()
        if usage is None:
            usage = Usage(completion_tokens=produced)
        await meter.finish(served, usage, status, http_status, error)
