"""OpenAI chat request (:class:`ChatRequest`) -> Anthropic Messages request body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from spaceai.catalog import ModelConfig
from spaceai.types import ChatRequest, GatewayError

DEFAULT_MAX_TOKENS = 4096


def _bad(message: str, param: str | None = "messages") -> GatewayError:
    return GatewayError(400, message, param=param)


def _text_of(content: Any) -> str:
    """The text of an OpenAI message content (string or list of text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    raise _bad("message content must be a string or a list of content parts")


def image_block(url: str) -> dict[str, Any]:
    """An Anthropic image block for an OpenAI ``image_url`` (data: URL or http(s) URL)."""
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise _bad("image data URLs must be base64 (data:<media type>;base64,...)")
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad("image_url must be an http(s) URL or a base64 data URL")


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _bad("message content must be a string or a list of content parts")
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _bad("image_url.url must be a string")
            blocks.append(image_block(url))
        elif kind == "refusal":
            if part.get("refusal"):
                blocks.append({"type": "text", "text": part["refusal"]})
        else:
            raise _bad(f"content part type {kind!r} is not supported for Anthropic models")
    return blocks


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        args = orjson.loads(raw) if isinstance(raw, str) else raw
    except orjson.JSONDecodeError as exc:
        raise _bad(f"tool call {call.get('id')!r}: arguments are not valid JSON") from exc
    if not isinstance(args, dict):
        raise _bad(f"tool call {call.get('id')!r}: arguments must be a JSON object")
    return {"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""), "input": args}


def _tool_result(msg: dict[str, Any]) -> dict[str, Any]:
    if not msg.get("tool_call_id"):
        raise _bad("tool messages need a tool_call_id")
    return {
        "type": "tool_result",
        "tool_use_id": msg["tool_call_id"],
        "content": _text_of(msg.get("content")),
    }


def convert_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """OpenAI messages -> (Anthropic ``system`` text, alternating Anthropic messages).

    System and developer messages are joined into ``system``; tool results become user
    content; consecutive messages of the same role are merged into one.
    """
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for msg in messages:
        if not isinstance(msg, dict):
            raise _bad("each message must be an object")
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"))
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _content_blocks(msg.get("content"))
        elif role == "assistant":
            blocks = _content_blocks(msg.get("content"))
            blocks += [_tool_use(c) for c in msg.get("tool_calls") or []]
        elif role == "tool":
            role, blocks = "user", [_tool_result(msg)]
        else:
            raise _bad(f"message role {role!r} is not supported for Anthropic models")
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


def convert_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function tools -> Anthropic tools."""
    out = []
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _bad("only function tools are supported for Anthropic models", "tools")
        entry: dict[str, Any] = {
            "name": fn.get("name", ""),
            "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            entry["description"] = fn["description"]
        out.append(entry)
    return out


def convert_tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    """OpenAI ``tool_choice`` (+ ``parallel_tool_calls``) -> Anthropic ``tool_choice``."""
    if choice == "none":
        return {"type": "none"}
    out: dict[str, Any]
    if choice is None or choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name", "")}
    else:
        raise _bad("tool_choice must be auto, required, none or a function", "tool_choice")
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    elif choice is None:
        return None
    return out


ANSWER_DESCRIPTION = ("Give your final answer by calling this tool: its input is the answer, "
                      "in the required JSON schema.")
WRAPPED = "value"  # the property holding an answer whose schema is not an object


@dataclass(slots=True, frozen=True)
class AnswerTool:
    """The forced tool that carries a structured answer (``response_format``).

    Anthropic has no JSON mode on every model, so a JSON answer is asked for as the input of
    a single tool whose ``input_schema`` is the client's schema; the answer comes back as
    that input, which the response translation turns into the message's JSON text.
    ``wrapped``: the schema is not an object, so the answer is the input's ``value``.
    """

    name: str
    schema: dict[str, Any]
    description: str
    wrapped: bool


def answer_tool(params: dict[str, Any]) -> AnswerTool | None:
    """The answer tool for a request's ``response_format``, or None (text answers, or a
    ``tool_choice`` that asks for a tool call, so there is no final answer to shape)."""
    rf = params.get("response_format")
    if not isinstance(rf, dict) or rf.get("type") not in ("json_schema", "json_object"):
        return None
    choice = params.get("tool_choice")
    if params.get("tools") and (choice == "required" or isinstance(choice, dict)):
        return None
    js = rf.get("json_schema") if rf["type"] == "json_schema" else None
    js = js if isinstance(js, dict) else {}
    schema = js.get("schema") if isinstance(js.get("schema"), dict) else {"type": "object"}
    taken = {(t.get("function") or {}).get("name") for t in params.get("tools") or []
             if isinstance(t, dict)}
    name = js.get("name") if isinstance(js.get("name"), str) else "json_answer"
    while name in taken:
        name += "_answer"
    wrapped = schema.get("type") != "object"
    if wrapped:
        schema = {"type": "object", "properties": {WRAPPED: schema}, "required": [WRAPPED]}
    description = ANSWER_DESCRIPTION
    if isinstance(js.get("description"), str) and js["description"]:
        description += " " + js["description"]
    return AnswerTool(name, schema, description, wrapped)


def answer_text(tool: AnswerTool, arguments: Any) -> str:
    """The JSON text of an answer tool's input (unwrapped when the schema was not an object)."""
    if tool.wrapped and isinstance(arguments, dict):
        arguments = arguments.get(WRAPPED)
    return orjson.dumps(arguments).decode()


def build_request(req: ChatRequest, model: ModelConfig) -> dict[str, Any]:
    """The Anthropic Messages body for ``req`` sent to ``model``."""
    p = req.params
    temperature = p.get("temperature")
    if temperature is not None and not 0 <= temperature <= 1:
        raise GatewayError(
            400,
            f"temperature must be in the range 0-1 for Anthropic models (got {temperature})",
            param="temperature",
        )
    if (p.get("n") or 1) > 1:
        raise GatewayError(400, "n > 1 is not supported for Anthropic models", param="n")
    system, messages = convert_messages(req.messages)
    if not messages:
        raise _bad("messages must contain at least one user or assistant message")
    body: dict[str, Any] = {
        "model": model.upstream_model,
        "messages": messages,
        "max_tokens": req.max_tokens or model.max_output_tokens or DEFAULT_MAX_TOKENS,
    }
    if system:
        body["system"] = system
    if temperature is not None:
        body["temperature"] = temperature
    for key in ("top_p", "top_k"):
        if p.get(key) is not None:
            body[key] = p[key]
    stop = p.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    answer = answer_tool(p)
    if answer is not None and not answer.wrapped and (
            model.extra.get("structured_output") == "output_config"):
        # models with Anthropic's own structured output: the text itself follows the schema
        body["output_config"] = {"format": {"type": "json_schema", "schema": answer.schema}}
        answer = None
    choice = None
    if p.get("tools") and not (answer and p.get("tool_choice") == "none"):
        body["tools"] = convert_tools(p["tools"])
        choice = convert_tool_choice(p.get("tool_choice"), p.get("parallel_tool_calls"))
    if answer is not None:
        body.setdefault("tools", []).append({"name": answer.name, "description": answer.description,
                                             "input_schema": answer.schema})
        # alone: that tool; beside the client's tools: any tool, the answer or a call
        choice = ({"type": "tool", "name": answer.name} if len(body["tools"]) == 1
                  else {"type": "any", **({"disable_parallel_tool_use": True}
                                          if p.get("parallel_tool_calls") is False else {})})
    if choice is not None:
        body["tool_choice"] = choice
    if p.get("user"):
        body["metadata"] = {"user_id": str(p["user"])}
    if req.stream:
        body["stream"] = True
    return body
