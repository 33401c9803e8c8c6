"""The one event type a provider stream yields, and what the API layer asks of it.

Every provider stream yields :class:`StreamEvent` s. A chat or text completion stream
(``chat_stream`` / ``completion_stream``) yields a :class:`Chunk` (one OpenAI chunk, a dict) or a
:class:`WireBlock` (the bytes of several content chunks relayed as upstream sent them,
relabelled); a pass-through stream (``messages_stream``, ``responses_stream``) yields
:class:`NamedEvent` s, its protocol's events as upstream sent them. The API layer never asks
which: it calls

* ``sse_bytes()``: the event as an SSE body carries it;
* ``chunks()``: the OpenAI chunk dicts it carries, for endpoints that translate them (none for
  a pass-through event);
* ``produced``: how many pieces of output it carries (billed if upstream reports no usage);
* ``final_usage``: the whole stream's :class:`~spaceai.types.Usage` on the event that closes
  it (the ``choices: []`` chunk, ``message_stop``, ``response.completed``), else None.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from spaceai.types import Usage


def chunk_has_output(chunk: dict[str, Any]) -> bool:
    """Whether a chunk dict carries generated content."""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta is None:  # legacy text completion chunk
            if choice.get("text"):
                return True
        elif delta.get("content") or delta.get("tool_calls") or delta.get("refusal"):
            return True
    return False


class StreamEvent(Protocol):
    """What every item of a provider's completion stream offers."""

    produced: int

    def sse_bytes(self) -> bytes: ...

    def chunks(self) -> list[dict[str, Any]] | tuple[dict[str, Any], ...]: ...

    @property
    def final_usage(self) -> Usage | None: ...


def named_sse(name: str, data: dict[str, Any]) -> bytes:
    """One SSE event with an ``event:`` line (Anthropic's and the Responses API's streams)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Chunk(dict):
    """One OpenAI chunk (``chat.completion.chunk`` or ``text_completion``): a dict, with the
    stream event methods."""

    __slots__ = ("_final",)  # final_usage, once read

    def sse_bytes(self) -> bytes:
        return b"data: " + orjson.dumps(self) + b"\n\n"

    def closing(self, usage: Usage) -> Chunk:
        """This chunk as the one that closes the stream, carrying ``usage``."""
        self["usage"] = usage.to_openai()
        self._final = usage
        return self

    def chunks(self) -> tuple[dict[str, Any]]:
        return (self,)

    @property
    def produced(self) -> int:
        return 1 if chunk_has_output(self) else 0

    @property
    def final_usage(self) -> Usage | None:
        try:
            return self._final
        except AttributeError:
            usage = self.get("usage")
            final = self._final = (Usage.from_openai(usage) if usage and not self.get("choices")
                                   else None)
            return final


class WireBlock:
    """The SSE bytes of consecutive content chunks, ready to relay to an OpenAI client."""

    __slots__ = ("raw", "produced")

    final_usage = None  # a block never holds the closing usage chunk

    def __init__(self, raw: bytes, produced: int) -> None:
        self.raw = raw
        self.produced = produced  # chunks that carried output (text, tool calls, refusal)

    def sse_bytes(self) -> bytes:
        return self.raw

    def chunks(self) -> list[dict[str, Any]]:
        """The chunks as dicts, for consumers that translate them."""
        out = []
        for event in self.raw.split(b"\n\n"):
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    out.append(Chunk(orjson.loads(line[5:])))
        return out


class NamedEvent:
    """One event of a pass-through stream as upstream sent it: its ``name`` and ``data``
    (which the API layer speaking the same protocol may relabel), with what the provider
    counted: ``produced`` and, on the closing event, ``final_usage``."""

    __slots__ = ("name", "data", "produced", "final_usage")

    def __init__(self, name: str, data: dict[str, Any], produced: int = 0,
                 final_usage: Usage | None = None) -> None:
        self.name = name
        self.data = data
        self.produced = produced
        self.final_usage = final_usage

    def sse_bytes(self) -> bytes:
        return named_sse(self.name, self.data)

    def chunks(self) -> tuple[()]:
        return ()
