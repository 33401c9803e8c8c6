"""The admin API (/admin/keys, /admin/usage) behind SPACEAI_ADMIN_KEY, and GET /v1/key."""

from __future__ import annotations

import asyncio
import hmac
import re
from datetime import datetime

from spaceai.api.http import Request, Response, json_response
from spaceai.api.schemas import KeyCreate, UsageQuery
from spaceai.auth import request_token
from spaceai.fields import InvalidField, convert
from spaceai.gateway import Gateway
from spaceai.keys import parse_expiry
from spaceai.metering.usage import query_usage
from spaceai.types import GatewayError

_KEY_ID = re.compile(r"key_[0-9a-f]{16}")


def _require_admin(gw: Gateway, request: Request) -> None:
    admin = gw.settings.admin_key
    if not admin:
        raise GatewayError(404, "The admin API is off: set SPACEAI_ADMIN_KEY to turn it on.",
                           code="admin_disabled")
    token = request_token(request) or ""
    if not hmac.compare_digest(token.encode(), admin.encode()):
        raise GatewayError(401, "Incorrect admin key.", code="invalid_api_key")


def unknown_models(gw: Gateway, models: list[str] | None) -> None:
    """A 400 naming ``models`` unless each is a model of the catalog."""
    unknown = [m for m in models or () if gw.catalog.get(m) is None]
    if unknown:
        raise GatewayError(400, f"Unknown models: {', '.join(unknown)[:500]}", param="models",
                           code="invalid_value")


async def create_key(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    body = await request.json(gw.settings.max_body_bytes) if request.header(b"content-length") != "0" else {}
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_type")
    fields = convert(body, KeyCreate)
    unknown_models(gw, fields.models)
    expires = parse_expiry(fields.expires or fields.expires_at)
    secret, record = await asyncio.to_thread(
        gw.keys.create, name=fields.name, models=fields.models, budget=fields.budget,
        rpm=fields.rpm, tpm=fields.tpm, expires_at=expires, budget_period=fields.budget_period,
        log_bodies=fields.log_bodies)
    gw.key_cache.update(record)
    return json_response(201, {**record.to_public(), "key": secret})


async def list_keys(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    records = await asyncio.to_thread(gw.keys.list)
    data = [r.to_public(await gw.control.spend_nanos(r)) for r in records]
    return json_response(200, {"object": "list", "data": data})


async def revoke_key(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    key_id = request.path_params["id"]
    record = None
    if _KEY_ID.fullmatch(key_id):
        record = await asyncio.to_thread(gw.keys.revoke, key_id)
    if record is None:
        raise GatewayError(404, f"No key with id {key_id[:100]!r}.", param="id",
                           code="key_not_found")
    gw.key_cache.update(record)
    return json_response(200, record.to_public())


async def usage_report(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    q = convert({k: v for k, v in request.query.items() if v != ""}, UsageQuery, query=True)
    check_time("since", q.since)
    check_time("until", q.until)
    await asyncio.to_thread(gw.ledger.flush, 5.0)
    report = await asyncio.to_thread(
        query_usage, gw.engine, key_id=q.key, model=q.model, since=q.since, until=q.until,
        limit=q.limit, offset=q.offset)
    return json_response(200, report)


def check_time(name: str, value: str | None) -> None:
    """A 400 naming ``name`` unless ``value`` is absent or an ISO 8601 date or time."""
    if value:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidField(f"Invalid '{name}': expected an ISO 8601 date or time, got "
                               f"{value[:100]!r}.", name) from None


async def own_key(gw: Gateway, request: Request) -> Response:
    key = await gw.key_cache.authenticate(request_token(request))
    return json_response(200, key.to_public(await gw.control.spend_nanos(key)))
