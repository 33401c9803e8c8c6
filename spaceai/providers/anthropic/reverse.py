"""The reverse direction, for the Anthropic-compatible ``/v1/messages`` endpoint.

* :func:`messages_to_chat_request` — an Anthropic Messages request body -> :class:`ChatRequest`;
* :func:`completion_to_message` — an OpenAI ``chat.completion`` -> an Anthropic message;
* :class:`AnthropicStreamEncoder` — OpenAI chunks -> Anthropic's SSE event sequence (bytes).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from spaceai.fields import INT32_MAX, Int
from spaceai.providers.anthropic.errors import to_anthropic_error
from spaceai.types import ChatRequest, GatewayError, Usage

FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

MAX_TOKENS = Int(1, INT32_MAX)
TOP_K = Int(0, INT32_MAX)


def _bad(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param)


# -- request ---------------------------------------------------------------------------------


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        parts = []
        for block in system:
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad("system blocks must be text blocks", "system")
            parts.append(str(block.get("text", "")))
        return "\n\n".join(parts)
    raise _bad("system must be a string or a list of text blocks", "system")


def _image_part(block: dict[str, Any]) -> dict[str, Any]:
    src = block.get("source")
    src = src if isinstance(src, dict) else {}
    if src.get("type") == "base64" and src.get("media_type") and src.get("data"):
        url = f"data:{src['media_type']};base64,{src['data']}"
    elif src.get("type") == "url" and src.get("url"):
        url = src["url"]
    else:
        raise _bad("image source must be base64 (media_type, data) or url", "messages")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result_parts(content: Any) -> tuple[str, list[dict[str, Any]]]:
    """(text, image parts) of a tool_result's content.

    OpenAI tool messages carry text only, so images travel in a user message right after;
    a ``tool_reference`` (a deferred tool loaded by tool search) becomes a line of text.
    """
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise _bad("tool_result content must be a string or a list of blocks", "messages")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for b in content:
        kind = b.get("type") if isinstance(b, dict) else None
        if kind == "text":
            texts.append(str(b.get("text", "")))
        elif kind == "image":
            images.append(_image_part(b))
            texts.append("[image attached below]")
        elif kind == "tool_reference":
            texts.append(f"Tool loaded: {b.get('tool_name', '')}")
        elif not isinstance(kind, str):
            raise _bad("tool_result content blocks need a type", "messages")
        # any other block (a document, a search result...): refused by claude_only_features
    return "\n".join(texts), images


def _system_message(content: Any, i: int) -> list[dict[str, Any]]:
    """A ``role: system`` entry of ``messages`` (Claude Code sends them) as an OpenAI one,
    in place; its text blocks' ``cache_control`` is a hint only."""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        try:
            text = _system_text(content)
        except GatewayError:
            raise _bad(f"messages[{i}]: system content must be text blocks", "messages") from None
    else:
        raise _bad(f"messages[{i}]: content must be a string or a list of blocks", "messages")
    return [{"role": "system", "content": text}] if text else []


def _convert_message(msg: Any, i: int) -> list[dict[str, Any]]:
    if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant", "system"):
        raise _bad(f"messages[{i}]: role must be user, assistant or system", "messages")
    role, content = msg["role"], msg.get("content")
    if role == "system":
        return _system_message(content, i)
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"messages[{i}]: content must be a string or a list of blocks", "messages")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    tool_msgs: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image" and role == "user":
            parts.append(_image_part(block))
        elif kind == "tool_use" and role == "assistant":
            if not block.get("id") or not block.get("name"):
                raise _bad(f"messages[{i}]: tool_use needs id and name", "messages")
            args = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": args},
                }
            )
        elif kind == "tool_result" and role == "user":
            if not block.get("tool_use_id"):
                raise _bad(f"messages[{i}]: tool_result needs tool_use_id", "messages")
            text, images = _tool_result_parts(block.get("content"))
            tool_images.extend(images)
            if block.get("is_error"):
                text = f"Error: {text}"
            tool_msgs.append(
                {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}
            )
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            continue
        elif isinstance(kind, str) and kind not in TRANSLATED_BLOCKS:
            continue  # only a Claude model can take it: refused by claude_only_features
        else:
            raise _bad(f"messages[{i}]: {role} content block {kind!r} is not supported", "messages")
    if role == "assistant":
        out: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(p["text"] for p in parts) or None,
        }
        if calls:
            out["tool_calls"] = calls
        return [out]
    # tool results answer the previous assistant turn, so they come first
    parts = tool_images + parts
    if parts:
        tool_msgs.append({"role": "user", "content": parts})
    return tool_msgs


