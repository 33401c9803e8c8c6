"""Minimal ASGI request/response plumbing, kept thin because every request pays for it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from spaceai.types import GatewayError

Headers = list[tuple[bytes, bytes]]
JSON_CT = (b"content-type", b"application/json")
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


class Request:
    """The parts of an ASGI HTTP request the handlers use."""

    __slots__ = ("scope", "receive", "method", "path", "request_id", "path_params", "_headers",
                 "state")

    def __init__(self, scope: dict, receive: Callable[[], Awaitable[dict]]) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.request_id = new_request_id()
        self.path_params: dict[str, str] = {}
        self._headers: dict[bytes, bytes] | None = None
        self.state: dict[str, Any] = {}

    def header(self, name: bytes) -> str | None:
        if self._headers is None:
            self._headers = dict(self.scope["headers"])
        v = self._headers.get(name)
        return v.decode("latin-1") if v is not None else None

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    def base_url(self) -> str:
        host = self.header(b"host")
        scheme = self.scope.get("scheme", "http")
        if not host:
            server = self.scope.get("server") or ("127.0.0.1", 8000)
            host = f"{server[0]}:{server[1]}"
        return f"{scheme}://{host}"

    async def body(self, limit: int) -> bytes:
        """The whole body; a 413 GatewayError past ``limit`` bytes."""
        declared = self.header(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def json(self, limit: int) -> Any:
        """The body as JSON: a 400 if it is not JSON (or not UTF-8), or nested too deeply."""
        raw = await self.body(limit)
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise GatewayError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you "
                "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
                code="invalid_json",
            ) from None
        # a body with fewer brackets than the limit cannot be nested deeper than it
        if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
            check_depth(value)
        return value


MAX_JSON_DEPTH = 64


def check_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """A 400 naming the top-level field if ``value`` nests arrays/objects deeper than ``limit``.

    Checked once where a body is parsed, so nothing downstream (validation, token estimates,
    re-encoding for an upstream: orjson stops at 254 levels) ever meets a deeper value.
    """
    stack: list[tuple[Any, int, str | None]] = [(value, 1, None)]
    while stack:
        node, depth, top = stack.pop()
        if depth > limit:
            where = f"'{top}'" if top is not None else "the request body"
            raise GatewayError(400, f"Invalid {where}: JSON nested too deeply (more than {limit} "
                               "levels of arrays and objects).", param=top,
                               code="nested_too_deeply")
        if type(node) is dict:
            items = node.items()
        elif type(node) is list:
            items = ((top, child) for child in node)
        else:
            continue
        for name, child in items:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1, name if top is None else top))


class ClientGone(Exception):
    """The client disconnected before we answered."""


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body too large: the limit is {limit} bytes.",
                        code="request_too_large")


class Response:
    """A complete response body, sent with its length (so head and body leave in one write,
    see :mod:`spaceai.api.connections`)."""

    __slots__ = ("status", "body", "headers", "length")

    def __init__(self, status: int, body: bytes, headers: Headers,
                 length: int | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.length = len(body) if length is None else length

    async def send(self, send: Callable, receive: Callable) -> None:
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [*self.headers, (b"content-length", b"%d" % self.length)]})
        await send({"type": "http.response.body", "body": self.body})


def head_response(response: Response | StreamResponse) -> Response | StreamResponse:
    """The answer to a HEAD request: the GET answer's status and headers, no body."""
    if type(response) is not Response:
        return response  # the server sends no body for HEAD
    return Response(response.status, b"", response.headers, len(response.body))


def json_response(status: int, data: Any, headers: Headers | None = None) -> Response:
    h = [JSON_CT]
    if headers:
        h.extend(headers)
    return Response(status, orjson.dumps(data), h)


def error_response(err: GatewayError) -> Response:
    headers = [(k.encode(), v.encode()) for k, v in err.headers.items()]
    return json_response(err.status, err.to_dict(), headers)


class Last(bytes):
    """The last piece of a streamed body: it leaves in the same write as the end of the body
    (an SSE stream's ``[DONE]`` and the chunked encoding's terminator), and nothing after it
    is sent."""

    __slots__ = ()


class StreamResponse:
    """An SSE (or other) stream; cancels its producer as soon as the client goes away."""

    __slots__ = ("status", "headers", "chunks", "on_close")

    def __init__(self, chunks: AsyncIterator[bytes], headers: Headers | None = None,
                 status: int = 200,
                 on_close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.status = status
        self.headers = list(SSE_HEADERS) + (headers or [])
        self.chunks = chunks
        self.on_close = on_close  # always awaited last, however the response ended

    async def send(self, send: Callable, receive: Callable) -> None:
        """Relay the chunks in this task while a second one watches the client: if it goes
        away before the body is complete, this task is cancelled, which stops the upstream at
        once (and is not an error)."""
        task = asyncio.current_task()
        state = [False, False]  # [the body's end handed to the server, the client gone]

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not state[0]:  # (the server says "disconnect" once a body is complete too)
                state[1] = True
                task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await self._pump(send, state)
        except asyncio.CancelledError:
            if not state[1]:
                raise  # cancelled from outside (shutdown): not ours to swallow
            task.uncancel()
        except OSError:
            pass
        finally:
            watcher.cancel()
            if self.on_close is not None:
                await self.on_close()

    async def _pump(self, send: Callable, state: list[bool]) -> None:
        await send({"type": "http.response.start", "status": self.status,
                    "headers": self.headers})
        ended = False
        try:
            async for chunk in self.chunks:
                ended = chunk.__class__ is Last
                state[0] = ended
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": not ended})
                if ended:
                    break
        finally:
            aclose = getattr(self.chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        if not ended:
            state[0] = True
            await send({"type": "http.response.body", "body": b""})
