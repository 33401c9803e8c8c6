"""Limits: budgets and rate limits, checked before a request goes upstream.

``Control.admit`` runs before the provider is called and may refuse with a 429; it returns an
:class:`Admission` that ``Control.settle`` closes exactly once with the real usage and cost,
however the request ended.

Two implementations: :mod:`spaceai.limits.local` (one process, plain integers) and
:mod:`spaceai.limits.shared` (any number of processes, one atomic Lua call in Redis per
admission). :func:`build_control` picks one from the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spaceai.catalog import ModelConfig
from spaceai.keys import KeyRecord
from spaceai.types import ChatRequest

if TYPE_CHECKING:
    import sqlalchemy as sa

    from spaceai.config import Settings
    from spaceai.metering.layouts import SpoolRow
    from spaceai.metering.ledger import Ledger


@dataclass(slots=True)
class Admission:
    key: KeyRecord
    reserved_nanos: int = 0
    reserved_tokens: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    id: str = ""
    period: str = "all"  # the budget period the reservation was taken in
    handle: Any = None  # the implementation's own bookkeeping for settle


class Control:
    """No limits: every request is admitted (the base for the enforcing implementations)."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def admit(self, key: KeyRecord, model: ModelConfig, req: ChatRequest,
                    chain: Sequence[ModelConfig] = ()) -> Admission:
        """Admit the request or raise a 429; ``chain`` is every model it may be served by."""
        return Admission(key=key)

    async def settle(self, admission: Admission, total_tokens: int, cost_nanos: int) -> None:
        pass

    async def spend_nanos(self, key: KeyRecord) -> int:
        return key.spend_nanos

    async def recover(self, rows: list[SpoolRow]) -> None:
        """Settle the reservations of rows a dead process spooled but may not have settled.

        In-process limits start from the database, which has those rows already.
        """


def build_control(settings: Settings, engine: sa.Engine, ledger: Ledger) -> Control:
    """Redis-backed limits when ``settings.redis_url`` is set, else in-process ones."""
    if settings.redis_url:
        from spaceai.limits.shared import RedisControl

        return RedisControl(settings.redis_url, engine, ledger)
    from spaceai.limits.local import LocalControl

    return LocalControl(engine, ledger)
