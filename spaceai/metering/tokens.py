"""Token estimates, for budget reservations and for streams cut before upstream counted."""

from __future__ import annotations

from typing import Any

import orjson

from spaceai.types import ChatRequest

_CHARS_PER_TOKEN = 4


def _text_len(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        n = 0
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    n += len(part["text"])
                elif part.get("type") == "image_url":
                    n += 85 * _CHARS_PER_TOKEN  # OpenAI's low-detail image cost
        return n
    return 0


def estimate_prompt_tokens(req: ChatRequest) -> int:
    """An upper-leaning estimate of the prompt's tokens (about 4 characters per token)."""
    if req.prompt is not None:
        return len(req.prompt) // _CHARS_PER_TOKEN + 1
    chars = 0
    for msg in req.messages:
        chars += _text_len(msg.get("content"))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            chars += len(fn.get("name") or "") + len(fn.get("arguments") or "")
    for tool in req.params.get("tools") or ():
        chars += len(str(tool))
    return chars // _CHARS_PER_TOKEN + 4 * len(req.messages) + 3


# what one image can cost at most in prompt tokens (Anthropic's largest image is ~1,600 tokens;
# OpenAI's high-detail 2048x768 image 1,105)
IMAGE_TOKENS_MAX = 1600
_MESSAGE_OVERHEAD = 5  # role and separator tokens of a chat template, per message
_PRIMING = 3  # the tokens that start the assistant's answer


def _bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list):
        n = 0
        for part in value:
            if isinstance(part, dict):
                kind = part.get("type")
                if kind in ("image_url", "image", "input_image"):
                    n += IMAGE_TOKENS_MAX
                elif isinstance(part.get("text"), str):
                    n += _bytes(part["text"])
                else:
                    n += len(orjson.dumps(part))
            else:
                n += _bytes(part) if isinstance(part, str) else len(orjson.dumps(part))
        return n
    if value is None:
        return 0
    return len(orjson.dumps(value))


def max_prompt_tokens(req: ChatRequest) -> int:
    """An upper bound of the prompt's tokens, for budget reservations.

    A byte-level BPE token (GPT, Claude, Llama tokenizers) covers at least one byte of UTF-8,
    so the bytes of every text a provider reads (messages, tool calls, tools, schemas) bound
    its count; each image counts its largest size, each message its template tokens.
    """
    if req.prompt is not None:
        return _bytes(req.prompt) + _PRIMING
    n = _PRIMING
    for msg in req.messages:
        n += _MESSAGE_OVERHEAD + _bytes(msg.get("content"))
        for call in msg.get("tool_calls") or ():
            n += len(orjson.dumps(call))
    for name in ("tools", "functions", "response_format"):
        if req.params.get(name):
            n += len(orjson.dumps(req.params[name]))
    return n
