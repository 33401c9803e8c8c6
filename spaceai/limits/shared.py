"""Budgets and rate limits shared by every gateway process, in Redis.

One Lua script admits a request: it checks the budget (settled spend + outstanding
reservations + this request's maximum cost), the requests and the tokens of the sliding
minute, and takes the reservation, all atomically, in one round trip. Settling runs a second
script; settles are batched in a pipeline off the request path.

Spend is counted once in Redis (``INCRBY`` at settle, by whichever process served the
request) and once in the database (the ledger writer adds each row's cost to
``api_keys.spend_nanos``), so the two agree once the ledgers are flushed and no process ever
counts another's requests. A key's Redis counter is initialised from the database the first
time any process admits a request for it (``SET NX``: the first process wins, the others use
its value). Reservations carry a deadline, so those of a crashed process are released.

Keys without a budget or rate limit never touch Redis; their spend is read from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

import redis.asyncio as aioredis
import sqlalchemy as sa

from spaceai.catalog import ModelConfig
from spaceai.keys import KeyRecord
from spaceai.limits import Admission, Control
from spaceai.limits.policy import (
    WINDOW_MS,
    current_period,
    insufficient_quota,
    is_limited,
    limit_headers,
    rate_limited,
    reservation,
    reservation_ttl_ms,
    spend_in_db,
)
from spaceai.metering.layouts import FIELDS, SpoolRow
from spaceai.metering.ledger import Ledger
from spaceai.types import ChatRequest, GatewayError

log = logging.getLogger("spaceai.limits")

_MONTHLY_TTL_S = 40 * 86400
_KEY_AT, _COST_AT = FIELDS.index("key_id"), FIELDS.index("cost_nanos")
_MAX_CONNECTIONS = 64

# KEYS: 1 spend, 2 reserved total, 3 reservations (id -> nanos), 4 reservation deadlines,
#       5 window (id -> admitted at ms), 6 window tokens (id -> tokens), 7 window token total
# ARGV: 1 id, 2 budget (-1: none), 3 need nanos, 4 rpm (-1), 5 tpm (-1), 6 need tokens,
#       7 reservation ttl ms, 8 window ms
# -> {-1} spend unknown | {0, spend, reserved, count, reset_ms, tokens}
#    {1, spend, reserved} over budget | {2|3, count, reset_ms, tokens, retry_ms} over rpm|tpm
ADMIT = """
local spend = redis.call('GET', KEYS[1])
if not spend then return {-1} end
spend = tonumber(spend)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lost = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, id in ipairs(lost) do
  local n = redis.call('HGET', KEYS[3], id)
  if n then
    redis.call('DECRBY', KEYS[2], n)
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[4], id)
end
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
local budget, need = tonumber(ARGV[2]), tonumber(ARGV[3])
if budget >= 0 and spend + reserved + need > budget then
  return {1, spend, reserved}
end
local rpm, tpm, need_tokens = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local window = tonumber(ARGV[8])
local count, tokens, reset = 0, 0, window
if rpm >= 0 or tpm >= 0 then
  local since = now - window
  local old = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', since)
  for _, id in ipairs(old) do
    local n = redis.call('HGET', KEYS[6], id)
    if n then
      redis.call('DECRBY', KEYS[7], n)
      redis.call('HDEL', KEYS[6], id)
    end
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', since) end
  count = redis.call('ZCARD', KEYS[5])
  tokens = tonumber(redis.call('GET', KEYS[7]) or '0')
  local oldest = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if oldest[2] then reset = tonumber(oldest[2]) + window - now end
  if rpm >= 0 and count + 1 > rpm then
    return {2, count, reset, tokens, reset}
  end
  if tpm >= 0 and tokens + need_tokens > tpm then
    local excess = tokens + need_tokens - tpm
    local retry = reset
    local entries = redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      excess = excess - tonumber(redis.call('HGET', KEYS[6], entries[i]) or '0')
      if excess <= 0 then
        retry = tonumber(entries[i + 1]) + window - now
        break
      end
    end
    return {3, count, reset, tokens, retry}
  end
  redis.call('ZADD', KEYS[5], now, ARGV[1])
  redis.call('HSET', KEYS[6], ARGV[1], need_tokens)
  redis.call('INCRBY', KEYS[7], need_tokens)
  for i = 5, 7 do redis.call('PEXPIRE', KEYS[i], window + 1000) end
  count, tokens = count + 1, tokens + need_tokens
  if not oldest[2] then reset = window end
end
if need > 0 then
  local ttl = tonumber(ARGV[7])
  redis.call('INCRBY', KEYS[2], need)
  redis.call('HSET', KEYS[3], ARGV[1], need)
  redis.call('ZADD', KEYS[4], now + ttl, ARGV[1])
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ttl + 60000) end
  reserved = reserved + need
end
return {0, spend, reserved, count, reset, tokens}
"""

# KEYS: as ADMIT.  ARGV: 1 id, 2 cost nanos, 3 actual tokens
SETTLE = """
local n = redis.call('HGET', KEYS[3], ARGV[1])
if n then
  redis.call('DECRBY', KEYS[2], n)
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
end
local cost = tonumber(ARGV[2])
if cost > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], cost)
end
local t = redis.call('HGET', KEYS[6], ARGV[1])
if t then
  local actual = tonumber(ARGV[3])
  redis.call('HSET', KEYS[6], ARGV[1], actual)
  redis.call('INCRBY', KEYS[7], actual - tonumber(t))
