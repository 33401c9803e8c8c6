"""Native pass-through for ``/v1/messages`` to a Claude model: no translation either way.

The client's Messages body goes upstream as it is (only ``model`` becomes the upstream name),
so every Anthropic feature (cache_control, thinking, citations...) survives; the answer comes
back as it is too. The gateway only reads the usage out of it, for metering.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from spaceai.catalog import ModelConfig
from spaceai.providers.anthropic.errors import error_from_body, error_from_event
from spaceai.providers.anthropic.provider import STREAM_CUT, AnthropicProvider, moves
from spaceai.providers.anthropic.response import usage_from_anthropic
from spaceai.providers.deadline import StreamClock, attempt_deadlines
from spaceai.providers.sse import SSEParser
from spaceai.types import UpstreamError, Usage

Event = tuple[str, dict[str, Any]]


def _upstream_body(body: dict[str, Any], model: ModelConfig, stream: bool) -> dict[str, Any]:
    out = dict(body)
    out["model"] = model.upstream_model
    if stream:
        out["stream"] = True
    else:
        out.pop("stream", None)
    return out


async def send_message(provider: AnthropicProvider, body: dict[str, Any],
                       model: ModelConfig) -> dict[str, Any]:
    """One non-streaming Messages call; the upstream's message as it came."""
    head_by, done_by = attempt_deadlines(model)
    resp = await provider._post(model, _upstream_body(body, model, False), head_by, done_by)
    raw = await provider.read_body(resp, model, done_by)
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(502, "Anthropic: malformed upstream response",
                            retryable=True) from exc
    if not isinstance(msg, dict) or msg.get("type") != "message":
        raise error_from_body(500, msg if isinstance(msg, dict) else None)
    return msg


async def stream_events(provider: AnthropicProvider, body: dict[str, Any],
                        model: ModelConfig) -> AsyncIterator[Event]:
    """The upstream's stream as ``(event name, data)`` pairs, ``message_start`` to
    ``message_stop``.

    An ``error`` event or a cut stream raises :class:`UpstreamError` carrying the usage so
    far; closing the iterator closes the upstream response.
    """
    clock = StreamClock(model)
    resp = await provider._post(model, _upstream_body(body, model, True), clock.at, clock.at)
    parser = SSEParser()
    usage = Usage()
    started = done = False
    try:
        while not done:
            try:
                async with asyncio.timeout_at(clock.at):
                    data = await resp.content.readany()
            except TimeoutError as exc:
                raise clock.expired(usage) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise UpstreamError(502, STREAM_CUT, retryable=not started, usage=usage) from exc
            for name, payload in parser.feed(data) if data else parser.flush():
                try:
                    obj = orjson.loads(payload)
                except orjson.JSONDecodeError as exc:
                    raise UpstreamError(502, "Anthropic: malformed stream event",
                                        usage=usage) from exc
                if not isinstance(obj, dict):
                    continue
                kind = obj.get("type") or name or ""
                if moves(kind, ()):
                    clock.progress()
                if kind == "error":
                    raise error_from_event(obj, usage=usage)
                if kind == "message_start":
                    started = True
                    usage_from_anthropic((obj.get("message") or {}).get("usage"), usage)
                elif kind == "message_delta":
                    usage_from_anthropic(obj.get("usage"), usage)
                yield kind, obj
                if kind == "message_stop":
                    done = True
                    break
            if not data and not done:
                raise UpstreamError(502, STREAM_CUT, retryable=not started, usage=usage)
    finally:
        if done:
            resp.release()
        else:
            resp.close()