def _referenced_tools(messages: list[Any]) -> set[str]:
    """Names of the deferred tools a ``tool_reference`` in a tool result has loaded."""
    names: set[str] = set()
    for msg in messages:
        content = msg.get("content") if isinstance(msg, dict) else None
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") == "tool_result" and \
                    isinstance(block.get("content"), list):
                names.update(str(b.get("tool_name")) for b in block["content"]
                             if isinstance(b, dict) and b.get("type") == "tool_reference")
    return names


def _convert_tools(tools: Any, loaded: set[str]) -> list[dict[str, Any]]:
    """Custom tools as OpenAI function tools.

    A tool with ``defer_loading`` stays out of the model's view until a ``tool_reference``
    loads it (what Anthropic's tool search does); ``cache_control`` is a hint only; server
    tools (web search, code execution...) only a Claude model can run.
    """
    if not isinstance(tools, list):
        raise _bad("tools must be a list", "tools")
    out = []
    for t in tools:
        if not isinstance(t, dict) or not t.get("name"):
            raise _bad("each tool needs a name", "tools")
        if t.get("type", "custom") != "custom":
            continue  # a server tool: refused by claude_only_features unless on Claude
        if t.get("defer_loading") and t["name"] not in loaded:
            continue
        fn: dict[str, Any] = {"name": t["name"], "parameters": t.get("input_schema") or {}}
        if t.get("description"):
            fn["description"] = t["description"]
        out.append({"type": "function", "function": fn})
    return out


