"""The Anthropic Messages API provider."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from spaceai.catalog import ModelConfig
from spaceai.providers.anthropic.errors import anthropic_error
from spaceai.providers.anthropic.native import count_tokens_body, upstream_body
from spaceai.providers.anthropic.request import answer_tool, build_request
from spaceai.providers.anthropic.response import message_to_openai
from spaceai.providers.anthropic.stream import AnthropicStreamDecoder
from spaceai.providers.base import Provider
from spaceai.providers.deadline import StreamClock, attempt_deadlines
from spaceai.providers.events import NamedEvent
from spaceai.providers.http import HttpClient
from spaceai.providers.sse import SSEParser
from spaceai.providers.transport import Response
from spaceai.types import ChatRequest, UpstreamError, Usage

ANTHROPIC_VERSION = "2023-06-01"
STREAM_CUT = "upstream stream ended before completion"
DEFAULT_BASE_URL = "https://api.anthropic.com/v1"


# events that are no progress for the silence deadline (keep-alives, the stream's preamble)
NOT_CONTENT = frozenset(("ping", "message_start"))


def moves(event: str | None, chunks: list) -> bool:
    """Whether an Anthropic stream event carries content (named events by their name)."""
    return event not in NOT_CONTENT if event else bool(chunks)


def _message(raw: bytes, model: ModelConfig) -> dict[str, Any]:
    """The Messages API message of a 2xx answer; an error object in it is the upstream's
    error, anything else a malformed answer (retryable: another try may get a good one)."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        msg = None
    if isinstance(msg, dict) and msg.get("type") == "message":
        return msg
    if isinstance(msg, dict) and msg.get("type") == "error":
        raise anthropic_error(model, msg)
    raise UpstreamError(502, f"model {model.id}: malformed upstream response", retryable=True)


