"""Chat and text completions on the local engine: the request, the stream, the answer.

A :class:`~spaceai.types.ChatRequest` becomes the body of llama.cpp's OpenAI-compatible
handlers (:func:`engine_body`): messages (its chat template builds the prompt) or the legacy
prompt, and the OpenAI parameters it implements, passed as they are. ``response_format`` is
one: llama.cpp turns its JSON schema into a grammar that constrains sampling, so an answer that
is not cut short by ``max_tokens`` follows the schema.

The engine's chunks become the gateway's stream events (:func:`stream`), and the non-streamed
answer is those same events folded (:func:`aggregate`): one path produces both, so a streamed
and a non-streamed request tell the same text, finish reason and usage.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from spaceai.catalog import ModelConfig
from spaceai.providers.events import Chunk
from spaceai.providers.local.engine import Engines, Handler
from spaceai.types import ChatRequest, GatewayError, Usage

# OpenAI parameters passed through to llama.cpp's OpenAI-compatible handlers as they are
_PASSTHROUGH = (
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    # llama.cpp extensions, harmless when absent
    "top_k",
    "min_p",
    "repeat_penalty",
)

# the keys of a chat body that llama.cpp's chat template builds the prompt from
_TEMPLATE_KEYS = ("messages", "tools", "tool_choice", "parallel_tool_calls", "response_format")


@dataclass
class Folded:
    """One choice of a stream, added up: what a non-streamed answer tells."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: list[Any] = field(default_factory=list)
    legacy_logprobs: dict[str, list[Any]] = field(default_factory=dict)
    finish_reason: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        """Adds one chunk's choice (a chat delta, or a text completion's text)."""
        delta = choice.get("delta")
        if delta is None:
            self.text.append(choice["text"])
            for name, values in (choice.get("logprobs") or {}).items():
                self.legacy_logprobs.setdefault(name, []).extend(values)
        else:
            if delta.get("content"):
                self.text.append(delta["content"])
            if delta.get("reasoning_content"):
                self.reasoning.append(delta["reasoning_content"])
            for tc in delta.get("tool_calls") or ():
                _merge_tool_call(self.tool_calls, tc)
            if (choice.get("logprobs") or {}).get("content"):
                self.logprobs.extend(choice["logprobs"]["content"])
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]


def _chat_chunk_choice(c: dict[str, Any], offset: list[int]) -> dict[str, Any]:
    delta = dict(c.get("delta") or {})
    if "role" in delta and delta.get("content") is None:
        delta["content"] = ""  # OpenAI's first chunk: {"role": "assistant", "content": ""}
    return {
        "index": c.get("index", 0),
        "delta": delta,
        "logprobs": c.get("logprobs"),
        "finish_reason": c.get("finish_reason"),
    }


def _chat_answer_choice(folded: Folded) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "".join(folded.text)}
    if folded.reasoning:
        message["reasoning_content"] = "".join(folded.reasoning)
    if folded.tool_calls:
        message["tool_calls"] = [folded.tool_calls[i] for i in sorted(folded.tool_calls)]
        if not folded.text:
            message["content"] = None
    return {
        "index": 0,
        "message": message,
        "logprobs": {"content": folded.logprobs} if folded.logprobs else None,
        "finish_reason": folded.finish_reason or "stop",
    }


def _text_chunk_choice(c: dict[str, Any], offset: list[int]) -> dict[str, Any]:
    text = c.get("text") or ""
    logprobs = _legacy_logprobs((c.get("logprobs") or {}).get("content"), offset)
    offset[0] += len(text)
    return {
        "text": text,
        "index": c.get("index", 0),
        "logprobs": logprobs,
        "finish_reason": c.get("finish_reason"),
    }


def _legacy_logprobs(content: list[dict[str, Any]] | None,
                     offset: list[int]) -> dict[str, list[Any]] | None:
    """The engine's token logprobs (chat shape) as a legacy completion tells them: parallel
    lists of tokens, their logprobs, the top alternatives (token -> logprob) and where each
    token starts in the text (counted from the start of the prompt, as OpenAI does)."""
    if not content:
        return None
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                 "text_offset": []}
    at = offset[0]
    for entry in content:
        token = entry.get("token", "")
        out["tokens"].append(token)
        out["token_logprobs"].append(entry.get("logprob"))
        out["top_logprobs"].append({t["token"]: t["logprob"]
                                    for t in entry.get("top_logprobs") or ()})
        out["text_offset"].append(at)
        at += len(token)
    return out


