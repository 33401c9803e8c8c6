"""The reverse direction, for the Anthropic-compatible ``/v1/messages`` endpoint.

* :func:`messages_to_chat_request` — an Anthropic Messages request body -> :class:`ChatRequest`;
* :func:`completion_to_message` — an OpenAI ``chat.completion`` -> an Anthropic message;
* :class:`AnthropicStreamEncoder` — OpenAI chunks -> Anthropic's SSE event sequence (bytes).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from spaceai.api.schemas import (
    AnthropicTool,
    MessagesRequest,
    ThinkingEnabled,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
)
from spaceai.fields import convert
from spaceai.providers.anthropic.errors import to_anthropic_error
from spaceai.providers.events import named_sse
from spaceai.types import ChatRequest, GatewayError, Usage

FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _bad(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param)


# -- request ---------------------------------------------------------------------------------


def _system_text(blocks: list[Any]) -> str:
    return "\n\n".join(str(block.get("text", "")) for block in blocks)


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


def _system_message(content: str | list[dict[str, Any]], i: int) -> list[dict[str, Any]]:
    """A ``role: system`` entry of ``messages`` (Claude Code sends them) as an OpenAI one,
    in place; its text blocks' ``cache_control`` is a hint only."""
    if isinstance(content, list):
        if any(block.get("type") != "text" for block in content):
            raise _bad(f"messages[{i}]: system content must be text blocks", "messages")
        content = _system_text(content)
    return [{"role": "system", "content": content}] if content else []


