"""Token estimates, for budget reservations and for streams cut before upstream counted."""

from __future__ import annotations

from typing import Any

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
