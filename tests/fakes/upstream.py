"""Fake OpenAI and Anthropic upstreams on loopback, speaking the real wire formats.

The formats follow OpenAI's OpenAPI description and the streams recorded from the real APIs
(``tests/reference``): OpenAI streams are ``data: {json}\\n\\n`` chunks ending in
``data: [DONE]\\n\\n``; Anthropic streams are ``event: NAME\\ndata: {json}\\n\\n`` events from
``message_start`` to ``message_stop``. JSON is compact (``,``/``:`` separators, like the
real APIs), except Anthropic's ``{"type": "ping"}``, which is sent byte for byte as recorded.

Usage
-----
Async (pytest-asyncio)::

    async with FakeOpenAI() as fake:          # or: fake = FakeOpenAI(); await fake.start()
        client = AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key)
        ...
        assert fake.requests[-1].body["model"] == "gpt-4o-mini"

Sync code (the server runs in a background thread with its own event loop)::

    with FakeAnthropic() as fake:             # or: fake.start_in_thread() / fake.stop_thread()
        client = Anthropic(base_url=fake.root_url, api_key=fake.api_key)

``base_url`` is ``http://127.0.0.1:PORT/v1`` (what the ``openai`` SDK wants);
``root_url`` is ``http://127.0.0.1:PORT`` (what the ``anthropic`` SDK wants).

Default (unscripted) behaviour and the usage formula
---------------------------------------------------
* Reply text: ``FakeOpenAI.default_text`` = ``"Hello from fake-openai"``,
  ``FakeAnthropic.default_text`` = ``"Hello from fake-anthropic"`` (constructor arg
  ``default_text``). Text is split into chunks by :func:`chunk_text`: one chunk per word,
  each word carrying its leading whitespace (``["Hello", " from", " fake-openai"]``).
* Tool-call arguments (a JSON string) are split into fragments of 8 characters
  (:func:`split_arguments`).
* ``completion_tokens`` / ``output_tokens`` = number of text chunks + number of argument
  fragments of every tool call emitted (so the default reply costs 3).
* ``prompt_tokens`` / ``input_tokens`` = sum over messages of (:func:`count_words` of the
  message content + 3). For Anthropic, a non-empty ``system`` counts as one more message
  (its words + 3). :func:`count_words` counts whitespace-separated words of a string, or of
  the ``text`` of every content part (recursing into ``tool_result`` contents); other parts
  (images, tool_use, ...) count 0. Tools definitions are not counted.
  Legacy ``/v1/completions``: words of the prompt (list items summed; a token-id list counts
  its length), no +3. Embeddings: words of each input (token-id lists: their length).
* ``max_tokens`` (OpenAI: ``max_completion_tokens`` or ``max_tokens``): when the reply needs
  more units (chunks + fragments) than allowed, the text is cut to ``max_tokens`` chunks,
  tool calls are dropped, and the finish reason is ``length`` / ``max_tokens``.
* ``stop`` (OpenAI, str or list) / ``stop_sequences`` (Anthropic): if one occurs in the text,
  the text is cut just before the earliest occurrence, tool calls are dropped, and the
  finish reason is ``stop`` / ``stop_sequence`` (Anthropic also reports ``stop_sequence``).
  Stop is applied before max_tokens.
* Embeddings: deterministic unit vectors derived from sha256(model + input); default size
  ``embedding_dims`` (16); ``dimensions`` gives a prefix of the same raw sequence,
  renormalised (like the real API's truncation). ``encoding_format: "base64"`` answers with
  little-endian float32 bytes; the float values are float32-exact so both encodings agree.

Scripting
---------
``fake.script(*actions)`` queues actions; each request to a scripted endpoint (everything
except ``GET /v1/models``) pops one; an empty queue means default behaviour. Actions:
:class:`Reply`, :class:`Error`, :class:`Hang`, :class:`CutStream`, :class:`SlowStream`,
:class:`StreamError`. Plain dicts ``{"action": "reply", ...}`` are accepted too.

Wire behaviour
--------------
``fake.wire`` (a :class:`Wire`, also a constructor argument) makes the fake do what real servers
and networks do to the bytes: gzip every answer, split every SSE event across two reads (cut
inside its JSON), send ``: keep-alive`` comment events and CRLF line ends, close idle
keep-alive connections after ``idle_close_s``, open OpenAI streams Azure-style (a first
``prompt_filter_results`` chunk with an empty ``model`` and no choices), and report
``extra_output_tokens`` more output tokens than the chunks it sent (so a gateway that bills
counted chunks instead of the upstream's usage is caught).

Every request (also rejected ones) is recorded in ``fake.requests`` as a
:class:`RecordedRequest` (method, path, query, lower-cased headers, parsed JSON ``body``,
``raw`` bytes). ``fake.cancelled`` counts responses whose client went away before the
response was finished (``fake.cancelled_event`` is a ``threading.Event`` set on the first;
``await fake.wait_cancelled()``); ``fake.completed_streams`` counts streams sent to the end.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import math
import re
import socket
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "CutStream",
    "Error",
    "FakeAnthropic",
    "FakeOpenAI",
    "Hang",
    "RecordedRequest",
    "Reply",
    "SlowStream",
    "StreamError",
    "Wire",
    "chunk_text",
    "count_words",
    "split_arguments",
    "unused_port",
]

ARG_FRAGMENT_SIZE = 8
SYSTEM_FINGERPRINT = "fp_fake0001"


# --------------------------------------------------------------------------- helpers


def unused_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on (for connection-refused tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


_WORD_RE = re.compile(r"\s*\S+")


def _total(prompt: Any, completion: Any) -> Any:
    """``total_tokens`` as an upstream would add it up (a scripted non-number stays one)."""
    try:
        return prompt + completion
    except TypeError:
        return f"{prompt}+{completion}"


def chunk_text(text: str) -> list[str]:
    """Split text into word chunks, each with its leading whitespace ("Hello", " from")."""
    chunks = _WORD_RE.findall(text)
    rest = text[sum(len(c) for c in chunks):]
    if rest:  # trailing whitespace (or all-whitespace text)
        if chunks:
            chunks[-1] += rest
        else:
            chunks = [rest]
    return chunks


def split_arguments(arguments: str, size: int = ARG_FRAGMENT_SIZE) -> list[str]:
    return [arguments[i:i + size] for i in range(0, len(arguments), size)]


def count_words(content: Any) -> int:
    """Whitespace-separated words of a message content (string or list of parts)."""
    if content is None:
        return 0
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(count_words(part) for part in content)
    if isinstance(content, dict):
        n = 0
        if isinstance(content.get("text"), str):
            n += len(content["text"].split())
        if content.get("type") == "tool_result":
            n += count_words(content.get("content"))
        return n
    return 0


def _count_prompt(prompt: Any) -> int:
    """Legacy completions / embeddings input: str, [str], [int], [[int]]."""
    if prompt is None:
        return 0
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, int):
        return 1
    if isinstance(prompt, list):
        return sum(_count_prompt(p) for p in prompt)
    return 0


# --------------------------------------------------------------------------- actions


@dataclass
class Reply:
    """A successful answer.

    text: reply text (None = default text, or no text when tool_calls are given).
    chunks: explicit list of text chunks (overrides the word split of ``text``).
    tool_calls: list of ``{"name": str, "arguments": dict | str, "id": optional str}``.
    finish_reason / stop_reason (synonyms): force the provider-native reason
        (OpenAI: stop/length/tool_calls/content_filter; Anthropic: end_turn/max_tokens/
        stop_sequence/tool_use/refusal/pause_turn).
    stop_sequence: Anthropic stop_sequence to report.
    usage: (prompt_tokens, completion_tokens) overriding the formula.
    cache_read_input_tokens / cache_creation_input_tokens: Anthropic usage fields (OpenAI
        reports cache_read_input_tokens as prompt_tokens_details.cached_tokens).
    model: model name to report (default: the request's model).
    headers: extra response headers. delay: seconds to wait before answering.
    """

    text: str | None = None
    tool_calls: list[dict] | None = None
    finish_reason: str | None = None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: tuple[int, int] | None = None
    chunks: list[str] | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    model: str | None = None
    headers: dict[str, str] | None = None
    delay: float = 0.0


@dataclass
class Error:
    """An HTTP error answer. ``body`` (dict → JSON, str/bytes → raw) overrides the
    provider-shaped default built from ``message``/``type``/``code``."""

    status: int = 500
    body: Any = None
    headers: dict[str, str] | None = None
    message: str | None = None
    type: str | None = None
    code: str | None = None


@dataclass
class Hang:
    """Accept the request, send nothing for ``seconds``; then answer with ``then``
    (a Reply, default reply if None) or, if ``close``, abort the connection."""

    seconds: float = 3600.0
    then: Reply | None = None
    close: bool = False


@dataclass
class CutStream:
    """Send headers and ``after_chunks`` content chunks (text deltas / argument fragments;
    the opening role chunk / message_start etc. are always sent), then abort the TCP
    connection without the finish chunk / [DONE] / message_stop. A non-stream request gets
    a Content-Length header and half of the body before the abort."""

    after_chunks: int = 1
    reply: Reply | None = None


@dataclass
class SlowStream:
    """Stream ``chunks`` text chunks ("w0", " w1", ...), sleeping ``delay_per_chunk`` before
    each. If the client goes away meanwhile, ``fake.cancelled`` is incremented. A
    non-stream request waits ``delay_per_chunk * chunks`` then answers with that text."""

    delay_per_chunk: float = 0.1
    chunks: int = 20
    text: str | None = None


@dataclass
class StreamError:
    """Stream ``after_chunks`` content chunks, then an in-stream error event
    (OpenAI: ``data: {"error": {...}}``; Anthropic: ``event: error``), then end the
    response cleanly. A non-stream request gets an HTTP ``status`` error instead."""

    after_chunks: int = 1
    message: str = "The server had an error while processing your request."
    type: str | None = None
    status: int = 500
    reply: Reply | None = None


_ACTIONS = {
    "reply": Reply,
    "error": Error,
    "hang": Hang,
    "cut_stream": CutStream,
    "cutstream": CutStream,
    "slow_stream": SlowStream,
    "slowstream": SlowStream,
    "stream_error": StreamError,
    "streamerror": StreamError,
}


def _as_action(a: Any) -> Any:
    if isinstance(a, dict):
        d = dict(a)
        kind = str(d.pop("action", d.pop("kind", "reply"))).lower()
        if "usage" in d and isinstance(d["usage"], list):
            d["usage"] = tuple(d["usage"])
        return _ACTIONS[kind](**d)
    if isinstance(a, type) and a in (Reply, Error, Hang, CutStream, SlowStream, StreamError):
        return a()
    return a


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None
    raw: bytes

    @property
    def json(self) -> Any:
        return self.body


# --------------------------------------------------------------------------- planning


@dataclass
class _ToolCall:
    id: str
    name: str
    arguments: str  # JSON text
    fragments: list[str]

    @property
    def input(self) -> Any:
        try:
            return json.loads(self.arguments) if self.arguments else {}
        except ValueError:
            return {}


@dataclass
class _Plan:
    chunks: list[str]
    tool_calls: list[_ToolCall]
    finish: str
    stop_sequence: str | None
    prompt_tokens: int
    completion_tokens: int
    cache_read: int
    cache_creation: int
    model: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(self.chunks)


class _Disconnected(Exception):
    pass


@dataclass
class Wire:
    """How a fake puts its answers on the wire (see the module docstring)."""

    gzip: bool = False
    split_events: bool = False
    comments: bool = False
    crlf: bool = False
    azure: bool = False
    extra_output_tokens: int = 0
    idle_close_s: float | None = None

    def event(self, data: bytes) -> list[bytes]:
        """The writes that carry one SSE event."""
        if self.comments:
            data = b": keep-alive\n\n" + data
        if self.crlf:
            data = data.replace(b"\n", b"\r\n")
        if self.split_events and len(data) > 2:
            cut = data.find(b"{") + 3 if b"{" in data else len(data) // 2
            return [data[:cut], data[cut:]]
        return [data]


# --------------------------------------------------------------------------- base server


class _FakeBase:
    provider = ""
    default_text = ""
    # native finish reasons: (natural, stop-hit, length, tools)
    _reasons = ("stop", "stop", "length", "tool_calls")

    def __init__(
        self,
        api_key: str | None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        default_text: str | None = None,
        shutdown_timeout: float = 0.5,
        wire: Wire | None = None,
    ) -> None:
        self.wire = wire or Wire()
        self.api_key = api_key
        self.host = host
        self.port: int | None = port
        if default_text is not None:
            self.default_text = default_text
        self.shutdown_timeout = shutdown_timeout
        self.requests: list[RecordedRequest] = []
        self._script: deque[Any] = deque()
        self.cancelled = 0
        self.cancelled_event = threading.Event()
        self.completed_streams = 0
        self._counter = 0
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- public API
    @property
    def root_url(self) -> str:
        if self.port is None:
            raise RuntimeError("fake upstream not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def script(self, *actions: Any) -> _FakeBase:
        """Queue actions for the next requests (FIFO)."""
        self._script.extend(_as_action(a) for a in actions)
        return self

    @property
    def pending(self) -> int:
        """Scripted actions not consumed yet."""
        return len(self._script)

    def reset(self) -> None:
        self.requests.clear()
        self._script.clear()
        self.cancelled = 0
        self.cancelled_event.clear()
        self.completed_streams = 0

    @property
    def last_request(self) -> RecordedRequest:
        return self.requests[-1]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    async def wait_cancelled(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.cancelled_event.is_set():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def wait_cancelled_sync(self, timeout: float = 5.0) -> bool:
        return self.cancelled_event.wait(timeout)

    async def start(self) -> _FakeBase:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self._add_routes(app.router)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_timeout,
            keepalive_timeout=self.wire.idle_close_s or 75.0,
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port or 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> _FakeBase:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 10.0) -> _FakeBase:
        """Run the server in a daemon thread with its own event loop; return when ready."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # pragma: no cover - startup failure
                errors.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-{self.provider}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("fake upstream did not start in time")
        if errors:
            raise errors[0]
        return self

    def stop_thread(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self.stop(), loop)
        try:
            fut.result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = self._thread = None

    def __enter__(self) -> _FakeBase:
        return self.start_in_thread()

    def __exit__(self, *exc: Any) -> None:
        self.stop_thread()

    # ----------------------------------------------------------------- internals
    def _add_routes(self, router: web.UrlDispatcher) -> None:  # pragma: no cover
        raise NotImplementedError

    def _next_id(self) -> int:
        self._counter += 1
        return self._counter

    def _pop_action(self) -> Any:
        try:
            return self._script.popleft()
        except IndexError:
            return None

    def _note_cancelled(self) -> None:
        self.cancelled += 1
        self.cancelled_event.set()

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
        )
        self.requests.append(rec)
        return rec

    @staticmethod
    def _gone(request: web.Request) -> bool:
        tr = request.transport
        return tr is None or tr.is_closing()

    async def _sleep(self, request: web.Request, seconds: float) -> bool:
        """Sleep, watching for the client to go away. False if it did (noted)."""
        deadline = time.monotonic() + seconds
        while True:
            if self._gone(request):
                self._note_cancelled()
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._stopping is not None and self._stopping.is_set():
                return True
            await asyncio.sleep(min(left, 0.02))

    @staticmethod
    def _abort(request: web.Request) -> None:
        tr = request.transport
        if tr is not None:
            tr.abort()

    async def _write(self, request: web.Request, resp: web.StreamResponse, data: bytes) -> None:
        if self._gone(request):
            raise _Disconnected()
        try:
            await resp.write(data)
        except (ConnectionError, RuntimeError) as e:
            raise _Disconnected() from e

    def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        h = {"content-type": "application/json"}
        h.update(self._std_headers())
        if headers:
            h.update(headers)
        body = _dumps(obj).encode()
        if self.wire.gzip:
            body = gzip.compress(body)
            h["content-encoding"] = "gzip"
        return web.Response(status=status, body=body, headers=h)

    def _std_headers(self) -> dict[str, str]:
        return {}

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return self._error_response(404, f"Not found: {request.method} {request.path}", None)

    def _error_response(self, status: int, message: str | None, type_: str | None,
                        code: str | None = None, param: str | None = None,
                        headers: dict[str, str] | None = None) -> web.Response:
        raise NotImplementedError

    def _scripted_error(self, err: Error) -> web.Response:
        if err.body is not None:
            h = dict(self._std_headers())
            if isinstance(err.body, (dict, list)):
                data = _dumps(err.body).encode()
                h["content-type"] = "application/json"
            else:
                data = err.body.encode() if isinstance(err.body, str) else bytes(err.body)
                h["content-type"] = "text/plain; charset=utf-8"
            h.update(err.headers or {})
            return web.Response(status=err.status, body=data, headers=h)
        return self._error_response(err.status, err.message, err.type, err.code,
                                    headers=err.headers)

    def _plan(self, reply: Reply | None, body: dict, *, stops: Any, max_tokens: Any,
              prompt_tokens: int, tool_prefix: str) -> _Plan:
        reply = reply or Reply()
        natural, stop_hit, length, tools_reason = self._reasons
        if reply.chunks is not None:
            chunks = list(reply.chunks)
        elif reply.text is not None:
            chunks = chunk_text(reply.text)
        elif reply.tool_calls:
            chunks = []
        else:
            chunks = chunk_text(self.default_text)
        n = self._counter
        tool_calls = []
        for i, tc in enumerate(reply.tool_calls or []):
            args = tc.get("arguments", tc.get("input", {}))
            args_s = args if isinstance(args, str) else _dumps(args)
            tool_calls.append(_ToolCall(
                id=tc.get("id") or f"{tool_prefix}{n:04d}{i:02d}",
                name=tc["name"], arguments=args_s, fragments=split_arguments(args_s)))
        finish = tools_reason if tool_calls else natural
        stop_sequence = None

        if isinstance(stops, str):
            stops = [stops]
        if stops:
            text = "".join(chunks)
            best = None
            for s in stops:
                if not s:
                    continue
                idx = text.find(s)
                if idx >= 0 and (best is None or idx < best[0]):
                    best = (idx, s)
            if best is not None:
                idx, stop_sequence = best
                cut, pos = [], 0
                for c in chunks:
                    if pos + len(c) <= idx:
                        cut.append(c)
                    elif pos < idx:
                        cut.append(c[: idx - pos])
                    pos += len(c)
                chunks = cut
                tool_calls = []
                finish = stop_hit

        units = len(chunks) + sum(len(t.fragments) for t in tool_calls)
        if isinstance(max_tokens, int) and max_tokens >= 0 and units > max_tokens:
            chunks = chunks[:max_tokens]
            tool_calls = []
            finish = length
            stop_sequence = None

        forced = reply.finish_reason or reply.stop_reason
        if forced:
            finish = forced
        if reply.stop_sequence is not None:
            stop_sequence = reply.stop_sequence
        completion = len(chunks) + sum(len(t.fragments) for t in tool_calls)
        completion += self.wire.extra_output_tokens
        if reply.usage is not None:
            prompt_tokens, completion = reply.usage
        return _Plan(
            chunks=chunks, tool_calls=tool_calls, finish=finish, stop_sequence=stop_sequence,
            prompt_tokens=prompt_tokens, completion_tokens=completion,
            cache_read=reply.cache_read_input_tokens,
            cache_creation=reply.cache_creation_input_tokens,
            model=reply.model or str(body.get("model") or "unknown"),
            headers=dict(reply.headers or {}),
        )

    async def _run_action(self, request: web.Request, body: dict, stream: bool, handler,
                          ) -> web.StreamResponse:
        """Dispatch on the next scripted action. ``handler(request, body, reply, stream,
        mode)`` builds the actual reply; mode is None or a streaming variant action."""
        action = self._pop_action()
        if isinstance(action, Error):
            return self._scripted_error(action)
        if isinstance(action, Hang):
            if not await self._sleep(request, action.seconds):
                return web.Response(status=499)
            if action.close:
                self._abort(request)
                return web.Response(status=499)
            return await handler(request, body, action.then, stream, None)
        if isinstance(action, Reply):
            if action.delay and not await self._sleep(request, action.delay):
                return web.Response(status=499)
            return await handler(request, body, action, stream, None)
        if isinstance(action, SlowStream):
            n = max(0, action.chunks)
            if action.text is not None:
                reply = Reply(text=action.text)
            else:
                reply = Reply(chunks=[("w" if i == 0 else " w") + str(i) for i in range(n)]
                              if n else [], text="")
            if not stream:
                if not await self._sleep(request, action.delay_per_chunk * n):
                    return web.Response(status=499)
                return await handler(request, body, reply, False, None)
            return await handler(request, body, reply, True, action)
        if isinstance(action, (CutStream, StreamError)):
            if not stream and isinstance(action, StreamError):
                return self._error_response(action.status, action.message, action.type)
            return await handler(request, body, action.reply, stream, action)
        if action is not None:
            raise TypeError(f"unknown scripted action: {action!r}")
        return await handler(request, body, None, stream, None)

    async def _send_events(self, request: web.Request, events: list[tuple[str, bytes]],
                           mode: Any, headers: dict[str, str],
                           error_event: bytes | None = None) -> web.StreamResponse:
        """Write SSE events. kinds: 'frame' (always sent), 'content' (counted), 'post'
        (terminal). CutStream/StreamError trigger at the (N+1)th content or first post."""
        h = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
        h.update(self._std_headers())
        h.update(headers)
        wire = self.wire
        packer = zlib.compressobj(wbits=31) if wire.gzip else None
        if packer is not None:
            h["content-encoding"] = "gzip"
        resp = web.StreamResponse(status=200, headers=h)
        try:
            await resp.prepare(request)
        except (ConnectionError, RuntimeError):
            self._note_cancelled()
            return resp

        async def put(data: bytes) -> None:
            for i, piece in enumerate(wire.event(data)):
                if i:
                    await asyncio.sleep(0.002)  # a separate read on the other side
                if packer is not None:
                    piece = packer.compress(piece) + packer.flush(zlib.Z_SYNC_FLUSH)
                await self._write(request, resp, piece)

        async def end() -> None:
            if packer is not None:
                await self._write(request, resp, packer.flush())
            await resp.write_eof()

        delay = mode.delay_per_chunk if isinstance(mode, SlowStream) else 0.0
        limit = mode.after_chunks if isinstance(mode, (CutStream, StreamError)) else None
        seen = 0
        try:
            for kind, data in events:
                if limit is not None and (kind == "post" or (kind == "content" and seen >= limit)):
                    if isinstance(mode, CutStream):
                        self._abort(request)
                        return resp
                    await put(error_event or self._stream_error_event(mode))
                    await end()
                    return resp
                if kind == "content":
                    seen += 1
                    if delay and not await self._sleep(request, delay):
                        return resp
                await put(data)
            await end()
        except _Disconnected:
            self._note_cancelled()
            return resp
        except asyncio.CancelledError:
            self._note_cancelled()
            raise
        self.completed_streams += 1
        return resp

    def _stream_error_event(self, err: StreamError) -> bytes:  # pragma: no cover
        raise NotImplementedError

    async def _send_cut_body(self, request: web.Request, payload: dict,
                             headers: dict[str, str]) -> web.StreamResponse:
        data = _dumps(payload).encode()
        h = {"content-type": "application/json"}
        h.update(self._std_headers())
        h.update(headers)
        resp = web.StreamResponse(status=200, headers=h)
        resp.content_length = len(data)
        await resp.prepare(request)
        try:
            await self._write(request, resp, data[: len(data) // 2])
        except _Disconnected:
            pass
        self._abort(request)
        return resp


# --------------------------------------------------------------------------- OpenAI


_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
    504: ("server_error", None),
}

_OPENAI_ERROR_MESSAGES = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    404: "The model does not exist or you do not have access to it.",
    429: "Rate limit reached for requests. Please try again in 1s.",
    500: "The server had an error while processing your request. Sorry about that!",
    503: "The engine is currently overloaded, please try again later.",
}