def _convert_message(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    """One message (its role and content's type already checked) as OpenAI messages."""
    role, content = msg["role"], msg["content"]
    if role == "system":
        return _system_message(content, i)
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    tool_msgs: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
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


def _referenced_tools(messages: list[dict[str, Any]]) -> set[str]:
    """Names of the deferred tools a ``tool_reference`` in a tool result has loaded."""
    names: set[str] = set()
    for msg in messages:
        content = msg["content"]
        for block in content if isinstance(content, list) else ():
            if block.get("type") == "tool_result" and isinstance(block.get("content"), list):
                names.update(str(b.get("tool_name")) for b in block["content"]
                             if isinstance(b, dict) and b.get("type") == "tool_reference")
    return names


def _convert_tools(tools: list[AnthropicTool], loaded: set[str]) -> list[dict[str, Any]]:
    """Custom tools as OpenAI function tools.

    A tool with ``defer_loading`` stays out of the model's view until a ``tool_reference``
    loads it (what Anthropic's tool search does); ``cache_control`` is a hint only; server
    tools (web search, code execution...) only a Claude model can run.
    """
    out = []
    for t in tools:
        if (t.type or "custom") != "custom":
            continue  # a server tool: refused by claude_only_features unless on Claude
        if t.defer_loading and t.name not in loaded:
            continue
        fn: dict[str, Any] = {"name": t.name, "parameters": t.input_schema or {}}
        if t.description:
            fn["description"] = t.description
        out.append({"type": "function", "function": fn})
    return out


def _convert_tool_choice(choice: ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone,
                         params: dict[str, Any]) -> None:
    if isinstance(choice, ToolChoiceTool):
        params["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        params["tool_choice"] = {ToolChoiceAuto: "auto", ToolChoiceAny: "required",
                                 ToolChoiceNone: "none"}[type(choice)]
    if choice.disable_parallel_tool_use:
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
        if t.get("type", "custom") != "custom":
            found.append(f"tools[type={t.get('type')}]")
    config = body.get("output_config")
    if isinstance(config, dict):
        found += [f"output_config.{k}" for k in config if k not in ("effort", "format")]
    blocks: set[str] = set()
    for msg in body["messages"]:
        content = msg["content"]
        for block in content if isinstance(content, list) else ():
            kind = block.get("type")
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


def _user_id(user_id: Any) -> str:
    """``metadata.user_id`` as OpenAI's ``user`` (a long one, as Claude Code's JSON, hashed)."""
    text = str(user_id)
    return text if len(text) <= 64 else hashlib.sha256(text.encode()).hexdigest()


def messages_to_chat_request(body: Any) -> ChatRequest:
    """Validate an Anthropic Messages request body and translate it to a :class:`ChatRequest`.

    The body's shape is :class:`MessagesRequest`'s; content blocks are checked here, as they
    are translated. Raises :class:`GatewayError` (400) on bad input. ``temperature`` defaults
    to 1.0 (Anthropic's default); ``top_k`` is kept in ``params``. ``role: system`` entries
    of ``messages`` stay system messages in place. What only Claude can honour is skipped
    here and named by :func:`claude_only_features`.
    """
    typed = convert(body, MessagesRequest)
    raw_messages = body["messages"]
    messages: list[dict[str, Any]] = []
    system = typed.system
    text = system if isinstance(system, str) or system is None else _system_text(body["system"])
    if text:
        messages.append({"role": "system", "content": text})
    for i, msg in enumerate(raw_messages):
        messages.extend(_convert_message(msg, i))
    if all(m.role == "system" for m in typed.messages):
        raise _bad("messages must contain at least one user or assistant message", "messages")
    thinking = typed.thinking
    if isinstance(thinking, ThinkingEnabled) and thinking.budget_tokens >= typed.max_tokens:
        raise _bad("thinking.budget_tokens must be an integer below max_tokens",
                   "thinking.budget_tokens")

    params: dict[str, Any] = {"max_tokens": typed.max_tokens,
                              "temperature": 1.0 if typed.temperature is None
                              else typed.temperature}
    if typed.top_p is not None:
        params["top_p"] = typed.top_p
    if typed.top_k is not None:
        params["top_k"] = typed.top_k
    if typed.stop_sequences:
        params["stop"] = list(typed.stop_sequences)
    if typed.tools:
        tools = _convert_tools(typed.tools, _referenced_tools(raw_messages))
        if tools:
            params["tools"] = tools
    if typed.tool_choice is not None and "tools" in params:  # every tool deferred: no choice
        _convert_tool_choice(typed.tool_choice, params)
    # structured outputs (output_config.format, or the older output_format)
    fmt = (typed.output_config.format if typed.output_config else None) or typed.output_format
    if fmt is not None:
        params["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "output", "schema": fmt.schema, "strict": True}}
    metadata = typed.metadata
    if metadata and metadata.get("user_id"):
        params["user"] = _user_id(metadata["user_id"])
    return ChatRequest(
        model=typed.model, messages=messages, params=params, stream=bool(typed.stream),
        include_usage=True
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
        return named_sse("message_start", {"type": "message_start", "message": msg})

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._open_kind = self._open, None, None
        return named_sse("content_block_stop", {"type": "content_block_stop", "index": index})

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        index = self._blocks
        self._blocks += 1
        self._open, self._open_kind = index, kind
        out += named_sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
        if not self._pinged:
            self._pinged = True
            out += named_sse("ping", {"type": "ping"})
        return out

    def _text(self, text: str) -> bytes:
        out = b""
        if self._open_kind != "text":
            out += self._open_block("text", {"type": "text", "text": ""})
        self._tail = (self._tail + text)[-256:]
        delta = {"type": "text_delta", "text": text}
        return out + named_sse(
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
            out += named_sse(
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
            out += named_sse("ping", {"type": "ping"})
        out += self._close_block()
        reason, seq = stop_info(self.finish_reason, self._tail, self.stop_sequences)
        usage = anthropic_usage(self.usage or Usage())
        out += named_sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": seq},
                "usage": usage,
            },
        )
        return out + named_sse("message_stop", {"type": "message_stop"})

    def error(self, err: GatewayError) -> bytes:
        """An ``error`` event, for a stream that fails after it started."""
        self._finished = True
        return named_sse("error", to_anthropic_error(err))
