"""How fast a chat body is validated: msgspec Structs vs pydantic v2 models vs today's rules.

    PYTHONPATH=$PWD .venv/bin/python bench/validation.py [--seconds 1]

Validates two decoded ``/v1/chat/completions`` bodies (what the validator gets from the JSON
decoder): a typical one (a system prompt, a short tool round trip, two tools, sampling
parameters) and a large one (200 messages with content-part arrays, 32 tools). Each contender
checks the same shape: top-level ranges and enums, messages with their roles and content
parts, tool calls and tools. Prints microseconds per body and the ratio against today's code
(``spaceai.api.validation.parse_chat``), all measured in the same run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import pydantic

from spaceai.api.validation import parse_chat

INT32_MAX = 2**31 - 1
INT64 = (-(2**63), 2**63 - 1)
TOOL_NAME = "^[a-zA-Z0-9_-]{1,64}$"

# -- msgspec -------------------------------------------------------------------------------


class MText(msgspec.Struct, tag="text"):
    text: str


class MImageUrl(msgspec.Struct):
    url: str
    detail: str | None = None


class MImage(msgspec.Struct, tag="image_url"):
    image_url: MImageUrl


class MFunctionCall(msgspec.Struct):
    name: str
    arguments: str


class MToolCall(msgspec.Struct):
    id: str
    function: MFunctionCall
    type: Literal["function"] = "function"


class MMessage(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[MText | MImage] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[MToolCall] | None = None


class MFunction(msgspec.Struct):
    name: Annotated[str, msgspec.Meta(pattern=TOOL_NAME)]
    description: str | None = None
    parameters: dict[str, Any] | None = None


class MTool(msgspec.Struct):
    type: Literal["function"]
    function: MFunction


class MChat(msgspec.Struct):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[MMessage], msgspec.Meta(min_length=1)]
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)] | None = None
    seed: Annotated[int, msgspec.Meta(ge=INT64[0], le=INT64[1])] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    stream: bool | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=4)] | None = None
    tools: Annotated[list[MTool], msgspec.Meta(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    user: str | None = None


def msgspec_convert(body: dict[str, Any]) -> Any:
    return msgspec.convert(body, MChat)


# -- pydantic v2 ---------------------------------------------------------------------------

P = pydantic.Field


class PText(pydantic.BaseModel):
    type: Literal["text"]
    text: str


class PImageUrl(pydantic.BaseModel):
    url: str
    detail: str | None = None


class PImage(pydantic.BaseModel):
    type: Literal["image_url"]
    image_url: PImageUrl


class PFunctionCall(pydantic.BaseModel):
    name: str
    arguments: str


class PToolCall(pydantic.BaseModel):
    id: str
    function: PFunctionCall
    type: Literal["function"] = "function"


class PMessage(pydantic.BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[Annotated[PText | PImage, P(discriminator="type")]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[PToolCall] | None = None


class PFunction(pydantic.BaseModel):
    name: Annotated[str, P(pattern=TOOL_NAME)]
    description: str | None = None
    parameters: dict[str, Any] | None = None


class PTool(pydantic.BaseModel):
    type: Literal["function"]
    function: PFunction


class PChat(pydantic.BaseModel):
    model: Annotated[str, P(min_length=1)]
    messages: Annotated[list[PMessage], P(min_length=1)]
    temperature: Annotated[float, P(ge=0, le=2)] | None = None
    top_p: Annotated[float, P(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, P(ge=1, le=INT32_MAX)] | None = None
    seed: Annotated[int, P(ge=INT64[0], le=INT64[1])] | None = None
    n: Annotated[int, P(ge=1, le=128)] | None = None
    stream: bool | None = None
    stop: str | Annotated[list[str], P(max_length=4)] | None = None
    tools: Annotated[list[PTool], P(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    user: str | None = None


def pydantic_validate(body: dict[str, Any]) -> Any:
    return PChat.model_validate(body)


# -- the bodies ----------------------------------------------------------------------------


def _tool(i: int) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": f"tool_{i}", "description": "Look something up by its name.",
        "parameters": {"type": "object", "properties": {"name": {"type": "string"}},
                       "required": ["name"]}}}


def typical() -> dict[str, Any]:
    return {
        "model": "gpt-4o", "temperature": 0.7, "top_p": 0.9, "max_tokens": 256, "seed": 42,
        "stop": ["\n\n"], "user": "user-1234", "tools": [_tool(0), _tool(1)],
        "tool_choice": "auto",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "tool_0", "arguments": '{"name": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C."},
            {"role": "user", "content": "And tomorrow?"},
        ],
    }


def large() -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are terse. " * 50}]
    for i in range(100):
        messages.append({"role": "user", "content": [
            {"type": "text", "text": f"Question {i}: " + "words " * 40},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]})
        messages.append({"role": "assistant", "content": "An answer. " * 30})
    return {**typical(), "messages": messages, "tools": [_tool(i) for i in range(32)]}


# -- the measure ---------------------------------------------------------------------------


def per_call_us(fn: Callable[[dict[str, Any]], Any], body: dict[str, Any],
                seconds: float) -> float:
    """Microseconds per call: the best of five runs of about ``seconds / 5`` each."""
    fn(body)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 0.05:
        fn(body)
        n += 1
    batch = max(1, int(n * seconds / 5 / 0.05))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batch):
            fn(body)
        best = min(best, (time.perf_counter() - start) / batch)
    return best * 1e6


CONTENDERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "today (spaceai.api.validation)": parse_chat,
    "msgspec Structs (convert)": msgspec_convert,
    "pydantic v2 models (model_validate)": pydantic_validate,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time spent per measure")
    args = ap.parse_args()
    print(f"msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}")
    for label, body in (("typical", typical()), ("large", large())):
        for fn in CONTENDERS.values():
            fn(body)  # every contender accepts the body
        base = per_call_us(parse_chat, body, args.seconds)
        print(f"\n{label} body ({len(body['messages'])} messages, {len(body['tools'])} tools)")
        for name, fn in CONTENDERS.items():
            us = base if fn is parse_chat else per_call_us(fn, body, args.seconds)
            print(f"  {name:40s} {us:9.1f} us  {us / base:5.2f}x today")


if __name__ == "__main__":
    main()
