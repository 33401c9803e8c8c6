"""API keys: creation, listing, revocation. Only a SHA-256 hash of a key is ever stored."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from spaceai.fields import InvalidField, convert
from spaceai.storage.tables import NANOS_PER_USD, api_keys

KEY_PREFIX = "sk-space-"
_SHOWN_PREFIX_LEN = len(KEY_PREFIX) + 6


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def usd_to_nanos(usd: float) -> int:
    return round(float(usd) * NANOS_PER_USD)


def nanos_to_usd(nanos: int | None) -> float | None:
    return None if nanos is None else round(nanos / NANOS_PER_USD, 9)


def now() -> datetime:
    return datetime.now(UTC)


# a duration's number per unit: at most about a hundred years ahead
_MAX_DURATION = {"d": 36_500, "h": 36_500 * 24, "m": 36_500 * 24 * 60}
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_expiry(value: str | None) -> datetime | None:
    """``30d``, ``12h``, ``45m`` from now, or an ISO 8601 date/time (an :class:`InvalidField`
    naming ``expires`` otherwise)."""
    if not value:
        return None
    m = re.fullmatch(r"\s*(\d{1,12})\s*([dhm])\s*", value)
    if m:
        n, unit = int(m.group(1)), m.group(2)
        if n > _MAX_DURATION[unit]:
            raise InvalidField(f"expires: a duration of at most {_MAX_DURATION[unit]}{unit} "
                               f"(about a hundred years), got {value.strip()!r}", "expires")
        return now() + timedelta(**{_UNITS[unit]: n})
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidField(f"expires: expected ISO 8601 or a duration like 30d, got "
                           f"{value[:100]!r}", "expires") from None


def parse_thresholds(value: Any) -> list[int] | None:
    """Budget alert thresholds in percent (``"50,80,100"`` or a list), sorted; None for none."""
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError("alert_thresholds: a list of percentages, like [50, 80, 100]")
    out = set()
    for item in items:
        try:
            n = int(str(item).strip())
        except ValueError:
            raise ValueError(f"alert_thresholds: {item!r} is not a whole percentage") from None
        if isinstance(item, bool) or not 1 <= n <= 1000:
            raise ValueError("alert_thresholds: each must be between 1 and 1000 (percent)")
        out.add(n)
    return sorted(out) or None


def _aware(dt: datetime | None) -> datetime | None:
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt


@dataclass(slots=True)
class KeyRecord:
    """What the gateway knows about one key (never the secret itself)."""

    id: str
    name: str | None
    key_hash: str
    prefix: str
    models: frozenset[str] | None
    budget_nanos: int | None
    budget_period: str | None
    spend_nanos: int
    period_start: datetime | None
    rpm: int | None
    tpm: int | None
    expires_at: datetime | None
    revoked: bool
    created_at: datetime
    updated_at: datetime
    alert_thresholds: tuple[int, ...] | None = None  # percent; None: the gateway's default
    log_bodies: bool | None = None  # store its bodies; None: the gateway's SPACEAI_LOG_BODIES

    @classmethod
    def from_row(cls, row: Any) -> KeyRecord:
        m = row.models
        return cls(
            id=row.id,
            name=row.name,
            key_hash=row.key_hash,
            prefix=row.prefix,
            models=frozenset(m) if m is not None else None,
            budget_nanos=row.budget_nanos,
            budget_period=row.budget_period,
            spend_nanos=int(row.spend_nanos or 0),
            period_start=_aware(row.period_start),
            rpm=row.rpm,
            tpm=row.tpm,
            expires_at=_aware(row.expires_at),
            revoked=bool(row.revoked),
            created_at=_aware(row.created_at),
            updated_at=_aware(row.updated_at),
            alert_thresholds=tuple(row.alert_thresholds) if row.alert_thresholds else None,
            log_bodies=getattr(row, "log_bodies", None),
        )

    def is_expired(self, at: datetime | None = None) -> bool:
        return self.expires_at is not None and (at or now()) >= self.expires_at

    def to_public(self, spend_nanos: int | None = None) -> dict[str, Any]:
        """The contract's key object (no secret)."""
        spend = self.spend_nanos if spend_nanos is None else spend_nanos
        remaining = None
        if self.budget_nanos is not None:
            remaining = nanos_to_usd(max(0, self.budget_nanos - spend))
        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "prefix": self.prefix,
            "models": sorted(self.models) if self.models is not None else None,
            "budget": nanos_to_usd(self.budget_nanos),
            "budget_period": self.budget_period,
            "spend": nanos_to_usd(spend),
            "remaining": remaining,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked": self.revoked,
            "created_at": self.created_at.isoformat(),
            "alert_thresholds": list(self.alert_thresholds) if self.alert_thresholds else None,
            "log_bodies": self.log_bodies,
        }


