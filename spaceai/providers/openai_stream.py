"""Decoding an OpenAI-compatible SSE stream into chunks, without re-encoding what passes through.

Every chunk the decoder yields is a :class:`WireChunk`: the parsed dict (for metering and for
the translations) plus the exact SSE event bytes to relay, already carrying the catalog's model
id. A relay that writes ``raw`` instead of re-serialising pays one parse per chunk, not a parse
and a dump; ``batch_end`` marks the last chunk of one network read, so a relay can hand all the
chunks of a read to the client in a single write.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from spaceai.catalog import ModelConfig
from spaceai.types import UpstreamError, Usage


class WireChunk(dict):
    """A chunk dict that remembers its SSE event bytes (``raw``), valid while unmodified."""

    __slots__ = ("raw", "batch_end")

    def __init__(self, data: dict[str, Any], raw: bytes | None, batch_end: bool = False) -> None:
        super().__init__(data)
        self.raw = raw
        self.batch_end = batch_end


class OpenAIStreamDecoder:
    """Feed it network reads; it yields chunks, keeps the usage, and knows when it is done."""

    __slots__ = ("model", "buffer", "done", "usage", "produced", "usage_chunk", "failed",
                 "_swap")

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self.buffer = b""
        self.done = False
        self.usage: Usage | None = None
        self.produced = 0  # chunks with choices: what is billed if upstream reports no usage
        self.usage_chunk: dict[str, Any] | None = None
        self.failed: UpstreamError | None = None  # raise after relaying what came before it
        self._swap: tuple[bytes, bytes] | None = None

    def feed(self, data: bytes) -> list[WireChunk]:
        if b"\r" in data or self.buffer.endswith(b"\r"):
            data = (self.buffer + data).replace(b"\r\n", b"\n")
            self.buffer = b""
        events = (self.buffer + data).split(b"\n\n")
        self.buffer = events.pop()
        out: list[WireChunk] = []
        for event in events:
            try:
                chunk = self._event(event)
            except UpstreamError as exc:
                if not out:
                    raise
                self.failed = exc
                break
            if chunk is not None:
                out.append(chunk)
            if self.done:
                break
        if out:
            out[-1].batch_end = True
        return out

    def _event(self, event: bytes) -> WireChunk | None:
        if not event.startswith(b"data:"):
            lines = [ln for ln in event.split(b"\n") if ln.startswith(b"data:")]
            if not lines:
                return None  # comments, event names, retry hints
            event = b"data:" + b"\n".join(ln[5:].lstrip() for ln in lines)
        elif b"\n" in event:
            event = b"data:" + b"\n".join(
                ln[5:].lstrip() for ln in event.split(b"\n") if ln.startswith(b"data:"))
        payload = event[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return None
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise self.cut("invalid JSON in stream") from None
        if not isinstance(chunk, dict):
            raise self.cut("unexpected stream event")
        if "error" in chunk:
            err = chunk["error"] or {}
            message = err.get("message", "unknown error") if isinstance(err, dict) else str(err)
            raise UpstreamError(502, f"model {self.model.id}: upstream error mid-stream: "
                                f"{message}", usage=self.usage or Usage())
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
            if not chunk.get("choices"):
                self.usage_chunk = chunk
                return None
            chunk["usage"] = None
            return WireChunk(self._relabel(chunk), None)
        if chunk.get("choices"):
            self.produced += 1
        raw = self._raw(event, chunk)
        return WireChunk(self._relabel(chunk), raw)

    def _relabel(self, chunk: dict[str, Any]) -> dict[str, Any]:
        chunk["model"] = self.model.id
        return chunk

    def _raw(self, event: bytes, chunk: dict[str, Any]) -> bytes | None:
        """The event's bytes with the catalog's model id, or None when they can't be reused."""
        upstream = chunk.get("model")
        if upstream == self.model.id:
            return event + b"\n\n"
        if not isinstance(upstream, str):
            return None
        if self._swap is None or self._swap[0] != f'"model":"{upstream}"'.encode():
            self._swap = (f'"model":"{upstream}"'.encode(), f'"model":"{self.model.id}"'.encode())
        old, new = self._swap
        if event.count(old) != 1:
            return None
        return event.replace(old, new) + b"\n\n"

    def cut(self, why: str | None = None) -> UpstreamError:
        """The error for a stream that ended before ``[DONE]``, with the usage so far."""
        detail = f" ({why})" if why else ""
        return UpstreamError(502, f"model {self.model.id}: upstream stream ended before "
                             f"completion{detail}", usage=self.usage or Usage())

    def final(self) -> dict[str, Any]:
        """The closing chunk: ``choices: []`` and the usage (upstream's, else counted)."""
        usage = self.usage or Usage(completion_tokens=self.produced)
        final = self.usage_chunk or {"id": "", "object": "chat.completion.chunk",
                                     "created": int(time.time()), "choices": []}
        final["model"] = self.model.id
        final["usage"] = usage.to_openai()
        return final
