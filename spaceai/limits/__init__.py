"""Limits: budgets and rate limits, checked before a request goes upstream.

``Control.admit`` runs before the provider is called and may refuse with a 429; it returns an
:class:`Admission` that ``Control.settle`` closes exactly once with the real usage and cost,
however the request ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spaceai.catalog import ModelConfig
from spaceai.keys import KeyRecord
from spaceai.types import ChatRequest


@dataclass(slots=True)
class Admission:
    key: KeyRecord
    reserved_nanos: int = 0
    reserved_tokens: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class Control:
    """No limits: every request is admitted (the base for the enforcing implementations)."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def admit(self, key: KeyRecord, model: ModelConfig, req: ChatRequest) -> Admission:
        return Admission(key=key)

    async def settle(self, admission: Admission, total_tokens: int, cost_nanos: int) -> None:
        pass

    async def spend_nanos(self, key: KeyRecord) -> int:
        return key.spend_nanos
