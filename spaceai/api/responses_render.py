"""Chat results -> Responses API objects and events.

:func:`render_response` turns a ``chat.completion`` into a ``response`` object;
:class:`ResponsesStreamEncoder` turns ``chat.completion.chunk`` dicts into the Responses
event sequence exactly as OpenAI sends it: ``response.created``, ``response.in_progress``,
per output item ``response.output_item.added`` … ``response.output_item.done`` (text through
``content_part`` and ``output_text`` events, function calls through
``function_call_arguments`` events), then ``response.completed`` / ``response.incomplete`` /
``response.failed`` carrying the whole response with its usage. Every event has a strictly
increasing ``sequence_number``.
"""

from __future__ import annotations

import time
from typing import Any

from spaceai.api.responses_request import new_id
from spaceai.providers.events import named_sse
from spaceai.types import GatewayError, Usage

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    """A chat ``usage`` (with ``cost``) in the Responses shape, ``cost`` kept."""
    u = Usage.from_openai(usage)
    out: dict[str, Any] = {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens,
                                 "cache_write_tokens": u.cache_creation_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
    }
    if usage and "cost" in usage:
        out["cost"] = usage["cost"]
    return out


def response_object(resp_id: str, model: str, echo: dict[str, Any], created_at: int,
                    status: str, output: list[dict[str, Any]],
                    usage: dict[str, Any] | None = None, finish_reason: str | None = None,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``response`` object: the request's echoed fields, the output, status and usage."""
    reason = _INCOMPLETE.get(finish_reason or "")
    if status == "completed" and reason:
        status = "incomplete"
    return {
        "id": resp_id, "object": "response", "created_at": created_at, "status": status,
        "background": False, "error": error,
        "incomplete_details": {"reason": reason} if status == "incomplete" else None,
        "model": model, "output": output,
        **{k: v for k, v in echo.items() if k != "store"},
        "store": echo["store"],
        "usage": response_usage(usage) if usage is not None else None,
        "completed_at": int(time.time()) if status == "completed" else None,
    }


def _message(text: str, status: str, item_id: str | None = None,
             refusal: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if text or not refusal:
        parts.append(_text_part(text))
    if refusal:
        parts.append({"type": "refusal", "refusal": refusal})
    return {"id": item_id or new_id("msg"), "type": "message", "status": status,
            "role": "assistant", "content": parts}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _reasoning(text: str, item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("rs"), "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}]}


def _function_call(call: dict[str, Any], status: str, item_id: str | None = None
                   ) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"id": item_id or new_id("fc"), "type": "function_call", "status": status,
            "call_id": call.get("id") or new_id("call"), "name": fn.get("name") or "",
            "arguments": fn.get("arguments") or ""}


def render_response(resp_id: str, model: str, echo: dict[str, Any], created_at: int,
                    data: dict[str, Any]) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` (its usage already priced) as a ``response``."""
    choice = (data.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    finish = choice.get("finish_reason")
    item_status = "incomplete" if finish in _INCOMPLETE else "completed"
    output: list[dict[str, Any]] = []
    if msg.get("reasoning_content"):
        output.append(_reasoning(msg["reasoning_content"]))
    if msg.get("content") or msg.get("refusal") or not msg.get("tool_calls"):
        output.append(_message(msg.get("content") or "", item_status, refusal=msg.get("refusal")))
    output += [_function_call(c, "completed") for c in msg.get("tool_calls") or ()]
    return response_object(resp_id, model, echo, created_at, "completed", output,
                           data.get("usage"), finish)


def sse(event: dict[str, Any]) -> bytes:
    """A Responses stream event as SSE (its ``type`` is the event's name)."""
    return named_sse(event["type"], event)


class ResponsesStreamEncoder:
    """Chat chunks in, Responses SSE bytes out. :attr:`response` is the final object."""

    def __init__(self, resp_id: str, model: str, echo: dict[str, Any], created_at: int) -> None:
        self.resp_id = resp_id
        self.model = model
        self.echo = echo
        self.created_at = created_at
        self.seq = 0
        self.output: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.response: dict[str, Any] | None = None
        self._open: dict[str, Any] | None = None  # the output item being streamed
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> its item

    def _event(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return sse(event)

    def _snapshot(self, status: str, usage: dict[str, Any] | None = None,
                  error: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self.resp_id, self.model, self.echo, self.created_at, status,
                               list(self.output), usage, self.finish_reason, error)

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        snap = self._snapshot("in_progress")
        return (self._event("response.created", response=snap)
                + self._event("response.in_progress", response=snap))

    def _add(self, item: dict[str, Any]) -> bytes:
        out = self._close()
        self._open = item
        self.output.append(item)
        index = len(self.output) - 1
        empty = {"message": {"content": []}, "reasoning": {"summary": []},
                 "function_call": {"arguments": ""}}[item["type"]]
        out += self._event("response.output_item.added", output_index=index,
                           item={**item, **empty})  # as OpenAI announces an item: empty
        if item["type"] == "message":
            out += self._event("response.content_part.added", item_id=item["id"],
                               output_index=index, content_index=0, part=_text_part(""))
        return out

    def _close(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        index = self.output.index(item)
        out = b""
        status = "incomplete" if item["type"] == "message" and self.finish_reason in _INCOMPLETE \
            else "completed"
        if item["type"] == "message":
            part = item["content"][0]
            out += self._event("response.output_text.done", item_id=item["id"],
                               output_index=index, content_index=0, text=part["text"],
                               logprobs=[])
            out += self._event("response.content_part.done", item_id=item["id"],
                               output_index=index, content_index=0, part=part)
        elif item["type"] == "function_call":
            out += self._event("response.function_call_arguments.done", item_id=item["id"],
                               output_index=index, arguments=item["arguments"])
        if "status" in item:
            item["status"] = status
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def encode(self, chunk: dict[str, Any]) -> bytes:
        """The events of one chat chunk (the final usage chunk is for :meth:`finish`)."""
        out = b""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                if self._open is None or self._open["type"] != "reasoning":
                    out += self._add(_reasoning(""))
                self._open["summary"][0]["text"] += delta["reasoning_content"]
            text = delta.get("content") or delta.get("refusal")
            if text:
                if self._open is None or self._open["type"] != "message":
                    out += self._add(_message("", "in_progress"))
                part = self._open["content"][0]
                part["text"] += text
                out += self._event("response.output_text.delta", item_id=self._open["id"],
                                   output_index=len(self.output) - 1, content_index=0,
                                   delta=text, logprobs=[])
            for call in delta.get("tool_calls") or ():
                out += self._tool_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return out

    def _tool_call(self, call: dict[str, Any]) -> bytes:
        out = b""
        item = self._calls.get(call.get("index", 0))
        if item is None:
            item = _function_call(call, "in_progress")
            item["arguments"] = ""
            self._calls[call.get("index", 0)] = item
            out += self._add(item)
        args = (call.get("function") or {}).get("arguments")
        if args:
            item["arguments"] += args
            out += self._event("response.function_call_arguments.delta", item_id=item["id"],
                               output_index=self.output.index(item), delta=args)
        return out

    def finish(self, usage: dict[str, Any] | None) -> bytes:
        """Close the open item; ``response.completed`` (or ``.incomplete``) with the usage."""
        out = self._close()
        self.response = self._snapshot("completed", usage)
        kind = "response.completed" if self.response["status"] == "completed" \
            else "response.incomplete"
        return out + self._event(kind, response=self.response)

    def fail(self, exc: GatewayError, usage: dict[str, Any] | None) -> bytes:
        """A failure mid-stream: ``response.failed`` with what was produced and its usage."""
        out = self._close()
        error = {"code": exc.code or ("rate_limit_exceeded" if exc.status == 429
                                      else "server_error"), "message": exc.message}
        self.response = self._snapshot("failed", usage, error)
        return out + self._event("response.failed", response=self.response)
