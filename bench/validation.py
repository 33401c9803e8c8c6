"""How fast a chat body is validated: msgspec types vs pydantic v2 models vs the rule tables.

    PYTHONPATH=$PWD .venv/bin/python bench/validation.py [--seconds 1] [--baseline 67e30a3]

Validates two decoded ``/v1/chat/completions`` bodies (what the validator gets from the JSON
decoder): a typical one (a system prompt, a short tool round trip, two tools, sampling
parameters) and a large one (200 messages with content-part arrays, 32 tools). Contenders,
all measured in the same run, ratios against the first:

* the validator before the types (``parse_chat`` of ``--baseline``, its rule tables, read
  from git);
* the gateway's validator (``spaceai.api.validation.parse_chat``): msgspec converts the body
  to ``spaceai.api.schemas.ChatCompletionRequest``, then the rules a type cannot say;
* that conversion alone (``msgspec.convert``);
* pydantic v2 models of the same shape (``model_validate``), defined below.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
import pydantic

from spaceai.api.schemas import TOOL_NAME, ChatCompletionRequest
from spaceai.api.validation import parse_chat
from spaceai.fields import INT32_MAX, INT64_MAX, INT64_MIN

BASELINE = "67e30a3"  # the last commit validating with rule tables (spaceai/fields.py)
INT64 = (INT64_MIN, INT64_MAX)

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


def baseline_parse_chat(rev: str) -> Callable[[dict[str, Any]], Any]:
    """``parse_chat`` as it was at ``rev``, with the ``spaceai.fields`` of that commit."""
    def source(path: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:{path}"], check=True, text=True,
                              capture_output=True).stdout

    fields = types.ModuleType("baseline_fields")
    sys.modules[fields.__name__] = fields  # its dataclasses look their module up
    exec(compile(source("spaceai/fields.py"), "baseline/fields.py", "exec"), fields.__dict__)
    validation = types.ModuleType("baseline_validation")
    code = source("spaceai/api/validation.py").replace("from spaceai.fields import",
                                                       "from baseline_fields import")
    exec(compile(code, "baseline/validation.py", "exec"), validation.__dict__)
    return validation.parse_chat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time spent per measure")
    ap.add_argument("--baseline", default=BASELINE, help="the commit to compare with")
    args = ap.parse_args()
    contenders: dict[str, Callable[[dict[str, Any]], Any]] = {
        f"rule tables ({args.baseline})": baseline_parse_chat(args.baseline),
        "msgspec types + rules (parse_chat)": parse_chat,
        "msgspec.convert alone": lambda body: msgspec.convert(body, ChatCompletionRequest),
        "pydantic v2 models (model_validate)": pydantic_validate,
    }
    print(f"msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}")
    for label, body in (("typical", typical()), ("large", large())):
        print(f"\n{label} body ({len(body['messages'])} messages, {len(body['tools'])} tools)")
        base = None
        for name, fn in contenders.items():
            fn(body)  # every contender accepts the body
            us = per_call_us(fn, body, args.seconds)
            base = base or us
            print(f"  {name:40s} {us:9.1f} us  {us / base:5.2f}x")


if __name__ == "__main__":
    main()
