"""The operator console at /console and the admin endpoints it reads and edits with.

``GET /admin/overview``, ``GET /admin/requests``, ``GET /admin/models``,
``GET /admin/keys/activity``, ``GET /admin/alerts`` and ``PATCH /admin/keys/{id}``, all behind SPACEAI_ADMIN_KEY.
The page itself is static (``console_ui/``): it asks for the admin key and keeps it in the
tab's sessionStorage, sending it only to this server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from msgspec import UNSET

from spaceai.api.admin import _require_admin, unknown_models
from spaceai.api.http import Request, Response, json_response
from spaceai.api.schemas import KeyUpdate
from spaceai.fields import convert
from spaceai.gateway import Gateway
from spaceai.keys import parse_expiry
from spaceai.metering import overview as views
from spaceai.types import GatewayError

_UI = Path(__file__).with_name("console_ui")
_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}
FILES: dict[str, tuple[bytes, str]] = {
    p.name: (p.read_bytes(), _TYPES[p.suffix]) for p in sorted(_UI.iterdir())
    if p.suffix in _TYPES}
_SECURITY_HEADERS = [
    (b"cache-control", b"no-cache"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
]


async def console_page(gw: Gateway, request: Request) -> Response:
    content, content_type = FILES["console.html"]
    return Response(200, content, [(b"content-type", content_type.encode()), *_SECURITY_HEADERS])


async def console_file(gw: Gateway, request: Request) -> Response:
    found = FILES.get(request.path_params["path"])
    if found is None or found[1].startswith("text/html"):
        raise GatewayError(404, f"No console file {request.path}.", code="not_found")
    content, content_type = found
    return Response(200, content, [(b"content-type", content_type.encode()),
                                   (b"cache-control", b"no-cache")])


async def overview(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    q = request.query
    await asyncio.to_thread(gw.ledger.flush, 5.0)
    try:
        report = await asyncio.to_thread(
            views.overview, gw.engine, window=q.get("window") or "24h",
            bucket=q.get("bucket") or None, key_id=q.get("key") or None,
            model=q.get("model") or None, split=q.get("split") or None)
    except ValueError as exc:
        raise GatewayError(400, str(exc), param="window") from None
    return json_response(200, report)


def _int_param(q: dict, name: str, default: int | None) -> int | None:
    value = q.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise GatewayError(400, f"'{name}' must be an integer.", param=name) from None


async def requests(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    q = request.query
    limit = _int_param(q, "limit", 50)
    before = _int_param(q, "before", None)
    await asyncio.to_thread(gw.ledger.flush, 5.0)
    try:
        report = await asyncio.to_thread(
            views.request_log, gw.engine, key_id=q.get("key") or None,
            model=q.get("model") or None, status=q.get("status") or None,
            since=q.get("since") or None, until=q.get("until") or None, before=before,
            limit=limit)
    except ValueError as exc:
        raise GatewayError(400, str(exc), param="since") from None
    return json_response(200, report)


async def models(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    data = []
    for m in gw.catalog:
        missing = m.missing_credential()
        data.append({**m.to_openai(), "provider": m.provider, "configured": missing is None,
                     "missing": missing, "fallbacks": list(m.fallbacks),
                     "deployments": gw.router.health(m.id)})
    return json_response(200, {"object": "list", "data": data})


async def key_activity(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    await asyncio.to_thread(gw.ledger.flush, 5.0)
    used = await asyncio.to_thread(views.last_used, gw.engine)
    return json_response(200, {"object": "list", "data": [
        {"id": key_id, "last_used_at": at} for key_id, at in used.items()]})


async def alerts(gw: Gateway, request: Request) -> Response:
    _require_admin(gw, request)
    from spaceai.alerts import list_alerts

    data = await asyncio.to_thread(list_alerts, gw.engine)
    return json_response(200, {"object": "list", "data": data,
                               "webhook": bool(gw.settings.alert_webhook),
                               "default_thresholds": gw.settings.alert_thresholds})


async def daily_report(gw: Gateway, request: Request) -> Response:
    """POST /admin/reports/daily?day=YYYY-MM-DD[&again=true]: send that UTC day's spend report
    to the alert webhook now (default: yesterday), unless one was sent already."""
    _require_admin(gw, request)
    from datetime import date, timedelta

    from spaceai.keys import now

    if gw.alerts is None:
        raise GatewayError(400, "No alert webhook is configured: set SPACEAI_ALERT_WEBHOOK.",
                           param=None, code="no_webhook")
    q = request.query
    raw = q.get("day") or (now().date() - timedelta(days=1)).isoformat()
    try:
        day = date.fromisoformat(raw) if len(raw) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise GatewayError(400, f"Invalid 'day': expected a date such as 2026-11-25, but got "
                           f"{raw[:40]!r}.", param="day", code="invalid_value")
    again = q.get("again", "false").lower()
    if again not in ("true", "false", "1", "0"):
        raise GatewayError(400, "Invalid 'again': expected true or false.", param="again",
                           code="invalid_value")
    await asyncio.to_thread(gw.ledger.flush, 5.0)
    sent = await gw.alerts.report(day, again=again in ("true", "1"))
    return json_response(200, {"day": day.isoformat(), "sent": sent})


async def request_bodies(gw: Gateway, request: Request) -> Response:
    """GET /admin/requests/{request_id}/bodies: the request's logged bodies (``logged`` false
    and nulls when there are none)."""
    _require_admin(gw, request)
    rest = request.path_params["id"]
    request_id, _, tail = rest.partition("/")
    if tail != "bodies" or not request_id or len(request_id) > 64:
        raise GatewayError(404, f"Unknown request URL: GET {request.path}.", code="unknown_url")
    await gw.bodies.flush()
    found = await asyncio.to_thread(gw.bodies.get, request_id)
    if found is None:  # not logged (off for its key, purged, or no such request)
        found = {"object": "request.bodies", "request_id": request_id, "logged": False,
                 "key_id": None, "request": None, "response": None, "created_at": None}
    return json_response(200, found)


async def update_key(gw: Gateway, request: Request) -> Response:
    """PATCH /admin/keys/{id}: change the fields given; null removes a limit."""
    _require_admin(gw, request)
    body = convert(await request.json(gw.settings.max_body_bytes), KeyUpdate)
    changes: dict[str, Any] = {name: value for name in ("name", "models", "budget", "rpm", "tpm",
                                                        "alert_thresholds", "log_bodies")
                               if (value := getattr(body, name)) is not UNSET}
    if isinstance(body.models, list):
        unknown_models(gw, body.models)
    for name in ("expires", "expires_at"):
        expires = getattr(body, name)
        if expires is not UNSET:
            try:
                changes["expires_at"] = parse_expiry(expires)
            except ValueError as exc:
                raise GatewayError(400, str(exc), param=name) from None
    try:
        record = await asyncio.to_thread(gw.keys.update, request.path_params["id"], **changes)
    except ValueError as exc:
        raise GatewayError(400, str(exc)) from None
    if record is None:
        raise GatewayError(404, f"No key with id {request.path_params['id']}.", param="id",
                           code="key_not_found")
    gw.key_cache.update(record)
    return json_response(200, record.to_public(await gw.control.spend_nanos(record)))
