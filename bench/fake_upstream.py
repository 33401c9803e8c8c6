#!/usr/bin/env python3
"""Fast standalone fake OpenAI upstream for benchmarks.

A raw asyncio Protocol HTTP/1.1 keep-alive server (uvloop when installed) whose own cost
stays small beside a gateway's: every response is precomputed bytes.

    python bench/fake_upstream.py --port 9100 [--chunks 100] [--model gpt-4o-mini]
                                  [--ttft-ms 0] [--chunk-delay-ms 0]

Prints "ready" (flushed) once listening.

* ``POST /v1/chat/completions``: a fixed ``chat.completion`` JSON body (Content-Length),
  or — when the request body contains ``"stream": true`` / ``"stream":true`` — an SSE
  stream in chunked transfer encoding: a role chunk, ``--chunks`` content chunks (one
  word each), a finish chunk, a usage chunk (``choices: []``), ``data: [DONE]``. Each SSE
  event is one HTTP chunk. Usage: prompt_tokens 10, completion_tokens = --chunks (the
  non-stream body reports the same text and usage).
* ``POST /v1/messages``: the same answer in Anthropic's Messages format: a ``message`` JSON
  body, or (``"stream": true``) its SSE events, ``message_start`` to ``message_stop``.
* ``GET /v1/models``: a one-model list. Anything else: 404 in OpenAI's error shape.
* No authentication check. Request bodies may use Content-Length or chunked encoding;
  pipelined requests are answered in order; ``Connection: close`` is honoured.
* ``--ttft-ms`` delays every response's first byte; ``--chunk-delay-ms`` spaces the
  stream's content chunks (both 0 by default: everything is written in one call).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time

SYSTEM_FINGERPRINT = "fp_bench0001"
PROMPT_TOKENS = 10


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Responses:
    """All response bytes, precomputed."""

    def __init__(self, model: str, chunks: int) -> None:
        created = int(time.time())
        words = ["tok" if i == 0 else " tok" for i in range(chunks)]
        text = "".join(words)
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": chunks,
                 "total_tokens": PROMPT_TOKENS + chunks,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0,
                                               "rejected_prediction_tokens": 0}}
        body = _dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                 "refusal": None, "annotations": []},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage, "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT})
        self.json_body = body
        self.nonstream = self._fixed(b"200 OK", b"application/json", body)

        def sse(delta, finish=None) -> bytes:
            return b"data: " + _dumps({
                "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}) + b"\n\n"

        self.stream_head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8"
                            b"\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
        self.stream_first = _http_chunk(sse({"role": "assistant", "content": "", "refusal": None}))
        self.stream_content = [_http_chunk(sse({"content": w})) for w in words]
        usage_ev = b"data: " + _dumps({
            "id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": SYSTEM_FINGERPRINT, "choices": [],
            "usage": usage}) + b"\n\n"
        self.stream_tail = (_http_chunk(sse({}, "stop")) + _http_chunk(usage_ev)
                            + _http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        self.stream = (self.stream_head + self.stream_first + b"".join(self.stream_content)
                       + self.stream_tail)
        self.messages = self._fixed(b"200 OK", b"application/json", _dumps({
            "id": "msg_bench", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": chunks}}))

        def ev(name: str, obj: dict) -> bytes:
            return _http_chunk(b"event: " + name.encode() + b"\ndata: " + _dumps(obj) + b"\n\n")

        self.messages_stream = (self.stream_head + ev("message_start", {
            "type": "message_start", "message": {
                "id": "msg_bench", "type": "message", "role": "assistant", "model": model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}}})
            + ev("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}})
            + ev("ping", {"type": "ping"})
            + b"".join(ev("content_block_delta", {
                "type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": w}}) for w in words)
            + ev("content_block_stop", {"type": "content_block_stop", "index": 0})
            + ev("message_delta", {"type": "message_delta",
                                   "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": chunks}})
            + ev("message_stop", {"type": "message_stop"}) + b"0\r\n\r\n")
        self.models = self._fixed(b"200 OK", b"application/json", _dumps({
            "object": "list", "data": [{"id": model, "object": "model", "created": created,
                                        "owned_by": "openai"}]}))
        self.not_found = self._fixed(b"404 Not Found", b"application/json", _dumps({
            "error": {"message": "Not found", "type": "invalid_request_error", "param": None,
                      "code": None}}))
        self.bad_request = self._fixed(b"400 Bad Request", b"text/plain", b"bad request",
                                       close=True)

    @staticmethod
    def _fixed(status: bytes, ctype: bytes, body: bytes, close: bool = False) -> bytes:
        return (b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype
                + b"\r\ncontent-length: " + str(len(body)).encode()
                + (b"\r\nconnection: close" if close else b"") + b"\r\n\r\n" + body)


class UpstreamProtocol(asyncio.Protocol):
    __slots__ = ("r", "transport", "buf", "delayed", "queue", "task", "closed")

    def __init__(self, responses: Responses, ttft: float, chunk_delay: float) -> None:
        self.r = responses
        self.transport = None
        self.buf = b""
        self.delayed = (ttft, chunk_delay) if (ttft or chunk_delay) else None
        self.queue: asyncio.Queue | None = None
        self.task = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while buf:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > 65536:
                    self._fail()
                    return
                break
            head = buf[:end]
            lower = head.lower()
            pos = end + 4
            cl = lower.find(b"\r\ncontent-length:")
            if cl >= 0:
                eol = lower.find(b"\r\n", cl + 17)
                try:
                    n = int(lower[cl + 17: eol if eol >= 0 else len(lower)])
                except ValueError:
                    self._fail()
                    return
                if len(buf) < pos + n:
                    break
                body = buf[pos: pos + n]
                pos += n
            elif b"\r\ntransfer-encoding: chunked" in lower or \
                    b"\r\ntransfer-encoding:chunked" in lower:
                parsed = self._dechunk(buf, pos)
                if parsed is None:
                    break
                if parsed is False:
                    self._fail()
                    return
                body, pos = parsed
            else:
                body = b""
            close = b"\r\nconnection: close" in lower
            self._respond(head, body, close)
            buf = buf[pos:]
            if close:
                buf = b""
                break
        self.buf = buf

    @staticmethod
    def _dechunk(buf: bytes, pos: int):
        """(body, next_pos) if the chunked body is complete, None if more data is needed,
        False on malformed input."""
        parts = []
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            try:
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
            except ValueError:
                return False
            start = eol + 2
            if size == 0:
                # skip trailers up to the empty line
                end = buf.find(b"\r\n\r\n", eol)
                if buf[start:start + 2] == b"\r\n":
                    return b"".join(parts), start + 2
                if end < 0:
                    return None
                return b"".join(parts), end + 4
            if len(buf) < start + size + 2:
                return None
            parts.append(buf[start:start + size])
            pos = start + size + 2

    def _fail(self) -> None:
        self.transport.write(self.r.bad_request)
        self.transport.close()
        self.buf = b""

    def _pick(self, head: bytes, body: bytes) -> tuple[bytes, bool]:
        sp = head.find(b" ")
        sp2 = head.find(b" ", sp + 1)
        method, path = head[:sp], head[sp + 1:sp2]
        q = path.find(b"?")
        if q >= 0:
            path = path[:q]
        if method == b"POST" and path == b"/v1/chat/completions":
            if b'"stream":true' in body or b'"stream": true' in body:
                return self.r.stream, True
            return self.r.nonstream, False
        if method == b"POST" and path == b"/v1/messages":
            if b'"stream":true' in body or b'"stream": true' in body:
                return self.r.messages_stream, True
            return self.r.messages, False
        if method == b"GET" and path == b"/v1/models":
            return self.r.models, False
        return self.r.not_found, False

    def _respond(self, head: bytes, body: bytes, close: bool) -> None:
        data, is_stream = self._pick(head, body)
        if self.delayed is None and self.queue is None:
            self.transport.write(data)
            if close:
                self.transport.close()
            return
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.task = asyncio.get_running_loop().create_task(self._writer())
        self.queue.put_nowait((data, is_stream, close))

    async def _writer(self) -> None:
        ttft, chunk_delay = self.delayed or (0.0, 0.0)
        r = self.r
        while True:
            data, is_stream, close = await self.queue.get()
            if ttft:
                await asyncio.sleep(ttft)
            if self.closed:
                return
            if is_stream and chunk_delay:
                self.transport.write(r.stream_head + r.stream_first)
                for c in r.stream_content:
                    await asyncio.sleep(chunk_delay)
                    if self.closed:
                        return
                    self.transport.write(c)
                self.transport.write(r.stream_tail)
            else:
                self.transport.write(data)
            if close:
                self.transport.close()
                return


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--chunks", type=int, default=100)
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--ttft-ms", type=float, default=0.0)
    ap.add_argument("--chunk-delay-ms", type=float, default=0.0)
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args(argv)

    if not args.no_uvloop:
        try:
            import uvloop  # type: ignore

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass

    responses = Responses(args.model, args.chunks)
    ttft, chunk_delay = args.ttft_ms / 1000.0, args.chunk_delay_ms / 1000.0

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        server = await loop.create_server(
            lambda: UpstreamProtocol(responses, ttft, chunk_delay), sock=sock, backlog=4096)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