def _convert_tool_choice(choice: Any, params: dict[str, Any]) -> None:
    if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
        raise _bad("tool_choice.type must be auto, any, tool or none", "tool_choice")
    kind = choice["type"]
    if kind == "tool":
        if not choice.get("name"):
            raise _bad("tool_choice of type tool needs a name", "tool_choice")
        params["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        params["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use"):
        params["parallel_tool_calls"] = False


# the content blocks a translated model gets; any other (document, search_result,
# server_tool_use, container_upload...) only a Claude model can take
TRANSLATED_BLOCKS = frozenset({"text", "image", "tool_use", "tool_result", "thinking",
                               "redacted_thinking"})
TRANSLATED_RESULT_BLOCKS = frozenset({"text", "image", "tool_reference"})
# request fields a translated model cannot honour, and which are not mere hints
CLAUDE_ONLY_FIELDS = ("mcp_servers", "container")


def claude_only_features(body: dict[str, Any]) -> list[str]:
    """What in a valid Messages body only a Claude model can honour (empty for most bodies).

    A translated (non-Claude) model is refused with a 400 naming these. Hints are not
    listed: ``cache_control`` and ``context_management`` are ignored (no prompt cache or
    server-side context editing to steer), ``thinking`` and ``output_config.effort`` too (the
    answer has no thinking blocks, as a Claude answer may not).
    """
    found = [f for f in CLAUDE_ONLY_FIELDS if body.get(f)]
    for t in body.get("tools") or ():
        if isinstance(t, dict) and t.get("type", "custom") != "custom":
            found.append(f"tools[type={t.get('type')}]")
    config = body.get("output_config")
    if isinstance(config, dict):
        found += [f"output_config.{k}" for k in config if k not in ("effort", "format")]
    blocks: set[str] = set()
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        for block in content if isinstance(content, list) else ():
            kind = block.get("type") if isinstance(block, dict) else None
            if not isinstance(kind, str):
                continue
            if kind not in TRANSLATED_BLOCKS:
                blocks.add(kind)
            elif kind == "tool_result" and isinstance(block.get("content"), list):
                blocks.update(b["type"] for b in block["content"] if isinstance(b, dict)
                              and isinstance(b.get("type"), str)
                              and b["type"] not in TRANSLATED_RESULT_BLOCKS)
    found += [f"content block {k!r}" for k in sorted(blocks)]
    return found


def _object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise _bad(f"{key} must be an object", key)
    return value


def _check_hints(body: dict[str, Any], max_tokens: int) -> None:
    """The shape of ``thinking``, ``context_management`` and ``output_config``."""
    thinking = _object(body, "thinking")
    if thinking is not None:
        kind = thinking.get("type")
        if kind not in ("enabled", "disabled", "adaptive"):
            raise _bad("thinking.type must be enabled, disabled or adaptive", "thinking")
        budget = thinking.get("budget_tokens")
        if kind == "enabled" and (isinstance(budget, bool) or not isinstance(budget, int)
                                  or not 0 < budget < max_tokens):
            raise _bad("thinking.budget_tokens must be an integer below max_tokens",
                       "thinking.budget_tokens")
    management = _object(body, "context_management")
    if management is not None and not isinstance(management.get("edits", []), list):
        raise _bad("context_management.edits must be a list", "context_management.edits")
    config = _object(body, "output_config")
    if config is not None and config.get("effort") is not None and \
            not isinstance(config["effort"], str):
        raise _bad("output_config.effort must be a string", "output_config.effort")


def _output_format(body: dict[str, Any], params: dict[str, Any]) -> None:
    """Structured outputs (``output_config.format``, or the older ``output_format``) as
    OpenAI's ``response_format``."""
    config = body.get("output_config") or {}
    fmt = config.get("format") if isinstance(config, dict) else None
    fmt = fmt if fmt is not None else body.get("output_format")
    if fmt is None:
        return
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or \
            not isinstance(fmt.get("schema"), dict):
        raise _bad("output_config.format must be {type: json_schema, schema: {...}}",
                   "output_config.format")
    params["response_format"] = {"type": "json_schema", "json_schema": {
        "name": "output", "schema": fmt["schema"], "strict": True}}


def _user_id(user_id: Any) -> str:
    """``metadata.user_id`` as OpenAI's ``user`` (a long one, as Claude Code's JSON, hashed)."""
    text = str(user_id)
    return text if len(text) <= 64 else hashlib.sha256(text.encode()).hexdigest()


def _number(body: dict[str, Any], key: str, lo: float, hi: float | None) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{key} must be a number", key)
    if value < lo or (hi is not None and value > hi):
        raise _bad(
            f"{key} must be in the range {lo:g}-{hi:g}"
            if hi is not None
            else f"{key} must be >= {lo:g}",
            key,
        )
    return value


def messages_to_chat_request(body: Any) -> ChatRequest:
    """Validate an Anthropic Messages request body and translate it to a :class:`ChatRequest`.

    Raises :class:`GatewayError` (400) on bad input. ``temperature`` defaults to 1.0
    (Anthropic's default); ``top_k`` is kept in ``params``. ``role: system`` entries of
    ``messages`` stay system messages in place. What only Claude can honour is skipped here
    and named by :func:`claude_only_features`.
    """
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model: field required", "model")
    if body.get("max_tokens") is None:
        raise _bad("max_tokens: field required", "max_tokens")
    max_tokens = MAX_TOKENS.check("max_tokens", body["max_tokens"])
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _bad("messages: field required (a non-empty list)", "messages")
    messages: list[dict[str, Any]] = []
    if body.get("system") is not None:
        text = _system_text(body["system"])
        if text:
            messages.append({"role": "system", "content": text})
    for i, msg in enumerate(raw_messages):
        messages.extend(_convert_message(msg, i))
    if all(m.get("role") == "system" for m in raw_messages):
        raise _bad("messages must contain at least one user or assistant message", "messages")
    _check_hints(body, max_tokens)

    params: dict[str, Any] = {"max_tokens": max_tokens}
    temperature = _number(body, "temperature", 0, 1)
    params["temperature"] = 1.0 if temperature is None else temperature
    if (top_p := _number(body, "top_p", 0, 1)) is not None:
        params["top_p"] = top_p
    if body.get("top_k") is not None:
        params["top_k"] = TOP_K.check("top_k", body["top_k"])
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("stop_sequences must be a list of strings", "stop_sequences")
        if stops:
            params["stop"] = list(stops)
    if body.get("tools"):
        tools = _convert_tools(body["tools"], _referenced_tools(raw_messages))
        if tools:
            params["tools"] = tools
    if body.get("tool_choice") is not None:
        _convert_tool_choice(body["tool_choice"], params)
    if "tools" not in params:
        params.pop("tool_choice", None)  # every tool was deferred: nothing to choose from
    _output_format(body, params)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and metadata.get("user_id"):
        params["user"] = _user_id(metadata["user_id"])
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("stream must be a boolean", "stream")
    return ChatRequest(
        model=model, messages=messages, params=params, stream=stream, include_usage=True
    )


# -- response --------------------------------------------------------------------------------


def anthropic_usage(usage: Usage) -> dict[str, int]:
    """:class:`Usage` in Anthropic's shape (input_tokens excludes cached tokens)."""
    return {
        "input_tokens": max(
            0, usage.prompt_tokens - usage.cached_tokens - usage.cache_creation_tokens
        ),
        "cache_creation_input_tokens": usage.cache_creation_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "output_tokens": usage.completion_tokens,
    }


def _parse_args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _message_id(openai_id: str | None) -> str:
    oid = openai_id or ""
    return oid if oid.startswith("msg_") else f"msg_{oid.removeprefix('chatcmpl-')}"


def stop_info(
    finish: str | None, text: str, stop_sequences: list[str] | None
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) for an OpenAI finish_reason and the produced text.

    ``stop`` becomes ``stop_sequence`` only when the text ends with one of the client's
    stop sequences (OpenAI-style upstreams strip it, so usually it is ``end_turn``).
    """
    reason = FINISH_TO_STOP.get(finish or "stop", "end_turn")
    if reason == "end_turn" and stop_sequences:
        for seq in stop_sequences:
            if seq and text.endswith(seq):
                return "stop_sequence", seq
    return reason, None


def completion_to_message(
    completion: dict[str, Any], model: str, stop_sequences: list[str] | None = None
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as an Anthropic message answered as ``model``."""
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    text = msg.get("content") or msg.get("refusal") or ""
    reason, seq = stop_info(choice.get("finish_reason"), text, stop_sequences)
    if seq:
        text = text[: -len(seq)]
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "text", "text": text})
    for call in msg.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": fn.get("name", ""),
                "input": _parse_args(fn.get("arguments")),
            }
        )
    return {
        "id": _message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": seq,
        "usage": anthropic_usage(Usage.from_openai(completion.get("usage"))),
    }


