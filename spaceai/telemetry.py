"""OpenTelemetry traces: one span per request, exported over OTLP/HTTP (JSON), no SDK needed.

On only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is
set; otherwise :func:`from_env` returns None and the request path pays one ``is None`` test.

Each request's span is a SERVER span named ``{operation} {model}`` (``chat gpt-4o``) with the
GenAI semantic conventions (``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``) plus ``spaceai.cost_usd``, the key id and the HTTP fields; a
request that calls no model (``/v1/models``, admin, health) gets a span named after its method
and path. An incoming W3C ``traceparent`` makes the span its child. Spans are queued and sent in
batches by a background thread (``OTEL_EXPORTER_OTLP_HEADERS`` adds headers, ``OTEL_SERVICE_NAME``
names the service); a collector that is away costs dropped spans, never a slow request.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
import urllib.request
from typing import Any

import orjson

from spaceai import __version__

log = logging.getLogger("spaceai.telemetry")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_OPERATIONS = {"/v1/chat/completions": "chat", "/v1/messages": "chat",
               "/v1/completions": "text_completion", "/v1/embeddings": "embeddings",
               "/v1/responses": "chat"}
SERVER = 2
STATUS_OK, STATUS_ERROR = 1, 2
MAX_QUEUE = 10_000


def _attr(key: str, value: Any) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _headers(raw: str) -> dict[str, str]:
    out = {}
    for part in raw.split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            out[name.strip()] = urllib.request.unquote(value.strip())
    return out


class Tracer:
    """Builds request spans and exports them in batches from a background thread."""

    def __init__(self, url: str, headers: dict[str, str] | None = None,
                 service: str = "spaceai", interval_s: float = 0.5, batch: int = 512) -> None:
        self.url = url
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.resource = {"attributes": [_attr("service.name", service),
                                        _attr("service.version", __version__),
                                        _attr("telemetry.sdk.name", "spaceai")]}
        self.interval_s = interval_s
        self.batch = batch
        self._usage: dict[str, Any] = {}  # request id -> its usage row, until the span ends
        self._queue: queue.Queue = queue.Queue(MAX_QUEUE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.exported = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spaceai-otlp", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ------------------------------------------------------------------ the request path

    def note_usage(self, record: Any) -> None:
        """Keep a request's usage row for its span (called by the ledger as it records it)."""
        if len(self._usage) >= MAX_QUEUE:  # rows whose request never ended here
            self._usage.clear()
        self._usage[record.request_id] = record

    def end_request(self, request_id: str, method: str, path: str, status: int,
                    started_ns: int, traceparent: str | None) -> None:
        """Queue the span of a finished request."""
        end = time.time_ns()
        usage = self._usage.pop(request_id, None)
        parent = _TRACEPARENT.match(traceparent or "")
        trace_id = parent.group(1) if parent else os.urandom(16).hex()
        attrs = [_attr("http.request.method", method), _attr("url.path", path),
                 _attr("http.response.status_code", status),
                 _attr("spaceai.request_id", request_id)]
        name = f"{method} {path}"
        failed = status >= 500
        if usage is not None:
            operation = _OPERATIONS.get(usage.endpoint, "chat")
            name = f"{operation} {usage.model}"
            attrs += [_attr("gen_ai.operation.name", operation),
                      _attr("gen_ai.provider.name", usage.provider),
                      _attr("gen_ai.system", usage.provider),
                      _attr("gen_ai.request.model", usage.model),
                      _attr("gen_ai.response.model", usage.model),
                      _attr("gen_ai.usage.input_tokens", int(usage.prompt_tokens)),
                      _attr("gen_ai.usage.output_tokens", int(usage.completion_tokens)),
                      _attr("spaceai.cost_usd", usage.cost_nanos / 1e9),
                      _attr("spaceai.status", usage.status),
                      _attr("spaceai.streamed", bool(usage.streamed))]
            if usage.key_id:
                attrs.append(_attr("spaceai.key_id", usage.key_id))
            if usage.ttft_ms is not None:
                attrs.append(_attr("spaceai.time_to_first_token_ms", float(usage.ttft_ms)))
            failed = failed or usage.status not in ("ok", "refused")
            if failed:
                attrs.append(_attr("error.type", usage.status))
        span = {"traceId": trace_id, "spanId": os.urandom(8).hex(), "name": name,
                "kind": SERVER, "startTimeUnixNano": str(started_ns),
                "endTimeUnixNano": str(end), "attributes": attrs,
                "status": {"code": STATUS_ERROR if failed else STATUS_OK}}
        if parent:
            span["parentSpanId"] = parent.group(2)
        try:
            self._queue.put_nowait(span)
        except queue.Full:
            self.dropped += 1

    # ------------------------------------------------------------------ export

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.interval_s)
            self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            spans = []
            while len(spans) < self.batch:
                try:
                    spans.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not spans:
                return
            self._export(spans)

    def _export(self, spans: list[dict]) -> None:
        body = orjson.dumps({"resourceSpans": [{"resource": self.resource, "scopeSpans": [{
            "scope": {"name": "spaceai", "version": __version__}, "spans": spans}]}]})
        request = urllib.request.Request(self.url, data=body, headers=self.headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - operator's URL
                r.read()
            self.exported += len(spans)
        except Exception as exc:  # noqa: BLE001 - the collector is away: drop, say so
            self.dropped += len(spans)
            log.warning("OTLP export of %d spans to %s failed: %s", len(spans), self.url, exc)


def from_env(env: dict[str, str] | None = None) -> Tracer | None:
    """A tracer when OTLP export is configured in the environment, else None."""
    env = os.environ if env is None else env
    url = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not url:
        base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not base:
            return None
        url = base.rstrip("/") + "/v1/traces"
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    return Tracer(url, _headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", "")),
                  env.get("OTEL_SERVICE_NAME") or "spaceai")
