"""Anthropic Messages SSE events -> OpenAI ``chat.completion.chunk`` dicts."""

from __future__ import annotations

import time
from typing import Any

import orjson

from spaceai.catalog import ModelConfig
from spaceai.providers.anthropic.errors import anthropic_error
from spaceai.providers.anthropic.request import AnswerTool, answer_text
from spaceai.providers.anthropic.response import finish_reason
from spaceai.providers.events import Chunk
from spaceai.types import UpstreamError, Usage


class AnthropicStreamDecoder:
    """Stateful decoder of one Anthropic stream.

    Feed it the ``(event, data)`` pairs of :class:`~spaceai.providers.sse.SSEParser`;
    it returns the OpenAI chunks each produces. ``message_stop`` produces the final chunk
    (``choices: []`` with ``usage``) and sets :attr:`done`. :attr:`usage` is the usage
    produced so far at any moment, for streams cut short.
    """

    def __init__(self, model: ModelConfig, created: int | None = None,
                 answer: AnswerTool | None = None) -> None:
        self.model = model
        self.created = created if created is not None else int(time.time())
        self.id = ""
        self.usage = Usage()
        self.done = False
        self.started = False
        self._tool_index: dict[int, int] = {}  # anthropic block index -> openai tool index
        self.answer = answer  # the forced tool whose input is the structured answer (text)
        self._answer_block: int | None = None
        self._answer_json: list[str] = []  # a wrapped answer, unwrapped at its block's end

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        """Decode one SSE event; raise :class:`UpstreamError` on an ``error`` event."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(502, f"model {self.model.id}: malformed stream event",
                                usage=self.usage) from exc
        if not isinstance(obj, dict):
            return []
        kind = obj.get("type") or event
        handler = getattr(self, f"_on_{kind}", None)
        return handler(obj) if handler is not None else []  # ping and unknown events

    # -- chunk builders -----------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return Chunk(
            id=self.id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model.id,
            choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        )

    def _usage_chunk(self) -> Chunk:
        return Chunk(
            id=self.id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model.id,
            choices=[],
            usage=self.usage.to_openai(),
        )

    # -- event handlers -----------------------------------------------------------------

    def _on_message_start(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        msg = obj.get("message") or {}
        self.id = msg.get("id") or self.id
        self.usage.add_anthropic(msg.get("usage"))
        self.started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        block = obj.get("content_block") or {}
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") != "tool_use":
            return []
        if self.answer is not None and block.get("name") == self.answer.name:
            self._answer_block = obj.get("index", -1)
            return []
        n = len(self._tool_index)
        self._tool_index[obj.get("index", n)] = n
        call = {
            "index": n,
            "id": block.get("id", ""),
            "type": "function",
            "function": {"name": block.get("name", ""), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _on_content_block_delta(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        delta = obj.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            if self.answer is not None and obj.get("index", -1) == self._answer_block:
                if self.answer.wrapped:
                    self._answer_json.append(delta["partial_json"])
                    return []
                return [self._chunk({"content": delta["partial_json"]})]
            n = self._tool_index.get(obj.get("index", -1))
            if n is None:
                return []
            call = {"index": n, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking, signature and citation deltas have no OpenAI equivalent

    def _on_content_block_stop(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        if self.answer is None or not self.answer.wrapped or (
                obj.get("index", -1) != self._answer_block):
            return []
        try:
            arguments = orjson.loads("".join(self._answer_json) or "{}")
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(502, f"model {self.model.id}: malformed structured answer",
                                usage=self.usage) from exc
        return [self._chunk({"content": answer_text(self.answer, arguments)})]

    def _on_message_delta(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        self.usage.add_anthropic(obj.get("usage"))  # output_tokens is cumulative
        reason = finish_reason((obj.get("delta") or {}).get("stop_reason"))
        if reason == "tool_calls" and self._answer_block is not None and not self._tool_index:
            reason = "stop"  # the structured answer is the message's text
        return [self._chunk({}, reason)] if reason else []

    def _on_message_stop(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        self.done = True
        return [self._usage_chunk()]

    def _on_error(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        raise anthropic_error(self.model, obj, usage=self.usage)
