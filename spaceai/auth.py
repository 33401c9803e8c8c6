"""Authentication of a request's API key, with no database round trip on the hot path.

Keys are cached by hash in memory. A background task reads the keys changed since its last
look (every half second by default), so a key revoked by any process — another worker, the
CLI, the admin API on another host — stops working everywhere within a second.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from datetime import timedelta

from spaceai.background import stop
from spaceai.keys import KeyRecord, KeyStore, hash_key, now
from spaceai.types import GatewayError

log = logging.getLogger("spaceai.auth")

_NEGATIVE_TTL_S = 1.0
_NEGATIVE_MAX = 10_000


def invalid_key(message: str = "Incorrect API key provided.") -> GatewayError:
    return GatewayError(401, message, type="invalid_request_error", code="invalid_api_key")


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def request_token(request) -> str | None:  # noqa: ANN001 - an api.http.Request
    """The key a request carries: ``Authorization: Bearer …`` (OpenAI's clients) or
    ``x-api-key: …`` (Anthropic's), on every endpoint."""
    return bearer_token(request.header(b"authorization")) or (
        (request.header(b"x-api-key") or "").strip() or None)


class KeyCache:
    """Key records by hash, kept fresh by polling the database for changed keys."""

    def __init__(self, store: KeyStore, poll_interval_s: float = 0.5) -> None:
        self.store = store
        self.poll_interval_s = poll_interval_s
        self._by_hash: dict[str, KeyRecord] = {}
        self._unknown: dict[str, float] = {}
        self._watermark = now()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._watermark = now()
        self._task = asyncio.create_task(self._poll_forever())

    async def close(self) -> None:
        await stop(self._task)

    async def authenticate(self, token: str | None) -> KeyRecord:
        """The key record for a bearer token, or a 401 GatewayError."""
        if not token:
            raise invalid_key(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_API_KEY' "
                "or 'x-api-key: YOUR_API_KEY'."
            )
        digest = hash_key(token)
        record = self._by_hash.get(digest)
        if record is None:
            record = await self._load(digest)
        if record is None or not hmac.compare_digest(record.key_hash, digest):
            raise invalid_key()
        if record.revoked:
            raise invalid_key("This API key has been revoked.")
        if record.is_expired():
            raise invalid_key("This API key has expired.")
        return record

    def update(self, record: KeyRecord) -> None:
        """Put a record this process just changed into the cache at once."""
        self._by_hash[record.key_hash] = record
        self._unknown.pop(record.key_hash, None)

    def known(self) -> list[KeyRecord]:
        """Every key this process has served (the cache's records)."""
        return list(self._by_hash.values())

    async def _load(self, digest: str) -> KeyRecord | None:
        seen = self._unknown.get(digest)
        if seen is not None and time.monotonic() - seen < _NEGATIVE_TTL_S:
            return None
        record = await asyncio.to_thread(self.store.get_by_hash, digest)
        if record is None:
            if len(self._unknown) >= _NEGATIVE_MAX:
                self._unknown.clear()
            self._unknown[digest] = time.monotonic()
            return None
        self._by_hash[digest] = record
        return record

    async def refresh(self) -> None:
        """Apply every key change made since the last refresh (by any process)."""
        # overlap the window: clocks of other hosts and commit order are not exact
        since = self._watermark - timedelta(seconds=2)
        started = now()
        changed = await asyncio.to_thread(self.store.changed_since, since)
        for record in changed:
            cached = self._by_hash.get(record.key_hash)
            # a read that began before this process changed the key must not undo the change
            if cached is not None and cached.updated_at <= record.updated_at:
                self._by_hash[record.key_hash] = record
            self._unknown.pop(record.key_hash, None)
        self._watermark = started

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.refresh()
            except Exception:  # noqa: BLE001 - the database may be briefly away; keep polling
                log.warning("key refresh failed", exc_info=True)


def authorize_model(key: KeyRecord, model_id: str, catalog, capability: str):  # noqa: ANN001
    """The catalog model a key may use for ``capability``, or the matching OpenAI error."""
    model = catalog.get(model_id)
    if model is None:
        raise GatewayError(404, f"The model `{model_id}` does not exist or you do not have access "
                           "to it.", type="invalid_request_error", param="model",
                           code="model_not_found")
    if key.models is not None and model_id not in key.models:
        raise GatewayError(403, f"This API key is not allowed to use the model `{model_id}`.",
                           type="permission_error", param="model", code="model_not_allowed")
    if capability not in model.capabilities:
        raise GatewayError(400, f"The model `{model_id}` does not support {capability} "
                           f"(its capabilities: {', '.join(model.capabilities)}).",
                           param="model", code="unsupported_model")
    missing = model.missing_credential()
    if missing and not model.fallbacks:
        raise GatewayError(503, f"The model `{model_id}` is not configured on this gateway: "
                           f"the operator must set {missing}.", type="service_unavailable",
                           code="model_not_configured")
    return model