class FakeOpenAI(_FakeBase):
    """Fake OpenAI API: POST /v1/chat/completions, /v1/completions, /v1/embeddings,
    /v1/responses (stateless), GET /v1/models (+ /v1/models/{id}). Checks ``Authorization: Bearer <api_key>``
    (api_key=None disables the check)."""

    provider = "openai"
    default_text = "Hello from fake-openai"
    _reasons = ("stop", "stop", "length", "tool_calls")

    def __init__(
        self,
        api_key: str | None = "sk-fake-openai",
        *,
        models: Iterable[str] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small"),
        embedding_dims: int = 16,
        **kw: Any,
    ) -> None:
        super().__init__(api_key, **kw)
        self.models = list(models)
        self.embedding_dims = embedding_dims

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self._chat)
        router.add_post("/v1/completions", self._completions)
        router.add_post("/v1/embeddings", self._embeddings)
        router.add_post("/v1/responses", self._responses)
        router.add_get("/v1/models", self._models)
        router.add_get("/v1/models/{model}", self._model)

    def _std_headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_fake{self._counter:06d}", "openai-processing-ms": "1"}

    def _error_response(self, status, message, type_, code=None, param=None, headers=None):
        dtype, dcode = _OPENAI_ERROR_TYPES.get(status, ("server_error" if status >= 500
                                                        else "invalid_request_error", None))
        payload = {"error": {
            "message": message or _OPENAI_ERROR_MESSAGES.get(status, f"Error {status}"),
            "type": type_ or dtype,
            "param": param,
            "code": code if code is not None else dcode,
        }}
        return self._json(payload, status=status, headers=headers)

    def _stream_error_event(self, err: StreamError) -> bytes:
        payload = {"error": {"message": err.message, "type": err.type or "server_error",
                             "param": None, "code": None}}
        return b"data: " + _dumps(payload).encode() + b"\n\n"

    async def _preamble(self, request: web.Request, required: tuple[str, ...]):
        """Record, authenticate, parse. Returns (body, None) or (None, error response)."""
        rec = await self._record(request)
        self._next_id()
        if self.api_key is not None:
            auth = request.headers.get("Authorization")
            if not auth:
                return None, self._error_response(
                    401, "You didn't provide an API key. You need to provide your API key in "
                    "an Authorization header using Bearer auth (i.e. Authorization: Bearer "
                    "YOUR_KEY).", "invalid_request_error", code=None)
            if auth != f"Bearer {self.api_key}":
                shown = auth[7:][:8] if auth.startswith("Bearer ") else auth[:8]
                return None, self._error_response(
                    401, f"Incorrect API key provided: {shown}****. You can find your API key "
                    "at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error", code="invalid_api_key")
        if not isinstance(rec.body, dict):
            return None, self._error_response(
                400, "We could not parse the JSON body of your request. (HINT: This likely "
                "means you aren't using your HTTP library correctly. The OpenAI API expects a "
                "JSON payload, but what was sent was not valid JSON.)", "invalid_request_error")
        for name in required:
            if name not in rec.body:
                return None, self._error_response(
                    400, f"Missing required parameter: '{name}'.", "invalid_request_error",
                    code="missing_required_parameter", param=name)
        return rec.body, None

    def _usage(self, plan: _Plan, legacy: bool = False) -> dict:
        usage = {
            "prompt_tokens": plan.prompt_tokens,
            "completion_tokens": plan.completion_tokens,
            # a scripted malformed report (text, fractions) is sent as it is
            "total_tokens": (plan.prompt_tokens + plan.completion_tokens
                             if isinstance(plan.prompt_tokens, int) else plan.prompt_tokens),
        }
        if not legacy:
            usage["prompt_tokens_details"] = {"cached_tokens": plan.cache_read,
                                              "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0,
                                                  "accepted_prediction_tokens": 0,
                                                  "rejected_prediction_tokens": 0}
        return usage

    # --------------------------------------------------------------- chat
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, err = await self._preamble(request, ("model", "messages"))
        if err is not None:
            return err
        return await self._run_action(request, body, bool(body.get("stream")), self._chat_reply)

    def _chat_plan(self, body: dict, reply: Reply | None) -> _Plan:
        if reply is None:
            reply = self._forced_reply(body)
        messages = body.get("messages") or []
        prompt = sum(count_words(m.get("content")) + 3 for m in messages if isinstance(m, dict))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        return self._plan(reply, body, stops=body.get("stop"), max_tokens=max_tokens,
                          prompt_tokens=prompt, tool_prefix="call_fake")

    @staticmethod
    def _forced_reply(body: dict) -> Reply | None:
        """What the real API does when the request constrains the answer: a forced function
        (``tool_choice: {"type": "function", ...}``, or ``required``: the first tool) is
        called with arguments valid for its ``parameters``; ``response_format`` json_schema
        (json_object) makes the text a JSON document valid for the schema (an object)."""
        choice = body.get("tool_choice")
        tools = [t.get("function") or {} for t in body.get("tools") or []
                 if isinstance(t, dict)]
        forced = None
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            forced = next((t for t in tools if t.get("name") == name), None)
        elif choice == "required" and tools:
            forced = tools[0]
        if forced is not None:
            schema = forced.get("parameters") or {"type": "object"}
            return Reply(tool_calls=[{"name": forced["name"],
                                      "arguments": example_for(schema)}])
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            schema = (rf.get("json_schema") or {}).get("schema") or {"type": "object"}
            return Reply(text=json.dumps(example_for(schema)))
        if rf.get("type") == "json_object":
            return Reply(text="{}")
        return None

    async def _chat_reply(self, request, body, reply, stream, mode):
        plan = self._chat_plan(body, reply)
        cid = f"chatcmpl-fake{self._counter:06d}"
        created = int(time.time())
        if not stream:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": plan.text if (plan.chunks or not plan.tool_calls) else None,
                "refusal": None,
                "annotations": [],
            }
            if plan.tool_calls:
                message["tool_calls"] = [
                    {"id": t.id, "type": "function",
                     "function": {"name": t.name, "arguments": t.arguments}}
                    for t in plan.tool_calls]
            payload = {
                "id": cid, "object": "chat.completion", "created": created,
                "model": plan.model,
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": plan.finish}],
                "usage": self._usage(plan),
                "service_tier": "default",
                "system_fingerprint": SYSTEM_FINGERPRINT,
            }
            if isinstance(mode, CutStream):
                return await self._send_cut_body(request, payload, plan.headers)
            return self._json(payload, headers=plan.headers)

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created,
                   "model": plan.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                   "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                "finish_reason": finish}]}
            return b"data: " + _dumps(obj).encode() + b"\n\n"

        def tool_header(i: int, t: _ToolCall) -> dict:
            return {"index": i, "id": t.id, "type": "function",
                    "function": {"name": t.name, "arguments": ""}}

        events: list[tuple[str, bytes]] = []
        if self.wire.azure:  # Azure OpenAI opens with the prompt's content filter results
            events.append(("frame", b"data: " + _dumps({
                "choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                    "hate": {"filtered": False, "severity": "safe"}}}]}).encode() + b"\n\n"))
        tools = plan.tool_calls
        if plan.chunks or not tools:
            events.append(("frame", chunk({"role": "assistant", "content": "", "refusal": None})))
            for c in plan.chunks:
                events.append(("content", chunk({"content": c})))
            first_tool = 0
        else:
            events.append(("frame", chunk({"role": "assistant", "content": None,
                                            "tool_calls": [tool_header(0, tools[0])],
                                            "refusal": None})))
            for f in tools[0].fragments:
                events.append(("content", chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": f}}]})))
            first_tool = 1
        for i in range(first_tool, len(tools)):
            events.append(("frame", chunk({"tool_calls": [tool_header(i, tools[i])]})))
            for f in tools[i].fragments:
                events.append(("content", chunk(
                    {"tool_calls": [{"index": i, "function": {"arguments": f}}]})))
        events.append(("post", chunk({}, plan.finish)))
        if (body.get("stream_options") or {}).get("include_usage"):
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created,
                   "model": plan.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                   "choices": [], "usage": self._usage(plan)}
            events.append(("post", b"data: " + _dumps(obj).encode() + b"\n\n"))
        events.append(("post", b"data: [DONE]\n\n"))
        return await self._send_events(request, events, mode, plan.headers)

    # --------------------------------------------------------------- legacy completions
    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, err = await self._preamble(request, ("model", "prompt"))
        if err is not None:
            return err
        return await self._run_action(request, body, bool(body.get("stream")),
                                      self._completion_reply)

    async def _completion_reply(self, request, body, reply, stream, mode):
        if reply is not None and reply.tool_calls:
            reply = Reply(**{**reply.__dict__, "tool_calls": None})
        plan = self._plan(reply, body, stops=body.get("stop"), max_tokens=body.get("max_tokens"),
                          prompt_tokens=_count_prompt(body.get("prompt")), tool_prefix="call_")
        cid = f"cmpl-fake{self._counter:06d}"
        created = int(time.time())

        def obj(choices: list, usage: dict | None = None) -> dict:
            o = {"id": cid, "object": "text_completion", "created": created,
                 "model": plan.model, "choices": choices,
                 "system_fingerprint": SYSTEM_FINGERPRINT}
            if usage is not None:
                o["usage"] = usage
            return o

        if not stream:
            payload = obj([{"text": plan.text, "index": 0, "logprobs": None,
                            "finish_reason": plan.finish}], self._usage(plan, legacy=True))
            if isinstance(mode, CutStream):
                return await self._send_cut_body(request, payload, plan.headers)
            return self._json(payload, headers=plan.headers)

        def ev(o: dict) -> bytes:
            return b"data: " + _dumps(o).encode() + b"\n\n"

        events = [("content", ev(obj([{"text": c, "index": 0, "logprobs": None,
                                       "finish_reason": None}]))) for c in plan.chunks]
        events.append(("post", ev(obj([{"text": "", "index": 0, "logprobs": None,
                                        "finish_reason": plan.finish}]))))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(("post", ev(obj([], self._usage(plan, legacy=True)))))
        events.append(("post", b"data: [DONE]\n\n"))
        return await self._send_events(request, events, mode, plan.headers)

    # --------------------------------------------------------------- embeddings
    @staticmethod
    def embedding_vector(model: str, item: Any, dims: int) -> list[float]:
        """The deterministic unit vector (float32-exact) for one input."""
        seed = hashlib.sha256(f"{model}\n{_dumps(item)}".encode()).digest()
        raw: list[float] = []
        block = 0
        while len(raw) < dims:
            h = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
            for (u,) in struct.iter_unpack("<I", h):
                raw.append(u / 2147483647.5 - 1.0)
            block += 1
        raw = raw[:dims]
        norm = math.sqrt(sum(x * x for x in raw)) or 1.0
        vec = [x / norm for x in raw]
        return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *vec)))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, err = await self._preamble(request, ("model", "input"))
        if err is not None:
            return err
        return await self._run_action(request, body, False, self._embedding_reply)

    async def _embedding_reply(self, request, body, reply, stream, mode):
        inp = body.get("input")
        if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)):
            items = [inp]
        elif isinstance(inp, list) and inp:
            items = inp
        else:
            return self._error_response(400, "'$.input' is invalid. Please check the API "
                                        "reference: https://platform.openai.com/docs/api-"
                                        "reference.", "invalid_request_error", param="input")
        if any(isinstance(i, str) and i == "" for i in items):
            return self._error_response(400, "'$.input' is invalid.", "invalid_request_error",
                                        param="input")
        dims = body.get("dimensions", self.embedding_dims)
        if not isinstance(dims, int) or isinstance(dims, bool) or dims < 1:
            return self._error_response(400, f"Invalid value for 'dimensions' = {dims}. "
                                        "Must be a positive integer.", "invalid_request_error",
                                        param="dimensions")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            return self._error_response(400, f"Invalid value for 'encoding_format' = {fmt}. "
                                        "Expected 'float' or 'base64'.",
                                        "invalid_request_error", param="encoding_format")
        model = str(body.get("model"))
        data = []
        for i, item in enumerate(items):
            vec = self.embedding_vector(model, item, dims)
            emb: Any = vec
            if fmt == "base64":
                emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        prompt = sum(_count_prompt(i) for i in items)
        if reply is not None and reply.usage is not None:
            prompt = reply.usage[0]
        payload = {"object": "list", "data": data,
                   "model": (reply.model if reply and reply.model else model),
                   "usage": {"prompt_tokens": prompt, "total_tokens": prompt}}
        headers = dict(reply.headers or {}) if reply else {}
        if isinstance(mode, CutStream):
            return await self._send_cut_body(request, payload, headers)
        return self._json(payload, headers=headers)

    # --------------------------------------------------------------- models
    # --------------------------------------------------------------- responses
    async def _responses(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/responses (store: false style: no state kept). Prompt tokens: words + 3
        per input message (a string input is one message), plus instructions' words + 3."""
        body, err = await self._preamble(request, ("model", "input"))
        if err is not None:
            return err
        return await self._run_action(request, body, bool(body.get("stream")),
                                      self._responses_reply)

    async def _responses_reply(self, request, body, reply, stream, mode):
        items = body["input"] if isinstance(body["input"], list) else [
            {"role": "user", "content": body["input"]}]
        prompt = sum(count_words(i.get("content")) + 3 for i in items
                     if isinstance(i, dict) and "content" in i)
        if body.get("instructions"):
            prompt += count_words(body["instructions"]) + 3
        plan = self._plan(reply, body, stops=None, max_tokens=body.get("max_output_tokens"),
                          prompt_tokens=prompt, tool_prefix="call_fake")
        rid, mid = f"resp_fake{self._counter:06d}", f"msg_fake{self._counter:06d}"
        usage = {"input_tokens": plan.prompt_tokens,
                 "input_tokens_details": {"cached_tokens": plan.cache_read},
                 "output_tokens": plan.completion_tokens,
                 "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": _total(plan.prompt_tokens, plan.completion_tokens)}
        part = {"type": "output_text", "text": plan.text, "annotations": [], "logprobs": []}
        message = {"id": mid, "type": "message", "status": "completed", "role": "assistant",
                   "content": [part]}
        calls = [{"id": f"fc_fake{i}", "type": "function_call", "status": "completed",
                  "call_id": t.id, "name": t.name, "arguments": t.arguments}
                 for i, t in enumerate(plan.tool_calls)]
        output = ([message] if plan.chunks or not calls else []) + calls
        status = "incomplete" if plan.finish == "length" else "completed"

        def response(state: str, out: list, use: dict | None) -> dict:
            return {"id": rid, "object": "response", "created_at": int(time.time()),
                    "status": state, "model": plan.model, "output": out, "usage": use,
                    "error": None, "store": False, "tools": body.get("tools") or [],
                    "incomplete_details": {"reason": "max_output_tokens"}
                    if state == "incomplete" else None}

        if not stream:
            return self._json(response(status, output, usage), headers=plan.headers)
        seq = iter(range(1_000_000))

        def ev(obj: dict) -> bytes:
            obj = {"type": obj.pop("type"), "sequence_number": next(seq), **obj}
            return f"event: {obj['type']}\ndata: {_dumps(obj)}\n\n".encode()

        events = [("frame", ev({"type": "response.created",
                                "response": response("in_progress", [], None)}))]
        if message in output:
            events.append(("frame", ev({"type": "response.output_item.added", "output_index": 0,
                                        "item": {**message, "content": [],
                                                 "status": "in_progress"}})))
            for c in plan.chunks:
                events.append(("content", ev({"type": "response.output_text.delta",
                                              "item_id": mid, "output_index": 0,
                                              "content_index": 0, "delta": c, "logprobs": []})))
            events.append(("frame", ev({"type": "response.output_item.done", "output_index": 0,
                                        "item": message})))
        for t, call in zip(plan.tool_calls, calls, strict=True):
            index = output.index(call)
            events.append(("frame", ev({"type": "response.output_item.added",
                                        "output_index": index,
                                        "item": {**call, "arguments": ""}})))
            for f in t.fragments:
                events.append(("content", ev({"type": "response.function_call_arguments.delta",
                                              "item_id": call["id"], "output_index": index,
                                              "delta": f})))
            events.append(("frame", ev({"type": "response.output_item.done",
                                        "output_index": index, "item": call})))
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(("post", ev({"type": kind, "response": response(status, output, usage)})))
        error = None
        if isinstance(mode, StreamError):
            error = ev({"type": "error", "code": mode.type or "server_error",
                        "message": mode.message, "param": None})
        return await self._send_events(request, events, mode, plan.headers, error)

    def _model_obj(self, m: str) -> dict:
        return {"id": m, "object": "model", "created": 1686935002,
                "owned_by": "openai" if not m.startswith("ft:") else "user"}

    async def _auth_only(self, request: web.Request) -> web.Response | None:
        await self._record(request)
        if self.api_key is not None and \
                request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error_response(401, None, None)
        return None

    async def _models(self, request: web.Request) -> web.StreamResponse:
        err = await self._auth_only(request)
        if err is not None:
            return err
        return self._json({"object": "list", "data": [self._model_obj(m) for m in self.models]})

    async def _model(self, request: web.Request) -> web.StreamResponse:
        err = await self._auth_only(request)
        if err is not None:
            return err
        m = request.match_info["model"]
        if m not in self.models:
            return self._error_response(
                404, f"The model '{m}' does not exist", "invalid_request_error",
                code="model_not_found", param="model")
        return self._json(self._model_obj(m))


def example_for(schema: Any, root: Any = None) -> Any:
    """A small JSON value valid for ``schema`` (objects get every property), as a model
    constrained to the schema would produce: ``$ref``/``$defs``, ``anyOf``/``oneOf``,
    ``enum``/``const``, ``minItems``, ``minimum`` are followed."""
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return {}
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return example_for(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if o.get("type") != "null"]
        if options:
            return example_for(options[0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: example_for(sub, root)
                for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [example_for(schema.get("items") or {"type": "string"}, root)
                for _ in range(max(1, int(schema.get("minItems") or 1)))]
    if kind == "string":
        return "example"
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    return None


# --------------------------------------------------------------------------- Anthropic


_ANTHROPIC_ERROR_TYPES = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the "
                              "specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute "
                              "rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


COUNT_TOKENS_FIELDS = frozenset({
    "model", "messages", "system", "tools", "tool_choice", "thinking", "context_management",
    "mcp_servers", "output_config", "cache_control", "speed", "compaction", "billing_policy",
    "user_profile_id", "workspace_id",
})


class FakeAnthropic(_FakeBase):
    """Fake Anthropic Messages API: POST /v1/messages (stream and not),
    POST /v1/messages/count_tokens, GET /v1/models.

    Auth: ``x-api-key: <api_key>`` or, if ``accept_bearer`` (default True),
    ``Authorization: Bearer <api_key>`` — the installed anthropic SDK (2.x) sends the
    latter. Missing/wrong → 401 authentication_error; api_key=None disables the check.
    ``anthropic-version`` must be present (missing → 400 invalid_request_error
    "anthropic-version: header is required", as the real API does) and look like a date;
    ``versions={...}`` restricts it to a set (others → 400). The SDK 2.x sends
    "2023-06-01"-style dates ("2026-10-21" for 2.14).
    ``max_tokens`` is required (400 like the real API), and ``messages`` roles must be user or
    assistant (system text goes in ``system``)."""

    provider = "anthropic"
    default_text = "Hello from fake-anthropic"
    _reasons = ("end_turn", "stop_sequence", "max_tokens", "tool_use")

    def __init__(
        self,
        api_key: str | None = "sk-ant-fake",
        *,
        versions: Iterable[str] | None = None,
        accept_bearer: bool = True,
        models: Iterable[str] = ("claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"),
        **kw: Any,
    ) -> None:
        super().__init__(api_key, **kw)
        self.versions = set(versions) if versions is not None else None
        self.accept_bearer = accept_bearer
        self.models = list(models)

    def _add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self._messages)
        router.add_post("/v1/messages/count_tokens", self._count_tokens)
        router.add_get("/v1/models", self._models)

    def _std_headers(self) -> dict[str, str]:
        return {"request-id": f"req_fake{self._counter:06d}"}

    def _error_response(self, status, message, type_, code=None, param=None, headers=None):
        dtype, dmsg = _ANTHROPIC_ERROR_TYPES.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", f"Error {status}"))
        payload = {"type": "error", "error": {"type": type_ or dtype, "message": message or dmsg}}
        return self._json(payload, status=status, headers=headers)

    def _stream_error_event(self, err: StreamError) -> bytes:
        payload = {"type": "error", "error": {"type": err.type or "overloaded_error",
                                              "message": err.message}}
        return b"event: error\ndata: " + _dumps(payload).encode() + b"\n\n"

    def _check_headers(self, request: web.Request) -> web.Response | None:
        if self.api_key is not None:
            ok = request.headers.get("x-api-key") == self.api_key
            if not ok and self.accept_bearer:
                ok = request.headers.get("Authorization") == f"Bearer {self.api_key}"
            if not ok:
                return self._error_response(401, "invalid x-api-key", "authentication_error")
        v = request.headers.get("anthropic-version")
        if not v:
            return self._error_response(400, "anthropic-version: header is required",
                                        "invalid_request_error")
        if (self.versions is not None and v not in self.versions) or \
                not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
                return self._error_response(400, f"anthropic-version: invalid version: {v}",
                                            "invalid_request_error")
        return None

    async def _models(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        err = self._check_headers(request)
        if err is not None:
            return err
        data = [{"type": "model", "id": m, "display_name": m,
                 "created_at": "2025-05-14T00:00:00Z"} for m in self.models]
        return self._json({"data": data, "has_more": False,
                           "first_id": data[0]["id"] if data else None,
                           "last_id": data[-1]["id"] if data else None})

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        self._next_id()
        err = self._check_headers(request)
        if err is not None:
            return err
        body = rec.body
        if not isinstance(body, dict):
            return self._error_response(400, "There was an issue with your request body: "
                                        "invalid JSON", "invalid_request_error")
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                return self._error_response(400, f"{name}: Field required",
                                            "invalid_request_error")
        bad = self._bad_roles(body)
        if bad is not None:
            return bad
        return await self._run_action(request, body, bool(body.get("stream")),
                                      self._message_reply)

    def _bad_roles(self, body: dict) -> web.Response | None:
        for i, m in enumerate(body.get("messages") or []):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in ("user", "assistant"):
                return self._error_response(
                    400, f"messages.{i}.role: Input should be 'user' or 'assistant'",
                    "invalid_request_error")
        return None

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/messages/count_tokens: ``{"input_tokens": N}``, N by the usage formula
        (the same ``input_tokens`` a /v1/messages call on the body would report). Fields the
        real endpoint refuses (max_tokens, stream, metadata...) are refused the same way."""
        rec = await self._record(request)
        err = self._check_headers(request)
        if err is not None:
            return err
        body = rec.body
        if not isinstance(body, dict):
            return self._error_response(400, "invalid JSON", "invalid_request_error")
        for name in ("model", "messages"):
            if name not in body:
                return self._error_response(400, f"{name}: Field required",
                                            "invalid_request_error")
        for name in body:
            if name not in COUNT_TOKENS_FIELDS:
                return self._error_response(400, f"{name}: Extra inputs are not permitted",
                                            "invalid_request_error")
        bad = self._bad_roles(body)
        if bad is not None:
            return bad
        return self._json({"input_tokens": self._message_plan(body, None).prompt_tokens})

    def _message_plan(self, body: dict, reply: Reply | None) -> _Plan:
        if reply is None:
            reply = self._forced_reply(body)
        prompt = sum(count_words(m.get("content")) + 3
                     for m in body.get("messages") or [] if isinstance(m, dict))
        system = body.get("system")
        if system:
            prompt += count_words(system) + 3
        return self._plan(reply, body, stops=body.get("stop_sequences"),
                          max_tokens=body.get("max_tokens"), prompt_tokens=prompt,
                          tool_prefix="toolu_fake")

    @staticmethod
    def _forced_reply(body: dict) -> Reply | None:
        """What the real API does when the request constrains the answer: a forced tool
        (``tool_choice`` ``tool``, or ``any``: the first tool) is called with an input valid
        for its ``input_schema``; ``output_config.format`` (json_schema) makes the text a JSON
        document valid for the schema."""
        choice = body.get("tool_choice") or {}
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        forced = None
        if choice.get("type") == "tool":
            forced = next((t for t in tools if t.get("name") == choice.get("name")), None)
        elif choice.get("type") == "any" and tools:
            forced = tools[-1] if len(tools) > 1 else tools[0]
        if forced is not None:
            schema = forced.get("input_schema") or {"type": "object"}
            return Reply(tool_calls=[{"name": forced["name"],
                                      "arguments": example_for(schema)}])
        fmt = (body.get("output_config") or {}).get("format") or {}
        if fmt.get("type") == "json_schema":
            return Reply(text=json.dumps(example_for(fmt.get("schema") or {"type": "object"})))
        return None

    async def _message_reply(self, request, body, reply, stream, mode):
        plan = self._message_plan(body, reply)
        mid = f"msg_fake{self._counter:06d}"
        usage_full = {"input_tokens": plan.prompt_tokens,
                      "cache_creation_input_tokens": plan.cache_creation,
                      "cache_read_input_tokens": plan.cache_read,
                      "output_tokens": plan.completion_tokens,
                      "service_tier": "standard"}
        if not stream:
            content: list[dict] = []
            if plan.chunks:
                content.append({"type": "text", "text": plan.text})
            for t in plan.tool_calls:
                content.append({"type": "tool_use", "id": t.id, "name": t.name,
                                "input": t.input})
            payload = {"id": mid, "type": "message", "role": "assistant", "model": plan.model,
                       "content": content, "stop_reason": plan.finish,
                       "stop_sequence": plan.stop_sequence, "usage": usage_full}
            if isinstance(mode, CutStream):
                return await self._send_cut_body(request, payload, plan.headers)
            return self._json(payload, headers=plan.headers)

        def ev(name: str, obj: dict) -> bytes:
            return f"event: {name}\ndata: {_dumps(obj)}\n\n".encode()

        ping = b'event: ping\ndata: {"type": "ping"}\n\n'
        start_usage = dict(usage_full, output_tokens=1)
        events: list[tuple[str, bytes]] = [("frame", ev("message_start", {
            "type": "message_start",
            "message": {"id": mid, "type": "message", "role": "assistant", "model": plan.model,
                        "content": [], "stop_reason": None, "stop_sequence": None,
                        "usage": start_usage}}))]
        index = 0
        pinged = False
        if plan.chunks:
            events.append(("frame", ev("content_block_start", {
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}})))
            events.append(("frame", ping))
            pinged = True
            for c in plan.chunks:
                events.append(("content", ev("content_block_delta", {
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": c}})))
            events.append(("frame", ev("content_block_stop",
                                       {"type": "content_block_stop", "index": 0})))
            index = 1
        for t in plan.tool_calls:
            events.append(("frame", ev("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": t.id, "name": t.name,
                                  "input": {}}})))
            if not pinged:
                events.append(("frame", ping))
                pinged = True
            events.append(("frame", ev("content_block_delta", {
                "type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": ""}})))
            for f in t.fragments:
                events.append(("content", ev("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": f}})))
            events.append(("frame", ev("content_block_stop",
                                       {"type": "content_block_stop", "index": index})))
            index += 1
        if not pinged:
            events.append(("frame", ping))
        events.append(("post", ev("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": plan.finish, "stop_sequence": plan.stop_sequence},
            "usage": {"output_tokens": plan.completion_tokens}})))
        events.append(("post", ev("message_stop", {"type": "message_stop"})))
        return await self._send_events(request, events, mode, plan.headers)
