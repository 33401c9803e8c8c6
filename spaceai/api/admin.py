"""The admin API (/admin/keys, /admin/usage) behind SPACEAI_ADMIN_KEY, and GET /v1/key."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from spaceai.api.http import Request, Response, json_response
from spaceai.auth import request_token
from spaceai.gateway import Gateway
from spaceai.keys import parse_expiry
from spaceai.metering.usage import query_usage
from spaceai.types import GatewayError


def _require_admin(gw: Gateway, request: Request) -> None:
    admin = gw.settings.admin_key
    if not admin:
        raise GatewayError(404, "The admin API is off: set SPACEAI_ADMIN_KEY to turn it on.",
                           code="admin_disabled")
    token = request_token(request) or ""
    if not hmac.compare_digest(token.encode(), admin.encode()):
        raise GatewayError(401, "Incorrect admin key.", code="invalid_api_key")


def _opt(body: dict, name: str, types: tuple[type, ...]) -> Any:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) and bool not in types or not isinstance(v, types):
        raise GatewayError(400, f"Invalid type for '{name}'.", param=name, code="invalid_type")
    return v


async def create_key(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    body = await request.json(gw.settings.max_body_bytes) if request.header(b"content-length") != "0" else {}
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.")
    models = _opt(body, "models", (list,))
    if models is not None:
        unknown = [m for m in models if not isinstance(m, str) or gw.catalog.get(m) is None]
        if unknown:
            raise GatewayError(400, f"Unknown models: {', '.join(map(str, unknown))}",
                               param="models")
    try:
        expires = parse_expiry(_opt(body, "expires", (str,)) or _opt(body, "expires_at", (str,)))
        secret, record = await asyncio.to_thread(
            gw.keys.create,
            name=_opt(body, "name", (str,)),
            models=models,
            budget=_opt(body, "budget", (int, float)),
            rpm=_opt(body, "rpm", (int,)),
            tpm=_opt(body, "tpm", (int,)),
            expires_at=expires,
            budget_period=_opt(body, "budget_period", (str,)),
        )
    except ValueError as exc:
        raise GatewayError(400, str(exc)) from None
    gw.key_cache.update(record)
    return json_response(201, {**record.to_public(), "key": secret})


async def list_keys(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    records = await asyncio.to_thread(gw.keys.list)
    data = [r.to_public(await gw.control.spend_nanos(r)) for r in records]
    return json_response(200, {"object": "list", "data": data})


async def revoke_key(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    record = await asyncio.to_thread(gw.keys.revoke, request.path_params["id"])
    if record is None:
        raise GatewayError(404, f"No key with id {request.path_params['id']}.", param="id",
                           code="key_not_found")
    gw.key_cache.update(record)
    return json_response(200, record.to_public())


async def usage_report(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    q = request.query
    try:
        limit = int(q.get("limit", 100))
        offset = int(q.get("offset", 0))
    except ValueError:
        raise GatewayError(400, "limit and offset must be integers", param="limit") from None
    await asyncio.to_thread(gw.ledger.flush, 5.0)
    try:
        report = await asyncio.to_thread(
            query_usage, gw.engine, key_id=q.get("key"), model=q.get("model"),
            since=q.get("since"), until=q.get("until"), limit=limit, offset=offset)
    except ValueError as exc:
        raise GatewayError(400, str(exc), param="since") from None
    return json_response(200, report)


async def own_key(gw: Gateway, request: Request) -> Response:
    key = await gw.key_cache.authenticate(request_token(request))
    return json_response(200, key.to_public(await gw.control.spend_nanos(key)))