class AnthropicProvider(Provider):
    """Serves catalog models whose ``provider`` is ``anthropic``, over the gateway's shared
    :class:`HttpClient` (the same connections, deadlines and error mapping as every provider).
    """

    name = "anthropic"
    speaks_messages = True

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    async def start(self) -> None:
        """Open the shared pool if the gateway has not yet."""
        await self._http.start()

    # -- plumbing ------------------------------------------------------------------------

    async def _send(
        self, model: ModelConfig, body: dict[str, Any], head_by: float, done_by: float,
        path: str = "/messages", headers: dict[str, str] | None = None,
    ) -> Response:
        """POST ``body`` to ``path``; return a 2xx response (headers by loop time ``head_by``)
        or raise the mapped :class:`UpstreamError` (an error body is read by ``done_by``).
        ``headers`` (the client's ``anthropic-beta`` and ``anthropic-version`` on a native
        call) go along, over the defaults."""
        key = model.credential()
        if not key:
            raise UpstreamError(
                500,
                f"model {model.id}: the Anthropic API key is not configured",
                type="configuration_error",
            )
        sent = {
            "anthropic-version": ANTHROPIC_VERSION,
            **(headers or {}),
            "x-api-key": key,
            "content-type": "application/json",
            "accept": "text/event-stream" if body.get("stream") else "application/json",
        }
        resp = await self._http.send(model, path, tuple(sent.items()), orjson.dumps(body),
                                     head_by, base_url=model.base_url or DEFAULT_BASE_URL)
        if resp.status < 400:
            return resp
        try:
            raw = await resp.read(done_by)
        except (TimeoutError, OSError):
            raw = b""
        finally:
            resp.release()
        raise anthropic_error(model, raw, resp.status, headers=resp.headers)

    async def read_body(self, resp: Response, model: ModelConfig, deadline: float) -> bytes:
        """The whole body of a 2xx answer by loop time ``deadline``; a stall or a cut is an
        error."""
        try:
            return await self._http.read(resp, model, deadline)
        finally:
            resp.release()

    # -- native Messages calls (/v1/messages on a Claude model) -----------------------------

    async def messages(self, body: dict[str, Any], model: ModelConfig,
                       headers: dict[str, str] | None = None) -> dict[str, Any]:
        """One non-streaming Messages call of a client's body; the upstream's message as it
        came."""
        head_by, done_by = attempt_deadlines(model)
        resp = await self._send(model, upstream_body(body, model.upstream_model, False),
                                head_by, done_by, headers=headers)
        return _message(await self.read_body(resp, model, done_by), model)

    async def messages_stream(self, body: dict[str, Any], model: ModelConfig,
                              headers: dict[str, str] | None = None
                              ) -> AsyncIterator[NamedEvent]:
        """A client's body streamed: its events, ``message_start`` to ``message_stop`` (which
        carries the stream's usage as ``final_usage``); each content delta counts as produced.

        An ``error`` event or a cut stream raises :class:`UpstreamError` carrying the usage
        so far; closing the iterator closes the upstream response.
        """
        clock = StreamClock(model)
        resp = await self._send(model, upstream_body(body, model.upstream_model, True),
                                clock.at, clock.at, headers=headers)
        parser = SSEParser()
        usage = Usage()
        started = done = False
        try:
            while not done:
                try:
                    data = await resp.receive(clock.at)
                except TimeoutError as exc:
                    raise clock.expired(usage) from exc
                except OSError as exc:
                    raise UpstreamError(502, STREAM_CUT, retryable=not started,
                                        usage=usage) from exc
                for name, payload in parser.feed(data) if data else parser.flush():
                    try:
                        obj = orjson.loads(payload)
                    except orjson.JSONDecodeError as exc:
                        raise UpstreamError(502, f"model {model.id}: malformed stream event",
                                            usage=usage) from exc
                    if not isinstance(obj, dict):
                        continue
                    kind = obj.get("type") or name or ""
                    if moves(kind, ()):
                        clock.progress()
                    if kind == "error":
                        raise anthropic_error(model, obj, usage=usage)
                    if kind == "message_start":
                        started = True
                        usage.add_anthropic((obj.get("message") or {}).get("usage"))
                    elif kind == "message_delta":
                        usage.add_anthropic(obj.get("usage"))
                    done = kind == "message_stop"
                    yield NamedEvent(kind, obj, int(kind == "content_block_delta"),
                                     usage if done else None)
                    if done:
                        break
                if not data and not done:
                    raise UpstreamError(502, STREAM_CUT, retryable=not started, usage=usage)
        finally:
            resp.release()  # pooled if its body was read to the end, else closed

    async def count_message_tokens(self, body: dict[str, Any], model: ModelConfig,
                                   headers: dict[str, str] | None = None) -> int:
        """The exact input tokens of a client's Messages body, counted by the upstream's
        ``/v1/messages/count_tokens``."""
        head_by, done_by = attempt_deadlines(model)
        resp = await self._send(model, count_tokens_body(body, model.upstream_model), head_by,
                                done_by, path="/messages/count_tokens", headers=headers)
        raw = await self.read_body(resp, model, done_by)
        try:
            tokens = orjson.loads(raw).get("input_tokens")
        except (orjson.JSONDecodeError, AttributeError):
            tokens = None
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise UpstreamError(502, f"model {model.id}: malformed count_tokens response")
        return tokens

    # -- Provider interface ----------------------------------------------------------------

    async def chat(self, req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
        """One non-streaming chat completion, as an OpenAI ``chat.completion`` dict."""
        body = build_request(req, model)
        body.pop("stream", None)
        head_by, done_by = attempt_deadlines(model)
        resp = await self._send(model, body, head_by, done_by)
        msg = _message(await self.read_body(resp, model, done_by), model)
        return message_to_openai(msg, model.id, answer=answer_tool(req.params))

    async def chat_stream(
        self, req: ChatRequest, model: ModelConfig
    ) -> AsyncIterator[dict[str, Any]]:
        """A streaming chat completion: OpenAI chunks ending with a usage chunk.

        Raises :class:`UpstreamError` (with the usage so far) when the stream fails or is
        cut before ``message_stop``; closing the iterator closes the upstream response.
        """
        body = build_request(req, model)
        body["stream"] = True
        clock = StreamClock(model)
        resp = await self._send(model, body, clock.at, clock.at)
        decoder = AnthropicStreamDecoder(model, answer=answer_tool(req.params))
        parser = SSEParser()
        try:
            while not decoder.done:
                try:
                    data = await resp.receive(clock.at)
                except TimeoutError as exc:
                    raise clock.expired(decoder.usage) from exc
                except OSError as exc:
                    raise UpstreamError(
                        502, STREAM_CUT, retryable=not decoder.started, usage=decoder.usage
                    ) from exc
                events = parser.feed(data) if data else parser.flush()
                for event, payload in events:
                    chunks = decoder.feed(event, payload)
                    if moves(event, chunks):
                        clock.progress()
                    for chunk in chunks:
                        yield chunk
                    if decoder.done:
                        break
                if not data and not decoder.done:
                    raise UpstreamError(
                        502, STREAM_CUT, retryable=not decoder.started, usage=decoder.usage
                    )
        finally:
            resp.release()  # pooled if its body was read to the end, else closed
