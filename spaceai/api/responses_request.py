"""A Responses API request (``POST /v1/responses``) -> the gateway's one :class:`ChatRequest`.

Input items become OpenAI chat messages (``function_call`` items join the assistant turn
before them as ``tool_calls``, ``function_call_output`` items become ``tool`` messages),
``instructions`` a leading system message, function tools chat tools, ``text.format`` a
``response_format``, ``max_output_tokens`` ``max_completion_tokens``. The chat body built
here is then validated by :func:`spaceai.api.validation.parse_chat`, the same rules as
``/v1/chat/completions``.

Hosted tools (``web_search``, ``file_search``, ``code_interpreter``, ...) run inside
OpenAI's own service; no chat model behind the gateway can run them. They are dropped from
the request and named in the ``x-spaceai-dropped`` response header, because clients such as
Codex offer them on every request: an offered tool the model cannot call changes nothing in
the answer's shape. Forcing one with ``tool_choice`` cannot be honoured and is a 400.
``namespace`` tools (groups of client tools, e.g. Codex's multi-agent tools) are dropped and
named the same way.
``reasoning`` input items are kept in the stored conversation (and answered back by
``GET .../input_items``) but not sent to chat upstreams, which have no field for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from spaceai.api.schemas import (
    JsonObjectFormat,
    JsonSchemaResponseFormat,
    Reasoning,
    ResponsesText,
)
from spaceai.api.schemas import ResponsesRequest as ResponsesBody
from spaceai.api.validation import bad, parse_chat
from spaceai.fields import convert
from spaceai.types import ChatRequest

HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "web_search_2025_08_26",
    "web_search_preview_2025_03_11", "file_search", "code_interpreter", "computer_use_preview",
    "computer_use", "image_generation", "mcp", "local_shell", "shell", "apply_patch",
    "tool_search",
})
# Responses parameters passed to the chat request as they are; those with no chat
# counterpart (include, truncation, ...) change nothing here
_PASSED = ("temperature", "top_p", "stream", "parallel_tool_calls", "user", "service_tier",
           "prompt_cache_key", "safety_identifier")
_ROLES = ("user", "system", "developer", "assistant")


def new_id(prefix: str) -> str:
    """An OpenAI-style object id: ``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``."""
    return f"{prefix}_{os.urandom(24).hex()}"


@dataclass(slots=True)
class ResponsesRequest:
    """A validated Responses request: its chat form, and what the answer echoes back."""

    chat: ChatRequest
    input_items: list[dict[str, Any]]  # this turn's input, normalised, each with an id
    context: list[dict[str, Any]]  # every item the model saw before its output, in order
    echo: dict[str, Any]  # the request fields the Response object repeats
    store: bool = True
    dropped: list[str] = field(default_factory=list)


# -- input items ---------------------------------------------------------------------------


def _part(part: Any, param: str, role: str) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "input_text", "text": part}
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text") and isinstance(part.get("text"), str):
        out_kind = "output_text" if role == "assistant" else "input_text"
        return ({"type": out_kind, "text": part["text"], "annotations": []}
                if out_kind == "output_text" else {"type": out_kind, "text": part["text"]})
    if kind == "refusal" and isinstance(part.get("refusal"), str):
        return {"type": "refusal", "refusal": part["refusal"]}
    if kind == "input_image":
        if not isinstance(part.get("image_url"), str):
            raise bad(f"Invalid '{param}': only 'image_url' images (an http(s) or base64 data "
                      "URL) are supported, not file ids.", param, "unsupported_value")
        return {"type": "input_image", "image_url": part["image_url"],
                "detail": part.get("detail") or "auto"}
    raise bad(f"Invalid content part at '{param}': expected input_text, input_image, "
              f"output_text or refusal (got {kind!r}).", param)


def _normalise(item: Any, param: str) -> dict[str, Any]:
    """One input item in the shape ``input_items`` lists it, with an id."""
    if not isinstance(item, dict):
        raise bad(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise bad(f"Invalid value for '{param}.role': expected one of "
                      f"{', '.join(_ROLES)}.", f"{param}.role")
        content = item.get("content")
        if isinstance(content, str):
            content = [content]
        if not isinstance(content, list):
            raise bad(f"Invalid type for '{param}.content': expected a string or an array of "
                      "content parts.", f"{param}.content", "invalid_type")
        parts = [_part(p, f"{param}.content[{j}]", role) for j, p in enumerate(content)]
        return {"id": item.get("id") or new_id("msg"), "type": "message", "role": role,
                "content": parts, "status": item.get("status") or "completed"}
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(item.get(name), str):
                raise bad(f"Missing required parameter: '{param}.{name}'.", f"{param}.{name}",
                          "missing_required_parameter")
        return {"id": item.get("id") or new_id("fc"), "type": "function_call",
                "call_id": item["call_id"], "name": item["name"],
                "arguments": item["arguments"], "status": item.get("status") or "completed"}
    if kind == "function_call_output":
        output = item.get("output")
        if not isinstance(item.get("call_id"), str) or output is None:
            raise bad(f"Missing required parameter: '{param}.call_id' and '{param}.output'.",
                      f"{param}.call_id", "missing_required_parameter")
        return {"id": item.get("id") or new_id("fco"), "type": "function_call_output",
                "call_id": item["call_id"], "output": output,
                "status": item.get("status") or "completed"}
    if kind == "reasoning":
        return {**item, "id": item.get("id") or new_id("rs"), "summary": item.get("summary") or []}
    raise bad(f"Invalid value for '{param}.type': input items of type {kind!r} are not supported "
              "(supported: message, function_call, function_call_output, reasoning).",
              f"{param}.type", "unsupported_value")


def normalise_input(value: Any) -> list[dict[str, Any]]:
    """``input`` (a string or a list of items) as a list of normalised items."""
    if isinstance(value, str):
        return [_normalise({"role": "user", "content": value}, "input")]
    if not isinstance(value, list):
        raise bad("Invalid type for 'input': expected a string or an array of input items.",
                  "input", "invalid_type")
    return [_normalise(item, f"input[{i}]") for i, item in enumerate(value)]


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text") or p.get("refusal") or "" for p in parts)


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):  # content parts
        return "".join(p.get("text", "") for p in output if isinstance(p, dict))
    return orjson.dumps(output).decode()


def items_to_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Normalised items -> OpenAI chat messages (the internal representation)."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item["type"]
        if kind == "message":
            role, parts = item["role"], item["content"]
            if role == "assistant":
                messages.append({"role": "assistant", "content": _text(parts)})
            elif any(p["type"] == "input_image" for p in parts):
                messages.append({"role": role, "content": [
                    {"type": "image_url", "image_url": {"url": p["image_url"],
                                                         "detail": p["detail"]}}
                    if p["type"] == "input_image" else {"type": "text", "text": _text([p])}
                    for p in parts]})
            else:
                messages.append({"role": role, "content": _text(parts)})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if not last["content"]:
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": _output_text(item["output"])})
    return messages


# -- tools and formats ---------------------------------------------------------------------


def _tools(tools: list[dict[str, Any]] | None, dropped: list[str]) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind in HOSTED_TOOLS:
            dropped.append(f"tools.{kind}")
            continue
        if kind == "namespace":  # a client's group of its own tools (Codex: multi-agent)
            dropped.append(f"tools.namespace.{tool.get('name')}")
            continue
        if kind != "function":
            raise bad(f"Invalid value for 'tools[{i}].type': {kind!r} tools are not supported "
                      "(supported: function; hosted tools are dropped).", f"tools[{i}].type",
                      "unsupported_value")
        fn = {k: tool[k] for k in ("name", "description", "parameters") if tool.get(k) is not None}
        if tool.get("strict") is not None:
            fn["strict"] = tool["strict"]
        out.append({"type": "function", "function": fn})
    return out or None


def _tool_choice(choice: Any) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    raise bad(f"Invalid 'tool_choice': {kind!r} cannot be honoured here (hosted tools do not "
              "run behind this gateway).", "tool_choice", "unsupported_value")


def _response_format(text: ResponsesText | None) -> dict[str, Any] | None:
    fmt = text.format if text is not None else None
    if isinstance(fmt, JsonObjectFormat):
        return {"type": "json_object"}
    if isinstance(fmt, JsonSchemaResponseFormat):
        schema = {"name": fmt.name, "schema": fmt.schema}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description is not None:
            schema["description"] = fmt.description
        return {"type": "json_schema", "json_schema": schema}
    return None  # text, the default


# -- the request ---------------------------------------------------------------------------


def parse_responses(body: Any, history: list[dict[str, Any]] | None = None) -> ResponsesRequest:
    """Validate a Responses body and translate it; ``history`` is the stored conversation
    (context and output of ``previous_response_id``) the input continues."""
    typed = convert(body, ResponsesBody)
    for name in ("background", "conversation", "prompt"):
        if body.get(name):
            raise bad(f"'{name}' is not supported by this gateway.", name, "unsupported_parameter")
    items = normalise_input(body["input"])
    context = [*(history or []), *items]
    instructions = typed.instructions
    messages = items_to_messages(context)
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    if not messages:
        raise bad("Invalid 'input': nothing to answer (no message or tool output).", "input",
                  "empty_array")
    dropped: list[str] = []
    chat: dict[str, Any] = {"model": typed.model, "messages": messages,
                            "max_completion_tokens": typed.max_output_tokens}
    chat.update((name, getattr(typed, name)) for name in _PASSED)
    chat["tools"] = _tools(body.get("tools"), dropped)
    choice = body.get("tool_choice")
    if chat["tools"] is not None or choice not in (None, "none", "auto"):
        chat["tool_choice"] = _tool_choice(choice)  # with no tools left, validation refuses it
    chat["response_format"] = _response_format(typed.text)
    reasoning = typed.reasoning or Reasoning()
    chat["reasoning_effort"] = reasoning.effort or None
    chat["verbosity"] = typed.text.verbosity or None if typed.text else None
    req = parse_chat({k: v for k, v in chat.items() if v is not None})
    req.sampling_defaults = False  # the gateway's chat defaults are not the Responses ones
    req.include_usage = True
    store = typed.store
    metadata = typed.metadata
    echo = {
        "instructions": instructions,
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": metadata or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.effort, "summary": reasoning.summary},
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [t for t in body.get("tools") or [] if t.get("type") == "function"],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation") or "disabled",
        "user": body.get("user"),
        "store": store is not False,
    }
    return ResponsesRequest(req, items, context, echo, store is not False, dropped)
