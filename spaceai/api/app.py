"""The ASGI application: routing, request ids, errors, start-up and shutdown.

The path of a request: ``app`` (routing) -> ``api/<endpoint>`` -> ``auth`` -> ``limits`` ->
``router`` -> ``providers/<name>`` -> back through ``metering``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from spaceai.api import (
    admin,
    completions,
    console,
    embeddings,
    health,
    messages,
    metered,
    models,
    responses,
)
from spaceai.api.http import ClientGone, Request, error_response, head_response
from spaceai.api.metrics import metrics_endpoint
from spaceai.api.openapi import openapi_response
from spaceai.api.pages import docs_page, static_file
from spaceai.config import Settings
from spaceai.gateway import Gateway
from spaceai.logs import ACCESS, access, configure_from_env
from spaceai.types import GatewayError

log = logging.getLogger("spaceai.api")

Handler = Callable[[Gateway, Request], Awaitable[object]]

ROUTES: dict[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): completions.chat_completions,
    ("POST", "/v1/completions"): completions.completions,
    ("POST", "/v1/messages"): messages.messages,
    ("POST", "/v1/messages/count_tokens"): messages.count_tokens,
    ("POST", "/v1/embeddings"): embeddings.embeddings,
    ("POST", "/v1/responses"): responses.create_response,
    ("GET", "/v1/models"): models.list_models,
    ("GET", "/v1/key"): admin.own_key,
    ("GET", "/admin/keys"): admin.list_keys,
    ("POST", "/admin/keys"): admin.create_key,
    ("GET", "/admin/usage"): admin.usage_report,
    ("GET", "/health/live"): health.live,
    ("GET", "/health/ready"): health.ready,
    ("GET", "/api/hello"): health.live,  # Claude Code's connectivity check (HEAD) at start
    ("GET", "/metrics"): metrics_endpoint,
    ("GET", "/openapi.json"): openapi_response,
    ("GET", "/"): docs_page,
    ("GET", "/console"): console.console_page,
    ("GET", "/admin/overview"): console.overview,
    ("GET", "/admin/requests"): console.requests,
    ("GET", "/admin/models"): console.models,
    ("GET", "/admin/keys/activity"): console.key_activity,
    ("GET", "/admin/alerts"): console.alerts,
    ("POST", "/admin/reports/daily"): console.daily_report,
}
# routes with one trailing path parameter: (method, prefix) -> (handler, parameter name)
PREFIX_ROUTES: dict[tuple[str, str], tuple[Handler, str]] = {
    ("GET", "/v1/models/"): (models.get_model, "id"),
    ("DELETE", "/admin/keys/"): (admin.revoke_key, "id"),
    ("GET", "/v1/responses/"): (responses.get_response, "id"),  # also {id}/input_items
    ("DELETE", "/v1/responses/"): (responses.delete_response, "id"),
    ("GET", "/static/"): (static_file, "path"),
    ("PATCH", "/admin/keys/"): (console.update_key, "id"),
    ("GET", "/admin/requests/"): (console.request_bodies, "id"),  # {request_id}/bodies
    ("GET", "/console/"): (console.console_file, "path"),
}


def _route(method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
    """(handler, path params, whether the path exists for another method)."""
    handler = ROUTES.get((method, path))
    if handler is not None:
        return handler, {}, False
    if len(path) > 1 and path.endswith("/"):
        handler = ROUTES.get((method, path.rstrip("/")))
        if handler is not None:
            return handler, {}, False
    for (m, prefix), (h, name) in PREFIX_ROUTES.items():
        if m == method and path.startswith(prefix) and len(path) > len(prefix):
            return h, {name: path[len(prefix):]}, False
    other = any(p == path for (_, p) in ROUTES) or any(
        path.startswith(p) and len(path) > len(p) for (_, p) in PREFIX_ROUTES)
    return None, {}, other


class App:
    """The SpaceAI ASGI application."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gw.start()
                except Exception as exc:  # noqa: BLE001
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gw.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: dict, receive: Callable, send: Callable) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        rid = request.request_id.encode()
        head = request.method == "HEAD"  # every GET route answers HEAD, without the body
        handler, params, other_method = _route("GET" if head else request.method, request.path)
        error: GatewayError | None = None
        try:
            if handler is None:
                if other_method:
                    raise GatewayError(405, f"Method {request.method} is not allowed on "
                                       f"{request.path}.", code="method_not_allowed")
                raise GatewayError(404, f"Unknown request URL: {request.method} {request.path}.",
                                   code="unknown_url")
            request.path_params = params
            response = await handler(self.gw, request)
        except GatewayError as exc:
            await metered.settle_unfinished(exc)
            error = exc
        except ClientGone:
            self._finished(request, 499, started)
            return
        except Exception as exc:  # noqa: BLE001 - never leak a traceback to a client
            log.exception("unhandled error on %s %s", request.method, request.path)
            await metered.settle_unfinished(exc)
            error = GatewayError(500, f"The server had an error processing your request "
                                 f"(request id {request.request_id}).", type="server_error")
        anthropic = request.path.startswith("/v1/messages")
        if error is not None:  # in the caller's shape: Anthropic's on its own surface
            response = (messages.anthropic_error_response(error) if anthropic
                        else error_response(error))
        response.headers.append((b"x-request-id", rid))
        if anthropic:
            response.headers.append((b"request-id", rid))  # what Anthropic's clients read
        if head:
            response = head_response(response)
        await response.send(send, receive)
        self._finished(request, response.status, started, error)

    def _finished(self, request: Request, status: int, started: float,
                  error: GatewayError | None = None) -> None:
        """The request's access line (saying why, when it failed) and span, when they are on."""
        # a failed answer (4xx/5xx) is a warning, so the default level shows failing clients
        if ACCESS.isEnabledFor(logging.WARNING if status >= 400 else logging.INFO):
            access(request.method, request.path, status, started, request.request_id,
                   request.scope.get("client"), error and f"{error.code or error.type}: "
                   f"{error.message}")
        tracer = self.gw.telemetry
        if tracer is not None:
            started_ns = time.time_ns() - int((time.perf_counter() - started) * 1e9)
            tracer.end_request(request.request_id, request.method, request.path, status,
                               started_ns, request.header(b"traceparent"))


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> App:
    """The application for ``settings`` (default: from the environment)."""
    return App(gateway or Gateway(settings or Settings.load()))


def app_factory() -> App:
    """Entry point for uvicorn's ``--factory`` (each worker builds its own gateway)."""
    settings = Settings.load()
    configure_from_env(settings.secrets())
    return create_app(settings)


