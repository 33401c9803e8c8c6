"""Decoding an OpenAI-compatible SSE stream without paying for every chunk twice.

Most of a stream is content chunks that an OpenAI client should receive exactly as upstream
sent them, only relabelled with the catalog's model id. The decoder hands those over as
:class:`WireBlock` s: the bytes of every complete event of one network read, relabelled in one
pass, with the count of chunks that carried output. Only the events that matter to the gateway
are parsed: the first one (to learn the upstream's model name), the usage chunk, an error
event, ``[DONE]``, and anything not in compact JSON. Consumers that need chunk dicts (the
Anthropic-format encoder) call :meth:`WireBlock.chunks`. Both are stream events
(:mod:`spaceai.providers.events`).
"""

from __future__ import annotations

import time

import orjson

from spaceai.catalog import ModelConfig
from spaceai.providers.events import Chunk, WireBlock, chunk_has_output
from spaceai.providers.openai_errors import openai_error
from spaceai.types import UpstreamError, Usage

__all__ = ["Chunk", "OpenAIStreamDecoder", "WireBlock", "chunk_has_output"]

# events at or after one of these are parsed one by one
_MARKERS = (b'"usage":{', b'"error"', b"[DONE]")


class OpenAIStreamDecoder:
    """Feed it network reads; it returns blocks and chunks, and keeps the usage."""

    __slots__ = ("model", "buffer", "done", "usage", "produced", "usage_chunk", "failed",
                 "_swap")

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self.buffer = b""
        self.done = False
        self.usage: Usage | None = None
        self.produced = 0  # chunks with output: what is billed if upstream reports no usage
        self.usage_chunk: Chunk | None = None
        self.failed: UpstreamError | None = None  # raise after relaying what came before it
        self._swap: tuple[bytes, bytes] | None = None

    def feed(self, data: bytes) -> list[WireBlock | Chunk]:
        """Everything complete in the stream so far: blocks of content, or parsed chunks."""
        data = self.buffer + data if self.buffer else data
        if b"\r" in data:
            if data.endswith(b"\r"):
                self.buffer = data
                return []
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self.buffer = data
            return []
        complete, self.buffer = data[:end + 2], data[end + 2:]
        out: list[WireBlock | Chunk] = []
        while self._swap is None and complete:  # parse events until one names the model
            first = complete.find(b"\n\n") + 2  # (Azure opens with one whose model is "")
            self._events(complete[:first], out)
            complete = complete[first:]
        if complete and not self.done and self.failed is None:
            cut = len(complete) if b'": ' not in complete else 0  # spaced JSON: parse it all
            for marker in _MARKERS:
                at = complete.find(marker, 0, cut)
                if at >= 0:  # the block ends with the event before the marker's
                    before = complete.rfind(b"\n\n", 0, at)
                    cut = before + 2 if before >= 0 else 0
            if cut:
                out.append(self._block(complete[:cut]))
            self._events(complete[cut:], out)
        return out

    def _block(self, raw: bytes) -> WireBlock:
        produced = raw.count(b'"choices":[{') - raw.count(b'"content":""') - raw.count(
            b'"delta":{}')
        produced = max(produced, 0)
        self.produced += produced
        old, new = self._swap or (b"", b"")
        return WireBlock(raw.replace(old, new) if old != new else raw, produced)

    def _events(self, raw: bytes, out: list) -> None:
        for event in raw.split(b"\n\n"):
            if not event or self.done or self.failed is not None:
                continue
            try:
                chunk = self._event(event)
            except UpstreamError as exc:
                if not out:
                    raise
                self.failed = exc
                return
            if chunk is not None:
                out.append(chunk)

    def _event(self, event: bytes) -> Chunk | None:
        lines = [ln[5:].lstrip() for ln in event.split(b"\n") if ln.startswith(b"data:")]
        if not lines:
            return None  # comments, event names, retry hints
        payload = b"\n".join(lines).strip()
        if payload == b"[DONE]":
            self.done = True
            return None
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise self.cut("invalid JSON in stream") from None
        if not isinstance(chunk, dict):
            raise self.cut("unexpected stream event")
        chunk = Chunk(chunk)
        if "error" in chunk:
            raise openai_error(self.model, chunk, usage=self.usage_so_far())
        upstream = chunk.get("model")
        if self._swap is None and isinstance(upstream, str) and upstream:
            self._swap = (f'"model":"{upstream}"'.encode(), f'"model":"{self.model.id}"'.encode())
        chunk["model"] = self.model.id
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
            if not chunk.get("choices"):
                self.usage_chunk = chunk
                return None
            chunk["usage"] = None
        if chunk_has_output(chunk):
            self.produced += 1
        return chunk

    def usage_so_far(self) -> Usage:
        """What upstream reported, else the chunks with output counted so far."""
        return self.usage or Usage(completion_tokens=self.produced)

    def cut(self, why: str | None = None) -> UpstreamError:
        """The error for a stream that ended before ``[DONE]``, with the usage so far."""
        detail = f" ({why})" if why else ""
        usage = self.usage_so_far()
        return UpstreamError(502, f"model {self.model.id}: upstream stream ended before "
                             f"completion{detail}", usage=usage)

    def final(self) -> Chunk:
        """The closing chunk: ``choices: []`` and the usage (upstream's, else counted)."""
        usage = self.usage or Usage(completion_tokens=self.produced)
        final = self.usage_chunk or Chunk(id="", object="chat.completion.chunk",
                                          created=int(time.time()), choices=[])
        final["model"] = self.model.id
        return final.closing(usage)