end
return 0
"""

# a row recovered from a dead process's spool: settled only if its reservation is still open
# (the dead process did not settle it), so it is counted exactly once.  KEYS: as ADMIT.
# ARGV: 1 id, 2 cost nanos
RECOVER = """
local n = redis.call('HGET', KEYS[3], ARGV[1])
if not n then return 0 end
redis.call('DECRBY', KEYS[2], n)
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local cost = tonumber(ARGV[2])
if cost > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], cost)
end
return 1
"""


def redis_keys(key_id: str, period: str) -> list[str]:
    """The Redis keys of one API key (one hash slot, so a cluster can run the scripts)."""
    base = f"spaceai:{{{key_id}}}:"
    return [base + "spend:" + period, base + "reserved", base + "reservations",
            base + "deadlines", base + "window", base + "window_tokens",
            base + "window_total"]


class RedisControl(Control):
    """Budgets and sliding-minute rpm/tpm limits that hold across processes and hosts."""

    def __init__(self, url: str, engine: sa.Engine, ledger: Ledger | None = None) -> None:
        self.url = url
        self.engine = engine
        self.ledger = ledger
        # a bounded pool that makes a burst wait for a connection rather than fail
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=_MAX_CONNECTIONS, timeout=5.0, socket_connect_timeout=2.0,
            socket_timeout=5.0)
        self.redis = aioredis.Redis(connection_pool=pool)
        self._admit = self.redis.register_script(ADMIT)
        self._settle = self.redis.register_script(SETTLE)
        self._recover = self.redis.register_script(RECOVER)
        self._pending: list[tuple[list[str], list]] = []
        self._flusher: asyncio.Task | None = None

    async def start(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.drain()
        await self.redis.aclose()

    async def health(self) -> dict[str, str]:
        try:
            await asyncio.wait_for(self.redis.ping(), 2.0)
            return {"redis": "ok"}
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return {"redis": f"error: {type(exc).__name__}"}

    async def admit(self, key: KeyRecord, model: ModelConfig, req: ChatRequest,
                    chain: Sequence[ModelConfig] = ()) -> Admission:
        if not is_limited(key):
            return Admission(key=key)
        period = current_period(key)
        keys = redis_keys(key.id, period)
        need_nanos, need_tokens = reservation(model, req, chain)
        ident = os.urandom(8).hex()
        args = [ident, -1 if key.budget_nanos is None else key.budget_nanos, need_nanos,
                -1 if key.rpm is None else key.rpm, -1 if key.tpm is None else key.tpm,
                need_tokens, reservation_ttl_ms(model), WINDOW_MS]
        try:
            result = await self._admit(keys, args)
            if result[0] == -1:
                await self._initialise(key, keys[0], period)
                result = await self._admit(keys, args)
        except (aioredis.RedisError, OSError) as exc:
            log.error("redis unavailable for admission: %s", exc)
            raise GatewayError(503, "The gateway cannot check budgets and rate limits right now "
                               "(its Redis is unavailable); try again shortly.",
                               type="service_unavailable", code="limits_unavailable") from None
        code = int(result[0])
        if code == 0:
            _, spend, reserved, count, reset, tokens = (int(v) for v in result)
            return Admission(key=key, reserved_nanos=need_nanos, reserved_tokens=need_tokens,
                             headers=limit_headers(key, count, reset, tokens, reset),
                             id=ident, period=period, handle=keys)
        if code == 1:
            raise insufficient_quota(key, int(result[1]), int(result[2]), need_nanos)
        _, count, reset, tokens, retry = (int(v) for v in result)
        headers = limit_headers(key, count, reset, tokens, retry if code == 3 else reset)
        if code == 2:
            raise rate_limited("requests", key.rpm, count, 1, reset, headers)
        raise rate_limited("tokens", key.tpm, tokens, need_tokens, retry, headers)

    async def _initialise(self, key: KeyRecord, spend_key: str, period: str) -> None:
        """Seed the key's Redis spend from the database; the first process to do it wins."""
        spend = await asyncio.to_thread(spend_in_db, self.engine, key.id, period)
        await self.redis.set(spend_key, spend, nx=True,
                             ex=_MONTHLY_TTL_S if period != "all" else None)

    async def settle(self, admission: Admission, total_tokens: int, cost_nanos: int) -> None:
        if admission.handle is None:
            return
        self._pending.append((admission.handle, [admission.id, cost_nanos, total_tokens]))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        """Send every queued settle in one pipeline, until none is left."""
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for keys, args in batch:
                        await self._settle(keys, args, client=pipe)
                    await pipe.execute()
            except Exception:  # noqa: BLE001 - never retried: a resend could count twice
                log.exception("lost %d settles (Redis error); reservations expire by deadline",
                              len(batch))

    async def recover(self, rows: list[SpoolRow]) -> None:
        settled = 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for values, reservation in rows:
                if reservation is None or not reservation[0] or not values[_KEY_AT]:
                    continue
                admission_id, period = reservation
                await self._recover(redis_keys(values[_KEY_AT], period),
                                    [admission_id, int(values[_COST_AT] or 0)], client=pipe)
            if len(pipe):
                settled = sum(int(r) for r in await pipe.execute())
        if settled:
            log.warning("settled %d budget reservations a dead process left open", settled)

    async def drain(self) -> None:
        """Wait until every settle queued so far reached Redis."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def spend_nanos(self, key: KeyRecord) -> int:
        period = current_period(key)
        if is_limited(key):
            await self.drain()
            value = await self.redis.get(redis_keys(key.id, period)[0])
            if value is not None:
                return int(value)
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.flush, 5.0)
        return await asyncio.to_thread(spend_in_db, self.engine, key.id, period)
