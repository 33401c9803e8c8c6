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


# per-item allowances of the upper bound below
_MESSAGE_OVERHEAD = 8  # role markers and separators of one chat message
_TOOL_OVERHEAD = 32  # the wrapping a chat template puts around one tool's definition
_IMAGE_TOKENS = 2800  # above the largest image cost of OpenAI's and Anthropic's vision models
_PRIMING = 16  # the reply's opening and any system preamble


def _utf8_len(value: Any) -> int:
    return len(value.encode()) if isinstance(value, str) else 0


def prompt_tokens_upper_bound(req: ChatRequest) -> int:
    """A count no tokenizer's real one exceeds, for models whose upstream cannot count.

    A byte-level BPE (OpenAI's, Llama's, Qwen's...) or byte-fallback tokenizer never makes a
    token of less than one byte, so the prompt's UTF-8 bytes bound its tokens; add to that a
    fixed allowance per message, per tool definition and per image. Loose (English text is
    about 4 bytes a token) but never below the truth, which is what deciding when to compact
    needs.
    """
    n = _PRIMING
    for msg in req.messages:
        n += _MESSAGE_OVERHEAD + _utf8_len(msg.get("name"))
        content = msg.get("content")
        if isinstance(content, str):
            n += _utf8_len(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict):
                    n += _IMAGE_TOKENS if part.get("type") == "image_url" else \
                        _utf8_len(part.get("text"))
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            n += _MESSAGE_OVERHEAD + _utf8_len(fn.get("name")) + _utf8_len(fn.get("arguments"))
    for tool in req.params.get("tools") or ():
        n += _TOOL_OVERHEAD + len(orjson.dumps(tool))
    if req.params.get("response_format"):
        n += _TOOL_OVERHEAD + len(orjson.dumps(req.params["response_format"]))
    return n