# -- stream ----------------------------------------------------------------------------------


def sse_event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event with an ``event:`` line, as Anthropic sends them."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicStreamEncoder:
    """Re-encodes OpenAI ``chat.completion.chunk`` dicts as Anthropic's SSE events.

    Call :meth:`encode` per chunk and :meth:`finish` at the end (it closes the open block
    and sends ``message_delta`` with the cumulative usage, then ``message_stop``).
    ``input_tokens`` is what ``message_start`` announces (an estimate; the exact counts
    from the final usage chunk go into ``message_delta``).
    """

    def __init__(
        self,
        model: str,
        stop_sequences: list[str] | None = None,
        message_id: str | None = None,
        input_tokens: int = 0,
    ) -> None:
        self.model = model
        self.stop_sequences = stop_sequences
        self.message_id = message_id
        self.input_tokens = input_tokens
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._started = False
        self._pinged = False
        self._finished = False
        self._blocks = 0  # content blocks opened so far
        self._open: int | None = None  # index of the open block
        self._open_kind: str | None = None
        self._tool_blocks: dict[int, int] = {}  # openai tool index -> block index
        self._tail = ""  # end of the text so far, to spot a stop sequence

    def _start(self, chunk_id: str | None) -> bytes:
        self._started = True
        msg = {
            "id": self.message_id or _message_id(chunk_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return sse_event("message_start", {"type": "message_start", "message": msg})

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_kind = self._open, None, None
        return sse_event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        index = self._blocks
        self._blocks += 1
        self._open, self._open_kind = index, kind
        out += sse_event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
        if not self._pinged:
            self._pinged = True
            out += sse_event("ping", {"type": "ping"})
        return out

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open_kind != "text":
            out += self._open_block("text", {"type": "text", "text": ""})
        self._tail = (self._tail + text)[-256:]
        delta = {"type": "text_delta", "text": text}
        return out + sse_event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._open, "delta": delta},
        )

    def _tool(self, call: dict[str, Any]) -> bytes:
        out = b""
        n = call.get("index", len(self._tool_blocks))
        fn = call.get("function") or {}
        if n not in self._tool_blocks:
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{n}",
                "name": fn.get("name") or "",
                "input": {},
            }
            out += self._open_block("tool_use", block)
            self._tool_blocks[n] = self._blocks - 1
        if fn.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": fn["arguments"]}
            out += sse_event(
                "content_block_delta",
                {"type": "content_block_delta", "index": self._tool_blocks[n], "delta": delta},
            )
        return out

    def encode(self, chunk: dict[str, Any]) -> bytes:
        """The SSE bytes for one OpenAI chunk (may be empty)."""
        out = b"" if self._started else self._start(chunk.get("id"))
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if text:
                out += self._text(text)
            for call in delta.get("tool_calls") or []:
                out += self._tool(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> bytes:
        """The closing events: ``content_block_stop``, ``message_delta``, ``message_stop``."""
        if self._finished:
            return b""
        self._finished = True
        out = b"" if self._started else self._start(None)
        if not self._pinged:
            self._pinged = True
            out += sse_event("ping", {"type": "ping"})
        out += self._close_block()
        reason, seq = stop_info(self.finish_reason, self._tail, self.stop_sequences)
        usage = anthropic_usage(self.usage or Usage())
        out += sse_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": seq},
                "usage": usage,
            },
        )
        return out + sse_event("message_stop", {"type": "message_stop"})

    def error(self, err: GatewayError) -> bytes:
        """An ``error`` event, for a stream that fails after it started."""
        self._finished = True
        return sse_event("error", to_anthropic_error(err))
