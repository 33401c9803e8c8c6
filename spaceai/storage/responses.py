"""Stored Responses API answers: save, read, delete (by their owning key), and purge.

Every database call runs in a worker thread (``asyncio.to_thread``): the event loop never
waits on the database. A background task deletes responses older than the retention
setting at start-up and then every ``purge_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from spaceai.background import purge_forever, stop
from spaceai.keys import now
from spaceai.storage.tables import responses

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the shape of every id this store hands out

log = logging.getLogger("spaceai.storage.responses")


@dataclass(slots=True)
class StoredResponse:
    """One stored response: the object as answered, its input, and the conversation."""

    id: str
    key_id: str
    model: str
    body: dict[str, Any]
    input_items: list[dict[str, Any]]
    context: list[dict[str, Any]]

    def history(self) -> list[dict[str, Any]]:
        """The items a follow-up (``previous_response_id``) continues: context, then output."""
        return [*self.context, *self.body.get("output", [])]


class ResponseStore:
    """The ``responses`` table, owned by key."""

    def __init__(self, engine: sa.Engine, retention_days: float = 30,
                 purge_interval_s: float = 3600) -> None:
        self.engine = engine
        self.retention_days = retention_days
        self.purge_interval_s = purge_interval_s
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(purge_forever(
            self.purge, self.purge_interval_s, "stored responses", self.retention_days))

    async def close(self) -> None:
        await stop(self._task)

    async def save(self, stored: StoredResponse) -> None:
        row = {"id": stored.id, "key_id": stored.key_id, "model": stored.model,
               "body": stored.body, "input_items": stored.input_items,
               "context": stored.context, "created_at": now()}
        await asyncio.to_thread(self._run, responses.insert().values(**row))

    async def get(self, response_id: str, key_id: str) -> StoredResponse | None:
        """The response, if it exists and belongs to ``key_id``."""
        if not _ID.fullmatch(response_id):  # no id we made (NUL, 5,000 characters...)
            return None
        query = sa.select(responses).where(responses.c.id == response_id,
                                           responses.c.key_id == key_id)
        row = await asyncio.to_thread(self._first, query)
        if row is None:
            return None
        return StoredResponse(row.id, row.key_id, row.model, row.body, row.input_items,
                              row.context)

    async def delete(self, response_id: str, key_id: str) -> bool:
        if not _ID.fullmatch(response_id):
            return False
        query = responses.delete().where(responses.c.id == response_id,
                                         responses.c.key_id == key_id)
        return bool(await asyncio.to_thread(self._run, query))

    async def purge(self, before: datetime | None = None) -> int:
        """Delete responses created before ``before`` (default: the retention horizon)."""
        cutoff = before or now() - timedelta(days=self.retention_days)
        return await asyncio.to_thread(
            self._run, responses.delete().where(responses.c.created_at < cutoff))

    def _run(self, statement: Any) -> int:
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount or 0

    def _first(self, query: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(query).first()
