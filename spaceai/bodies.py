"""Request and response bodies, stored only when the operator turns it on.

``SPACEAI_LOG_BODIES`` turns it on for every key; a key's ``log_bodies`` (true or false)
overrides it. Bodies go to their own table, ``request_bodies``, purged after
``SPACEAI_LOG_BODIES_DAYS``. They are written off the request path: the request hands them to
a bounded queue that a background task drains into the database in a thread (a crash can lose
the bodies in the queue; they are not the ledger, and a full queue drops them with a log line).
Secrets never reach the table: any JSON field named like an API key or an authorization header
is blanked, and any ``sk-…`` string in any value is redacted.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa

from spaceai.background import purge_forever, stop
from spaceai.keys import KeyRecord, now
from spaceai.storage.tables import request_bodies

log = logging.getLogger("spaceai.bodies")

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"(?i)^(x[-_])?(api[-_]?key|authorization|auth[-_]?token|"
                          r"access[-_]?token|secret|password|bearer)$")
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{4,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}")
MAX_TEXT = 1_000_000  # characters of one stored body; longer ones are cut


def redact_text(text: str) -> str:
    text = _SK.sub(REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


def redact(value: Any) -> Any:
    """``value`` with secret-named fields blanked and ``sk-…`` strings redacted, recursively."""
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _SECRET_NAME.match(k) else redact(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = redact_text(value)
    else:
        text = orjson.dumps(redact(value), default=str).decode()
    return text[:MAX_TEXT]


def stream_text(chunks: list[dict[str, Any]]) -> str:
    """The text a chat or text-completion stream produced, its chunks concatenated."""
    parts: list[str] = []
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str):
                    parts.append(content)
            elif isinstance(choice.get("text"), str):
                parts.append(choice["text"])
    return "".join(parts)


class BodyLog:
    """The ``request_bodies`` table: a queue drained in the background, and its purge."""

    def __init__(self, engine: sa.Engine, enabled: bool = False, retention_days: float = 7.0,
                 purge_interval_s: float = 3600, max_queue: int = 10_000) -> None:
        self.engine = engine
        self.enabled = enabled
        self.retention_days = retention_days
        self.purge_interval_s = purge_interval_s
        self.max_queue = max_queue
        self._queue: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []

    def wanted(self, key: KeyRecord | None) -> bool:
        """Whether this key's bodies are stored (its own switch, else the gateway's)."""
        own = key.log_bodies if key is not None else None
        return self.enabled if own is None else bool(own)

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._tasks = [asyncio.create_task(self._drain()),
                       asyncio.create_task(purge_forever(
                           self.purge, self.purge_interval_s, "stored request bodies",
                           self.retention_days))]

    async def close(self) -> None:
        if self._queue is not None:
            await self.flush()
        await stop(*self._tasks)
        self._tasks = []

    def submit(self, request_id: str, key_id: str | None, request: Any, response: Any) -> None:
        """Queue one request's bodies (never blocks; dropped if the queue is full)."""
        if self._queue is None:
            return
        try:
            self._queue.put_nowait((request_id, key_id, request, response, now()))
        except asyncio.QueueFull:
            log.warning("request bodies dropped for %s: the body queue is full", request_id)

    async def flush(self) -> None:
        """Wait until every queued body is written (tests, shutdown)."""
        if self._queue is not None and self._tasks:
            await self._queue.join()

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 200:
                batch.append(self._queue.get_nowait())
            try:
                rows = [{"request_id": rid, "key_id": kid, "request": _text(req),
                         "response": _text(resp), "created_at": at}
                        for rid, kid, req, resp, at in batch]
                await asyncio.to_thread(self._insert, rows)
            except Exception:  # noqa: BLE001 - bodies are not the ledger: log and go on
                log.exception("storing %d request bodies failed", len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One transaction for the batch; row by row only if a request id is there already
        (then the first one stored is kept)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(request_bodies.insert(), rows)
            return
        except sa.exc.IntegrityError:
            pass
        for row in rows:
            try:
                with self.engine.begin() as conn:
                    conn.execute(request_bodies.insert().values(**row))
            except sa.exc.IntegrityError:
                pass

    async def purge(self, before: datetime | None = None) -> int:
        """Delete bodies stored before ``before`` (default: the retention horizon)."""
        cutoff = before or now() - timedelta(days=self.retention_days)
        return await asyncio.to_thread(self._delete_before, cutoff)

    def _delete_before(self, cutoff: datetime) -> int:
        with self.engine.begin() as conn:
            return conn.execute(request_bodies.delete().where(
                request_bodies.c.created_at < cutoff)).rowcount or 0

    def get(self, request_id: str) -> dict[str, Any] | None:
        """One request's stored bodies (blocking)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(request_bodies).where(
                request_bodies.c.request_id == request_id)).first()
        if row is None:
            return None
        at = row.created_at
        return {"object": "request.bodies", "request_id": row.request_id, "logged": True,
                "key_id": row.key_id,
                "request": row.request, "response": row.response,
                "created_at": at.isoformat() if at is not None else None}


_MAX_SSE_BYTES = 8 * 1024 * 1024  # of a stream kept to extract its text; the rest is not


def sse_text(raw: bytes) -> str:
    """The text an SSE stream carried: OpenAI chat/completion deltas, Anthropic Messages
    ``content_block_delta`` text, Responses API ``response.output_text.delta``."""
    parts: list[str] = []
    for line in raw.split(b"\n"):
        line = line.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            continue
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("choices"):
            parts.append(stream_text([event]))
        kind = event.get("type")
        delta = event.get("delta")
        if kind == "content_block_delta" and isinstance(delta, dict) \
                and isinstance(delta.get("text"), str):
            parts.append(delta["text"])
        elif kind == "response.output_text.delta" and isinstance(delta, str):
            parts.append(delta)
    return "".join(parts)


async def _kept_sse(chunks: Any, done: Any) -> Any:
    kept = bytearray()
    try:
        async for chunk in chunks:
            if len(kept) < _MAX_SSE_BYTES:
                kept += chunk
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        done(sse_text(bytes(kept)))


def logged(bodies: BodyLog, request_id: str, key: KeyRecord, body: Any, response: Any) -> Any:
    """``response`` (a Response or a StreamResponse), its bodies queued if ``key``'s are logged:
    a whole answer's JSON at once, a stream's text when it ends."""
    if not bodies.wanted(key):
        return response
    chunks = getattr(response, "chunks", None)
    if chunks is not None:
        response.chunks = _kept_sse(chunks, lambda text: bodies.submit(
            request_id, key.id, body, text))
        return response
    raw = getattr(response, "body", b"")
    try:
        answer: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = bytes(raw).decode("utf-8", "replace")
    bodies.submit(request_id, key.id, body, answer)
    return response
