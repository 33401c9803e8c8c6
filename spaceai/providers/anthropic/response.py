"""Anthropic Messages response -> OpenAI ``chat.completion``."""

from __future__ import annotations

import time
from typing import Any

import orjson

from spaceai.providers.anthropic.request import AnswerTool, answer_text
from spaceai.types import Usage

STOP_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str | None:
    """OpenAI ``finish_reason`` for an Anthropic ``stop_reason`` (None stays None)."""
    if stop_reason is None:
        return None
    return STOP_REASONS.get(stop_reason, "stop")


def tool_call(block: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic ``tool_use`` block as an OpenAI tool call."""
    return {
        "id": block.get("id", ""),
        "type": "function",
        "function": {
            "name": block.get("name", ""),
            "arguments": orjson.dumps(block.get("input") or {}).decode(),
        },
    }


def message_to_openai(
    msg: dict[str, Any], model_id: str, created: int | None = None,
    answer: AnswerTool | None = None,
) -> dict[str, Any]:
    """An Anthropic message response as an OpenAI ``chat.completion`` for ``model_id``.

    The input of ``answer`` (the forced tool of a structured answer) is the message's text.
    """
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    answered = False
    for block in msg.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use" and answer is not None and block.get("name") == answer.name:
            texts = [answer_text(answer, block.get("input"))]  # the answer, not the preamble
            answered = True
        elif kind == "tool_use":
            calls.append(tool_call(block))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else (None if calls else ""),
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    usage = Usage.from_anthropic(msg.get("usage"))
    return {
        "id": msg.get("id") or "",
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model_id,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": ("stop" if answered and not calls else
                                  finish_reason(msg.get("stop_reason")) or "stop"),
            }
        ],
        "usage": usage.to_openai(),
    }
