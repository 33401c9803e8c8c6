"""A Responses API request (``POST /v1/responses``) -> the gateway's one :class:`ChatRequest`.

The body, its input items and their content parts are converted to their declared types
(:class:`spaceai.api.schemas.ResponsesRequest`, items tagged by ``type``); only a message
without ``type`` (OpenAI's EasyInputMessage) is tagged first, and an item type the gateway
does not take refused as unsupported. Input items become OpenAI chat messages
(``function_call`` items join the assistant turn before them as ``tool_calls``,
``function_call_output`` items become ``tool`` messages),
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
from typing import Any, get_args

import orjson

from spaceai.api.schemas import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputImagePart,
    InputItem,
    InputTextPart,
    JsonObjectFormat,
    JsonSchemaResponseFormat,
    MessageItem,
    OutputTextPart,
    Reasoning,
    RefusalPart,
    ResponsesInput,
    ResponsesText,
    TextPart,
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

_ITEM_TYPES = tuple(item.__struct_config__.tag for item in get_args(InputItem))


def _tag_items(body: Any) -> Any:
    """``body`` with ``type: message`` in each input item that has a ``role`` and no ``type``
    (OpenAI's EasyInputMessage), so the items' tagged union converts it; the client's own
    objects are left as sent. An item of a type the gateway does not take (OpenAI defines
    more: item_reference, computer_call...) is a 400 naming it."""
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return body
    tagged = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            kind = item.get("type")
            if kind is None and "role" in item:
                item = {**item, "type": "message"}
            elif isinstance(kind, str) and kind not in _ITEM_TYPES:
                raise bad(f"Invalid value for 'input[{i}].type': input items of type {kind!r} "
                          f"are not supported (supported: {', '.join(_ITEM_TYPES)}).",
                          f"input[{i}].type", "unsupported_value")
        tagged.append(item)
    return {**body, "input": tagged}


def _part(part: Any, param: str, role: str) -> dict[str, Any]:
    kind = type(part)
    if kind is str:
        return {"type": "input_text", "text": part}
    if kind is InputTextPart or kind is OutputTextPart or kind is TextPart:
        if role == "assistant":
            return {"type": "output_text", "text": part.text, "annotations": []}
        return {"type": "input_text", "text": part.text}
    if kind is RefusalPart:
        return {"type": "refusal", "refusal": part.refusal}
    if kind is InputImagePart:
        if part.image_url is None:
            raise bad(f"Invalid '{param}': only 'image_url' images (an http(s) or base64 data "
                      "URL) are supported, not file ids.", param, "unsupported_value")
        return {"type": "input_image", "image_url": part.image_url,
                "detail": part.detail or "auto"}
    raise bad(f"Invalid content part at '{param}': input_file parts are not supported "
              "(supported: input_text, input_image, output_text, refusal).", param,
              "unsupported_value")


def _normalise(item: Any, sent: Any, param: str) -> dict[str, Any]:
    """One input item (converted to its type; ``sent``: as the client sent it) in the shape
    ``input_items`` lists it, with an id."""
    kind = type(item)
    if kind is MessageItem:
        content = [item.content] if isinstance(item.content, str) else item.content
        parts = [_part(p, f"{param}.content[{j}]", item.role) for j, p in enumerate(content)]
        return {"id": item.id or new_id("msg"), "type": "message", "role": item.role,
                "content": parts, "status": item.status or "completed"}
    if kind is FunctionCallItem:
        return {"id": item.id or new_id("fc"), "type": "function_call",
                "call_id": item.call_id, "name": item.name, "arguments": item.arguments,
                "status": item.status or "completed"}
    if kind is FunctionCallOutputItem:
        return {"id": item.id or new_id("fco"), "type": "function_call_output",
                "call_id": item.call_id, "output": sent["output"],
                "status": item.status or "completed"}
    # reasoning: kept as sent, for the upstream that made it
    return {**sent, "id": item.id or new_id("rs"), "summary": sent.get("summary") or []}


def normalise_input(value: Any, typed: ResponsesInput) -> list[dict[str, Any]]:
    """``input`` as sent (a string or a list of items) as a list of normalised items;
    ``typed`` is ``value`` converted to its type."""
    if isinstance(typed, str):
        return [_normalise(MessageItem(role="user", content=typed), None, "input")]
    return [_normalise(item, sent, f"input[{i}]")
            for i, (item, sent) in enumerate(zip(typed, value, strict=True))]


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
    body = _tag_items(body)
    typed = convert(body, ResponsesBody)
    for name in ("background", "conversation", "prompt"):
        if body.get(name):
            raise bad(f"'{name}' is not supported by this gateway.", name, "unsupported_parameter")
    items = normalise_input(body["input"], typed.input)
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
