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
    return prompt_sizes(req)[0]


# what one image can cost at most in prompt tokens (above the largest image cost of OpenAI's
# and Anthropic's vision models)
IMAGE_TOKENS_MAX = 2800
_MESSAGE_OVERHEAD = 5  # role and separator tokens of a chat template, per message
_PRIMING = 3  # the tokens that start the assistant's answer


def _bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
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
    """A count no tokenizer's real one exceeds: for budget reservations, and for
    ``count_tokens`` on models whose upstream cannot count.

    A byte-level BPE token (GPT, Claude, Llama tokenizers) covers at least one byte of UTF-8,
    so the bytes of every text a provider reads (messages, tool calls, tools, schemas) bound
    its count; each image counts its largest size, each message its template tokens.
    """
    return prompt_sizes(req)[1]


def prompt_sizes(req: ChatRequest) -> tuple[int, int]:
    """(:func:`estimate_prompt_tokens`, :func:`max_prompt_tokens`) in one walk of the prompt,
    kept on the request: its reservation, meter and stream header all read them."""
    if req.sizes is None:
        req.sizes = _walk(req)
    return req.sizes


def _walk(req: ChatRequest) -> tuple[int, int]:
    if req.prompt is not None:
        return len(req.prompt) // _CHARS_PER_TOKEN + 1, _bytes(req.prompt) + _PRIMING
    chars = 0
    n = _PRIMING
    for msg in req.messages:
        content = msg.get("content")
        if content.__class__ is str:
            chars += len(content)
            n += _MESSAGE_OVERHEAD + (len(content) if content.isascii()
                                      else len(content.encode("utf-8", "surrogatepass")))
        else:
            chars += _text_len(content)
            n += _MESSAGE_OVERHEAD + _bytes(content)
        name = msg.get("name")
        if name is not None:
            n += _bytes(name)
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            chars += len(fn.get("name") or "") + len(fn.get("arguments") or "")
            n += len(orjson.dumps(call))
    params = req.params
    for tool in params.get("tools") or ():
        chars += len(str(tool))
    for name in ("tools", "functions", "response_format"):
        value = params.get(name)
        if value:
            n += len(orjson.dumps(value))
    return chars // _CHARS_PER_TOKEN + 4 * len(req.messages) + 3, n
