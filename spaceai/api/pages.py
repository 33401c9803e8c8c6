"""GET / (the documentation page with the playground) and its static files."""

from __future__ import annotations

from spaceai.api.http import Request, Response
from spaceai.gateway import Gateway
from spaceai.types import GatewayError


def _page_models(gw: Gateway) -> list[dict]:
    return [{**m.to_openai(), "provider": m.provider} for m in gw.catalog]


async def docs_page(gw: Gateway, request: Request) -> Response:
    from spaceai.api.docs import render_page

    body = render_page(_page_models(gw), request.base_url())
    return Response(200, body, [(b"content-type", b"text/html; charset=utf-8"),
                                (b"cache-control", b"no-cache")])


async def static_file(gw: Gateway, request: Request) -> Response:
    from spaceai.api.docs import STATIC_FILES

    found = STATIC_FILES.get("/static/" + request.path_params["path"])
    if found is None:
        raise GatewayError(404, f"No static file {request.path}.", code="not_found")
    content, content_type = found
    return Response(200, content, [(b"content-type", content_type.encode()),
                                   (b"cache-control", b"public, max-age=300")])
