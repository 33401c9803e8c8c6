"""GET /metrics: the Prometheus text exposition (see :mod:`spaceai.metrics`)."""

from __future__ import annotations

from spaceai.api.http import Request, Response
from spaceai.gateway import Gateway
from spaceai.metrics import exposition


async def metrics_endpoint(gw: Gateway, request: Request) -> Response:
    body, content_type = exposition()
    return Response(200, body, [(b"content-type", content_type.encode())])
