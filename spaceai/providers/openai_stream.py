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


class WireChunk:
    """A relayed chunk: its SSE event bytes, parsed into a dict only if something reads it.

    ``raw`` is the event to write to an OpenAI client as is (None when it could not be
    relabelled with the catalog's model id: then ``data()`` is serialised instead); ``output``
    says whether it carries generated content (text, tool calls, a refusal).
    """

    __slots__ = ("payload", "raw", "output", "batch_end", "_model", "_data")

    def __init__(self, payload: bytes, raw: bytes | None, output: bool, model_id: str) -> None:
        self.payload = payload
        self.raw = raw
        self.output = output
        self.batch_end = False
        self._model = model_id
        self._data: dict[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = orjson.loads(self.payload)
            self._data["model"] = self._model
        return self._data

    def get(self, key: str, default: Any = None) -> Any:
        return self.data().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data()


def _has_output(payload: bytes) -> bool:
    """Whether a compact chunk carries generated content, read off its bytes.

    The markers are keys with their unescaped quotes, which cannot occur inside a JSON string.
    """
    if b'"tool_calls":[' in payload or b'"refusal":"' in payload:
        return True
    at = payload.find(b'"content":"')
    if at >= 0 and payload[at + 11:at + 12] != b'"':
        return True
    at = payload.find(b'"text":"')  # legacy completions
    return at >= 0 and payload[at + 8:at + 9] != b'"'


def chunk_has_output(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        if delta is None:
            if choice.get("text"):
                return True
        elif delta.get("content") or delta.get("tool_calls") or delta.get("refusal"):
            return True
    return False


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
        if out and isinstance(out[-1], WireChunk):
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
        compact = b'": ' not in payload
        usage = b'"usage"' in payload and b'"usage":null' not in payload
        if usage or b'"error"' in payload or not compact or self._swap is None:
            return self._parsed(event, payload, compact)
        if b'"choices":[{' in payload:
            self.produced += 1
        return WireChunk(payload, self._raw(event), _has_output(payload), self.model.id)

    def _parsed(self, event: bytes, payload: bytes, compact: bool) -> WireChunk | None:
        """The slow path: errors, usage, spaced JSON, and the first chunk (to learn the
        upstream's model name for relabelling)."""
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
            compact = False  # changed: must be re-serialised
        if chunk.get("choices"):
            self.produced += 1
        upstream = chunk.get("model")
        if self._swap is None and isinstance(upstream, str):
            self._swap = (f'"model":"{upstream}"'.encode(), f'"model":"{self.model.id}"'.encode())
        wire = WireChunk(payload, self._raw(event) if compact else None,
                         chunk_has_output(chunk), self.model.id)
        chunk["model"] = self.model.id
        wire._data = chunk
        return wire

    def _raw(self, event: bytes) -> bytes | None:
        """The event's bytes with the catalog's model id, or None when they can't be reused."""
        old, new = self._swap or (b"", b"")
        if old == new:
            return event + b"\n\n"
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
