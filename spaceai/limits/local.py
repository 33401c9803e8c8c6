"""Budgets and rate limits for a single gateway process, in plain integers.

The event loop runs one coroutine at a time, so the check and the reservation in
:meth:`LocalControl.admit` (no ``await`` between them) are atomic without a lock: however
many requests race, the reserved plus the settled spend never passes the budget.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Sequence

import sqlalchemy as sa

from spaceai.catalog import ModelConfig
from spaceai.keys import KeyRecord
from spaceai.limits import Admission, Control
from spaceai.limits.policy import (
    WINDOW_MS,
    current_period,
    insufficient_quota,
    limit_headers,
    rate_limited,
    reservation,
    spend_in_db,
)
from spaceai.metering.ledger import Ledger
from spaceai.types import ChatRequest


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class _KeyState:
    """One key's spend, outstanding reservations and sliding minute of admissions."""

    __slots__ = ("period", "spend", "reserved", "window", "tokens")

    def __init__(self, period: str, spend: int) -> None:
        self.period = period
        self.spend = spend
        self.reserved = 0
        # entries [admitted_at_ms, tokens, in_window]; tokens are corrected at settle
        self.window: deque[list] = deque()
        self.tokens = 0

    def prune(self, now: int) -> None:
        since = now - WINDOW_MS
        window = self.window
        while window and window[0][0] <= since:
            entry = window.popleft()
            entry[2] = False
            self.tokens -= entry[1]

    def reset_ms(self, now: int) -> int:
        return self.window[0][0] + WINDOW_MS - now if self.window else WINDOW_MS

    def tokens_retry_ms(self, now: int, need: int, limit: int) -> int:
        """Time until enough tokens leave the window for ``need`` more to fit."""
        excess = self.tokens + need - limit
        for at, tokens, _ in self.window:
            excess -= tokens
            if excess <= 0:
                return at + WINDOW_MS - now
        return self.reset_ms(now)


class LocalControl(Control):
    """In-process budgets (reserve, then settle) and sliding-minute rpm/tpm limits."""

    def __init__(self, engine: sa.Engine, ledger: Ledger | None = None) -> None:
        self.engine = engine
        self.ledger = ledger
        self._states: dict[str, _KeyState] = {}
        self._loading: dict[tuple[str, str], asyncio.Future] = {}

    async def _state(self, key: KeyRecord, period: str) -> _KeyState:
        """The key's state for ``period``, reading its recorded spend once per process."""
        ident = (key.id, period)
        pending = self._loading.get(ident)
        if pending is None:
            pending = asyncio.ensure_future(
                asyncio.to_thread(spend_in_db, self.engine, key.id, period))
            self._loading[ident] = pending
        try:
            spend = await asyncio.shield(pending)
        finally:
            if pending.done():
                self._loading.pop(ident, None)
        state = self._states.get(key.id)
        if state is None:
            state = self._states[key.id] = _KeyState(period, spend)
        elif state.period != period:  # a new month: outstanding reservations carry over
            state.period, state.spend = period, spend
        return state

    async def admit(self, key: KeyRecord, model: ModelConfig, req: ChatRequest,
                    chain: Sequence[ModelConfig] = ()) -> Admission:
        period = current_period(key)
        state = self._states.get(key.id)
        if state is None or state.period != period:
            state = await self._state(key, period)
        # from here to the return: no await, so the check and the reservation are atomic
        need_nanos, need_tokens = reservation(model, req, chain)
        budget = key.budget_nanos
        if budget is not None and state.spend + state.reserved + need_nanos > budget:
            raise insufficient_quota(key, state.spend, state.reserved, need_nanos)
        entry = None
        headers: list[tuple[bytes, bytes]] = []
        if key.rpm is not None or key.tpm is not None:
            now = _now_ms()
            state.prune(now)
            count = len(state.window)
            if key.rpm is not None and count + 1 > key.rpm:
                reset = state.reset_ms(now)
                raise rate_limited("requests", key.rpm, count, 1, reset, limit_headers(
                    key, count, reset, state.tokens, reset))
            if key.tpm is not None and state.tokens + need_tokens > key.tpm:
                reset = state.reset_ms(now)
                retry = state.tokens_retry_ms(now, need_tokens, key.tpm)
                raise rate_limited("tokens", key.tpm, state.tokens, need_tokens, retry,
                                   limit_headers(key, count, reset, state.tokens, retry))
            entry = [now, need_tokens, True]
            state.window.append(entry)
            state.tokens += need_tokens
            reset = state.reset_ms(now)
            headers = limit_headers(key, count + 1, reset, state.tokens, reset)
        state.reserved += need_nanos
        return Admission(key=key, reserved_nanos=need_nanos, reserved_tokens=need_tokens,
                         headers=headers, id=os.urandom(8).hex(), period=period, handle=entry)

    async def settle(self, admission: Admission, total_tokens: int, cost_nanos: int) -> None:
        state = self._states.get(admission.key.id)
        if state is None:
            return
        state.reserved -= admission.reserved_nanos
        if state.period == admission.period:
            state.spend += cost_nanos
        entry = admission.handle
        if entry is not None and entry[2]:
            state.tokens += total_tokens - entry[1]
            entry[1] = total_tokens

    async def spend_nanos(self, key: KeyRecord) -> int:
        period = current_period(key)
        state = self._states.get(key.id)
        if state is not None and state.period == period:
            return state.spend
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.flush, 5.0)
        return (await self._state(key, period)).spend

    def outstanding_nanos(self, key_id: str) -> int:
        """Reserved and not yet settled (0 once every request of the key has ended)."""
        state = self._states.get(key_id)
        return state.reserved if state else 0
