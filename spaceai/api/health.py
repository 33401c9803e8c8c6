"""GET /health/live and GET /health/ready."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from spaceai.api.http import Request, Response, json_response
from spaceai.gateway import Gateway


async def live(gw: Gateway, request: Request) -> Response:
    return json_response(200, {"status": "ok"})


def _db_ok(gw: Gateway) -> bool:
    with gw.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return True


async def ready(gw: Gateway, request: Request) -> Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(asyncio.to_thread(_db_ok, gw), 2.0)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    extra = getattr(gw.control, "health", None)
    if extra is not None:
        checks.update(await extra())
    ledger = gw.ledger.health()
    checks["ledger"] = ledger["writer"]
    ok = gw.ready and all(v == "ok" for v in checks.values())
    checks["gateway"] = "ok" if gw.ready else "starting"
    return json_response(200 if ok else 503, {"status": "ok" if ok else "unavailable",
                                              "checks": checks, "ledger": ledger})