def _text_answer_choice(folded: Folded) -> dict[str, Any]:
    return {
        "text": "".join(folded.text),
        "index": 0,
        "logprobs": folded.legacy_logprobs or None,
        "finish_reason": folded.finish_reason or "stop",
    }


@dataclass(frozen=True)
class Endpoint:
    """What tells ``/v1/chat/completions`` from ``/v1/completions``: the engine's handler and
    the OpenAI shapes of its chunks and answers."""

    handler: Handler
    id_prefix: str
    chunk_object: str
    answer_object: str
    # from an engine chunk's choice, and where its text starts (moved on past it)
    chunk_choice: Callable[[dict[str, Any], list[int]], dict[str, Any]]
    answer_choice: Callable[[Folded], dict[str, Any]]


CHAT = Endpoint("chat", "chatcmpl", "chat.completion.chunk", "chat.completion",
                _chat_chunk_choice, _chat_answer_choice)
TEXT = Endpoint("completion", "cmpl", "text_completion", "text_completion",
                _text_chunk_choice, _text_answer_choice)


def engine_body(req: ChatRequest, model: ModelConfig, endpoint: Endpoint) -> dict[str, Any]:
    """The body for llama.cpp's handler of ``endpoint``: always streamed, with usage."""
    params = req.params
    n = params.get("n")
    if n not in (None, 1):
        raise GatewayError(400, f"model {model.id} supports only n=1", param="n")
    body: dict[str, Any] = {}
    if endpoint is TEXT:
        prompt = req.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise GatewayError(
                    400, f"model {model.id} takes a single string prompt", param="prompt"
                )
            prompt = prompt[0]
        body["prompt"] = prompt or ""
    else:
        body["messages"] = req.messages
    for key in _PASSTHROUGH:
        if params.get(key) is not None:
            body[key] = params[key]
    if isinstance(body.get("stop"), str):
        body["stop"] = [body["stop"]]
    max_tokens = req.max_tokens or model.max_output_tokens
    if max_tokens:
        body["max_tokens"] = int(max_tokens)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


def template_body(req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
    """The part of a chat request's engine body that its prompt is built from."""
    body = engine_body(req, model, CHAT)
    return {k: v for k, v in body.items() if k in _TEMPLATE_KEYS}


async def stream(
    engines: Engines, req: ChatRequest, model: ModelConfig, endpoint: Endpoint
) -> AsyncGenerator[Chunk, None]:
    """The OpenAI chunks of one request, ending with ``choices: []`` and the engine's usage.

    An async generator, so that a bad request raises at the first step, like an engine error.
    """
    body = engine_body(req, model, endpoint)
    head = {  # every chunk's first fields, in OpenAI's order
        "id": f"{endpoint.id_prefix}-{uuid.uuid4().hex[:24]}",
        "object": endpoint.chunk_object,
        "created": int(time.time()),
        "model": model.id,
    }
    usage: Usage | None = None
    offset = [len(body.get("prompt") or "")]  # a legacy token's text_offset
    raw_stream = engines.stream(endpoint.handler, body, model.model_path)
    try:
        async for raw in raw_stream:
            if raw.get("usage"):
                usage = Usage.from_openai(raw["usage"])
            choices = raw.get("choices") or []
            if choices:
                yield Chunk(head, choices=[endpoint.chunk_choice(c, offset) for c in choices])
    finally:
        await raw_stream.aclose()
    yield Chunk(head, choices=[], usage=(usage or Usage()).to_openai())


async def aggregate(
    events: AsyncGenerator[Chunk, None], endpoint: Endpoint
) -> dict[str, Any]:
    """The non-streamed answer that the chunks of :func:`stream` add up to; closes the
    stream however it ends."""
    folded = Folded()
    last: Chunk | None = None
    try:
        async for chunk in events:
            last = chunk
            for choice in chunk["choices"]:
                folded.add(choice)
    finally:
        await events.aclose()
    assert last is not None, "stream() ends with its usage chunk or raises"
    return {
        "id": last["id"],
        "object": endpoint.answer_object,
        "created": last["created"],
        "model": last["model"],
        "choices": [endpoint.answer_choice(folded)],
        "usage": last["usage"],
    }


def _merge_tool_call(acc: dict[int, dict[str, Any]], tc: dict[str, Any]) -> None:
    """Adds one streamed tool-call fragment to the call of its index."""
    i = int(tc.get("index", len(acc)))
    cur = acc.setdefault(
        i, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if tc.get("id"):
        cur["id"] = tc["id"]
    fn = tc.get("function") or {}
    if fn.get("name"):
        cur["function"]["name"] += fn["name"]
    if fn.get("arguments"):
        cur["function"]["arguments"] += fn["arguments"]
