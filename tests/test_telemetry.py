"""OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, one span per request reaches a local
OTLP/HTTP receiver with the GenAI semantic conventions; unset, nothing is built."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest
from support.backends import priced_model
from support.server import GatewayServer

PROMPT = [{"role": "user", "content": "Trace this request please"}]


class OtlpReceiver:
    """Accepts OTLP/HTTP JSON on /v1/traces and keeps every span with its resource."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.paths: list[str] = []
        self.content_types: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.paths.append(self.path)
                receiver.content_types.append(self.headers["content-type"])
                for rs in body["resourceSpans"]:
                    resource = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                    for ss in rs["scopeSpans"]:
                        for span in ss["spans"]:
                            span["resource"] = resource
                            span["attrs"] = {a["key"]: next(iter(a["value"].values()))
                                             for a in span["attributes"]}
                            receiver.spans.append(span)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.spans) < n:
            assert time.monotonic() < deadline, f"{len(self.spans)} spans of {n}"
            time.sleep(0.05)
        return self.spans


@pytest.fixture
def otlp(monkeypatch):
    r = OtlpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
    yield r
    r.server.shutdown()


def test_each_request_is_a_span_with_genai_attributes(tmp_path, fake, otlp):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        secret = gw.create_key(name="traced")  # span 1: POST /admin/keys
        client = openai.OpenAI(base_url=gw.api_url, api_key=secret, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=PROMPT, max_tokens=10)
        reply = raw.parse()
        stream = client.chat.completions.create(model="gpt-4o", messages=PROMPT, max_tokens=10,
                                                stream=True,
                                                stream_options={"include_usage": True})
        streamed_usage = [c.usage for c in stream if c.usage][0]
        parent_trace, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        r = httpx.post(gw.api_url + "/chat/completions", timeout=30,
                       headers={"Authorization": f"Bearer {secret}",
                                "traceparent": f"00-{parent_trace}-{parent_span}-01"},
                       json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 10})
        assert r.status_code == 200
        assert httpx.get(gw.api_url + "/models").status_code == 401
        spans = otlp.wait(5)
    assert set(otlp.paths) == {"/v1/traces"} and otlp.content_types[0] == "application/json"
    by_id = {s["attrs"]["spaceai.request_id"]: s for s in spans}
    chat = by_id[raw.headers["x-request-id"]]
    a = chat["attrs"]
    assert chat["name"] == "chat gpt-4o" and chat["kind"] == 2
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-4o" and a["gen_ai.provider.name"] == "openai"
    assert int(a["gen_ai.usage.input_tokens"]) == reply.usage.prompt_tokens
    assert int(a["gen_ai.usage.output_tokens"]) == reply.usage.completion_tokens
    assert a["spaceai.cost_usd"] == pytest.approx(float(raw.headers["x-spaceai-cost"]))
    assert int(a["http.response.status_code"]) == 200 and a["url.path"] == "/v1/chat/completions"
    assert chat["status"]["code"] == 1
    assert chat["resource"]["service.name"]["stringValue"] == "gateway-under-test"
    assert int(chat["endTimeUnixNano"]) > int(chat["startTimeUnixNano"])
    assert len(chat["traceId"]) == 32 and len(chat["spanId"]) == 16
    streamed = [s for s in spans if s["attrs"].get("spaceai.streamed") is True]
    assert len(streamed) == 1
    assert int(streamed[0]["attrs"]["gen_ai.usage.output_tokens"]) == \
        streamed_usage.completion_tokens
    child = by_id[r.headers["x-request-id"]]
    assert child["traceId"] == parent_trace and child["parentSpanId"] == parent_span
    refused = [s for s in spans if s["name"] == "GET /v1/models"]
    assert refused and int(refused[0]["attrs"]["http.response.status_code"]) == 401
    assert all(secret not in json.dumps(s) for s in spans)


def test_no_endpoint_no_tracer(tmp_path, fake, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    from spaceai.telemetry import from_env

    assert from_env({}) is None
    assert from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318",
                     "OTEL_SDK_DISABLED": "true"}) is None
    assert from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318/"}).url == \
        "http://x:4318/v1/traces"
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        assert gw.gateway.telemetry is None and gw.gateway.ledger.on_record is None