class KeyStore:
    """Key rows in the database. Blocking calls: run them off the event loop."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create(
        self,
        name: str | None = None,
        models: list[str] | None = None,
        budget: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        expires_at: datetime | None = None,
        budget_period: str | None = None,
        log_bodies: bool | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; returns (secret, record). The secret is not stored anywhere."""
        from spaceai.api.schemas import KeyCreate  # the API's body type: the same rules

        fields = convert({"name": name, "budget": budget, "rpm": rpm, "tpm": tpm,
                          "budget_period": budget_period, "models": models}, KeyCreate)
        name, budget, rpm, tpm = fields.name, fields.budget, fields.rpm, fields.tpm
        models = fields.models
        secret = new_secret()
        ts = now()
        row = {
            "id": "key_" + secrets.token_hex(8),
            "name": name,
            "key_hash": hash_key(secret),
            "prefix": secret[:_SHOWN_PREFIX_LEN],
            "models": sorted(set(models)) if models else None,
            "budget_nanos": usd_to_nanos(budget) if budget is not None else None,
            "budget_period": budget_period,
            "spend_nanos": 0,
            "period_start": ts if budget_period else None,
            "rpm": rpm,
            "tpm": tpm,
            "expires_at": expires_at,
            "revoked": False,
            "created_at": ts,
            "updated_at": ts,
            "log_bodies": log_bodies,
        }
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(**row))
        return secret, self.get(row["id"])  # type: ignore[return-value]

    def get(self, key_id: str) -> KeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
        return KeyRecord.from_row(row) if row else None

    def get_by_hash(self, key_hash: str) -> KeyRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(api_keys).where(api_keys.c.key_hash == key_hash)
            ).first()
        return KeyRecord.from_row(row) if row else None

    def list(self) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
        return [KeyRecord.from_row(r) for r in rows]

    def changed_since(self, since: datetime) -> list[KeyRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).where(api_keys.c.updated_at >= since)).all()
        return [KeyRecord.from_row(r) for r in rows]

    def revoke(self, key_id: str) -> KeyRecord | None:
        with self.engine.begin() as conn:
            res = conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id)
                .values(revoked=True, updated_at=now())
            )
        return self.get(key_id) if res.rowcount else None

    def update(self, key_id: str, **changes: Any) -> KeyRecord | None:
        """Change a key's ``name``, ``models``, ``budget`` (USD), ``rpm``, ``tpm`` or
        ``expires_at``; a value of None removes that limit. None if there is no such key.

        ``updated_at`` moves, so every gateway process's key cache picks the change up within
        its poll interval; budgets and rate limits are read from the cached record at each
        admission, so the new limits hold from the next request on.
        """
        allowed = {"name", "models", "budget", "rpm", "tpm", "expires_at", "alert_thresholds",
                   "log_bodies"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = changes["name"]
        if "models" in changes:
            models = changes["models"]
            values["models"] = sorted(set(models)) if models is not None else None
        if "budget" in changes:
            budget = changes["budget"]
            if budget is not None and budget < 0:
                raise ValueError("budget must be >= 0")
            values["budget_nanos"] = usd_to_nanos(budget) if budget is not None else None
        for label in ("rpm", "tpm"):
            if label in changes:
                v = changes[label]
                if v is not None and v <= 0:
                    raise ValueError(f"{label} must be a positive integer")
                values[label] = v
        if "expires_at" in changes:
            values["expires_at"] = changes["expires_at"]
        if "alert_thresholds" in changes:
            values["alert_thresholds"] = parse_thresholds(changes["alert_thresholds"])
        if "log_bodies" in changes:
            values["log_bodies"] = changes["log_bodies"]
        values["updated_at"] = now()
        with self.engine.begin() as conn:
            res = conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**values))
        return self.get(key_id) if res.rowcount else None
