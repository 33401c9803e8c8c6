"""A raw HTTP/1.1 upstream on loopback that sends scripted bytes on a schedule.

Where :mod:`fakes.upstream` speaks the providers' formats, this one misbehaves at the byte
level, as a hostile or broken upstream does: a body trickled one byte at a time, a stream
that falls silent, or one that only sends keep-alives. Every request pops one script (the
last one repeats): a list of ``(delay_s, bytes)`` steps, sent in order, each after its delay;
a script that ends without a complete answer leaves the connection open until the client
goes. It counts the connections it accepted and those still open.

Usage (sync tests; the server runs in a thread with its own loop)::

    up = ScriptedUpstream().start_in_thread()
    up.script(trickle(json_body, every=0.5))
    ... up.base_url ...
    up.stop_thread()
"""

from __future__ import annotations

import asyncio
import json
import threading

Step = tuple[float, bytes]


def chunked(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def json_head(length: int) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n" % length)


SSE_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n")


def trickle(body: bytes, every: float) -> list[Step]:
    """A JSON answer whose headers come at once and whose body comes a byte per ``every`` s."""
    return [(0, json_head(len(body)))] + [(every, body[i:i + 1]) for i in range(len(body))]


def openai_completion(text: str = "Hello there, this is a long answer") -> bytes:
    return json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }, separators=(",", ":")).encode()


def anthropic_message(text: str = "Hello there, this is a long answer") -> bytes:
    return json.dumps({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 7},
    }, separators=(",", ":")).encode()


def openai_events(*texts: str) -> list[bytes]:
    """SSE events of an OpenAI chat stream's start: the role chunk, then one chunk a text."""
    def event(delta: dict) -> bytes:
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                 "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
    return [event({"role": "assistant", "content": ""})] + [event({"content": t})
                                                               for t in texts]


def anthropic_events(*texts: str) -> list[bytes]:
    """SSE events of an Anthropic stream's start: message_start, a text block, its deltas."""
    def event(name: str, obj: dict) -> bytes:
        return b"event: %s\ndata: %s\n\n" % (name.encode(), json.dumps(obj).encode())
    out = [event("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [],
        "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        event("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}})]
    out += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": t}})
            for t in texts]
    return out


ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
SSE_COMMENT = b": ping\n\n"


def stream(events: list[bytes], then: bytes | None = None, every: float = 0.2,
           times: int = 200) -> list[Step]:
    """An SSE stream: ``events`` at once, then ``then`` (a keep-alive) every ``every`` s, or
    silence when ``then`` is None; never the end."""
    steps: list[Step] = [(0, SSE_HEAD + b"".join(chunked(e) for e in events))]
    if then is not None:
        steps += [(every, chunked(then))] * times
    return steps


def delayed_json(body: bytes, delay: float) -> list[Step]:
    """A complete JSON answer after ``delay`` seconds (keep-alive)."""
    return [(delay, json_head(len(body)) + body)]


class ScriptedUpstream:
    """The server. ``accepted``: connections ever accepted; ``open``: open now."""

    api_key = "sk-scripted"

    def __init__(self) -> None:
        self._scripts: list[list[Step]] = [delayed_json(openai_completion(), 0)]
        self.accepted = 0
        self.open = 0
        self.requests = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._handlers: set[asyncio.Task] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *scripts: list[Step]) -> ScriptedUpstream:
        """The answers to the next requests, in order (the last one repeats)."""
        self._scripts = list(scripts)
        return self

    def _next(self) -> list[Step]:
        return self._scripts.pop(0) if len(self._scripts) > 1 else self._scripts[0]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self._handlers.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                for delay, data in self._next():
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(data)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self.open -= 1
            self._handlers.discard(asyncio.current_task())
            writer.close()

    async def start(self) -> ScriptedUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.sleep(0)

    def start_in_thread(self) -> ScriptedUpstream:
        started = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(10)
        return self

    def stop_thread(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
