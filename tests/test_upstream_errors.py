"""One mapping of upstream failures for every provider: the same failure, sent by a fake OpenAI
upstream and a fake Anthropic upstream each in its own wire shape, reaches a
``/v1/chat/completions`` client (streamed or not) with the same status, type and code, is
retried or not the same way, and never shows the gateway's credential."""

from __future__ import annotations

from dataclasses import dataclass

import openai
import pytest
from conftest import anthropic_model, openai_model
from fakes import Error, StreamError
from support.server import GatewayServer

from spaceai.catalog import ModelConfig
from spaceai.providers.openai_errors import openai_error

MSG = [{"role": "user", "content": "Hello there"}]
KEY = "{key}"  # stands for the fake upstream's own API key in a scripted message


@pytest.fixture(scope="module")
def gw(fakes, tmp_path_factory):
    oai, ant = fakes
    models = [
        openai_model(oai, "oai", max_retries=1),
        anthropic_model(ant, "ant", max_retries=1),
        {**openai_model(oai, "oai-keys", max_retries=1),
         "deployments": [{"api_key": "sk-revoked"}, {"api_key": oai.api_key}]},
        {**anthropic_model(ant, "ant-keys", max_retries=1),
         "deployments": [{"api_key": "sk-ant-revoked"}, {"api_key": ant.api_key}]},
        {**openai_model(oai, "oai-revoked"), "api_key": "sk-revoked", "fallbacks": ["ant"]},
        {**anthropic_model(ant, "ant-revoked"), "api_key": "sk-ant-revoked",
         "fallbacks": ["oai"]},
    ]
    with GatewayServer(tmp_path_factory.mktemp("upstream-errors"), models=models) as server:
        server.upstream = {"oai": oai, "ant": ant}
        yield server


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.api_url, api_key=gw.create_key(), max_retries=0,
                         timeout=20)


@dataclass(frozen=True)
class Failure:
    """One upstream failure as each provider words it, and what the client should see."""

    openai: Error
    anthropic: Error
    status: int
    type: str
    code: str
    hits: int  # upstream requests for one client request: 2 when retried (max_retries=1)


def _auth(status: int, anthropic_type: str) -> Failure:
    return Failure(Error(status, message=f"Incorrect API key provided: {KEY}"),
                   Error(status, type=anthropic_type, message=f"invalid x-api-key {KEY}"),
                   502, "upstream_error", "upstream_auth_failed", 1)


FAILURES = {
    "unauthorized": _auth(401, "authentication_error"),
    "forbidden": _auth(403, "permission_error"),
    "out_of_quota": Failure(
        Error(429, type="insufficient_quota", code="insufficient_quota",
              message="You exceeded your current quota, please check your plan and billing"),
        Error(402, type="billing_error", message="Your credit balance is too low"),
        502, "upstream_error", "upstream_quota_exceeded", 1),
    "model_not_found": Failure(
        Error(404, code="model_not_found", message="The model does not exist"),
        Error(404, type="not_found_error", message="model: claude-nope"),
        502, "upstream_error", "upstream_not_found", 1),
    "too_large": Failure(Error(413), Error(413, type="request_too_large"),
                         413, "invalid_request_error", "request_too_large", 1),
    "context_too_long": Failure(
        Error(400, code="context_length_exceeded",
              message="This model's maximum context length is 128000 tokens."),
        Error(400, type="invalid_request_error",
              message="prompt is too long: 210000 tokens > 200000 maximum"),
        400, "invalid_request_error", "context_length_exceeded", 1),
    "invalid_request": Failure(
        Error(400, message=f"temperature: out of range near {KEY}"),
        Error(400, type="invalid_request_error", message=f"temperature: out of range near {KEY}"),
        400, "invalid_request_error", "upstream_invalid_request", 1),
    "unprocessable": Failure(Error(422), Error(422),
                             400, "invalid_request_error", "upstream_invalid_request", 1),
    "rate_limited": Failure(
        Error(429, headers={"retry-after": "1"}),
        Error(429, type="rate_limit_error", headers={"retry-after": "1"}),
        429, "rate_limit_error", "upstream_rate_limited", 2),
    "overloaded": Failure(Error(503), Error(529, type="overloaded_error"),
                          503, "upstream_error", "upstream_overloaded", 2),
    "server_error": Failure(Error(500), Error(500, type="api_error"),
                            502, "upstream_error", "upstream_error", 2),
    "timeout": Failure(Error(408), Error(408), 502, "upstream_error", "upstream_error", 2),
    "proxy_page": Failure(Error(502, body="<html><body>502 Bad Gateway</body></html>"),
                          Error(502, body="<html><body>502 Bad Gateway</body></html>"),
                          502, "upstream_error", "upstream_error", 2),
}


def _scripted(error: Error, api_key: str) -> Error:
    """``error`` with the upstream's key where its message says so (upstreams echo keys)."""
    if error.message is None:
        return error
    return Error(error.status, error.body, error.headers,
                 error.message.replace(KEY, api_key), error.type, error.code)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("provider", ["oai", "ant"])
@pytest.mark.parametrize("name", list(FAILURES))
def test_an_upstream_failure_reaches_the_client_the_same_from_every_provider(
        gw, client, name, provider, stream):
    failure, fake = FAILURES[name], gw.upstream[provider]
    fake.reset()
    error = failure.openai if provider == "oai" else failure.anthropic
    fake.script(*[_scripted(error, fake.api_key)] * 2)
    with pytest.raises(openai.APIStatusError) as e:
        reply = client.chat.completions.create(model=provider, messages=MSG, stream=stream)
        if stream:
            list(reply)
    got = e.value.response.json()["error"]
    assert (e.value.status_code, got["type"], got["code"]) == (
        failure.status, failure.type, failure.code)
    assert len(fake.requests) == failure.hits
    assert got["message"].startswith(f"model {provider}: upstream returned {error.status}")
    assert fake.api_key not in e.value.response.text
    if failure.code == "upstream_auth_failed":
        assert "x-api-key" not in got["message"] and "Incorrect" not in got["message"]
    if name == "rate_limited":
        assert e.value.response.headers["retry-after"] == "1"
    if name == "invalid_request":
        assert "temperature: out of range" in got["message"]
    fake.reset()


STREAM_FAILURES = {  # an error event once the stream has begun: each provider's error type
    "server_error": ({"oai": "server_error", "ant": "api_error"},
                     "upstream_error", "upstream_error"),
    "invalid_request": ({"oai": "invalid_request_error", "ant": "invalid_request_error"},
                        "invalid_request_error", "upstream_invalid_request"),
}


@pytest.mark.parametrize("provider", ["oai", "ant"])
@pytest.mark.parametrize("name", list(STREAM_FAILURES))
def test_an_error_event_mid_stream_reaches_the_client_the_same_from_every_provider(
        gw, client, name, provider):
    (types, etype, code), fake = STREAM_FAILURES[name], gw.upstream[provider]
    fake.reset()
    fake.script(StreamError(after_chunks=1, type=types[provider],
                            message=f"failed near {fake.api_key}"))
    text = []
    with pytest.raises(openai.APIError) as e:
        for chunk in client.chat.completions.create(model=provider, messages=MSG, stream=True):
            text += [c.delta.content for c in chunk.choices if c.delta.content]
    assert text and (e.value.type, e.value.code) == (etype, code)
    assert e.value.message == f"model {provider}: upstream sent an error: failed near [redacted]"
    assert len(fake.requests) == 1
    fake.reset()


@pytest.mark.parametrize("provider", ["oai", "ant"])
def test_a_refused_key_moves_on_to_the_next_deployment(gw, client, provider):
    fake = gw.upstream[provider]
    fake.reset()
    reply = client.chat.completions.create(model=f"{provider}-keys", messages=MSG)
    assert reply.choices[0].message.content and len(fake.requests) == 2
    fake.reset()


@pytest.mark.parametrize("provider,fallback", [("oai", "ant"), ("ant", "oai")])
def test_a_refused_key_moves_on_to_the_fallback_model(gw, client, provider, fallback):
    fakes = gw.upstream.values()
    for fake in fakes:
        fake.reset()
    reply = client.chat.completions.create(model=f"{provider}-revoked", messages=MSG)
    assert reply.model == fallback
    assert [len(f.requests) for f in fakes] == [1, 1]


MODEL = ModelConfig(id="local-vllm", provider="openai", upstream_model="m",
                    api_key="sk-local-secret")


@pytest.mark.parametrize("body,status,code,message", [
    # vLLM's older errors: top-level fields, the HTTP status as the code
    (b'{"object":"error","message":"max_tokens too big","type":"BadRequestError","code":400}',
     400, "upstream_invalid_request", "max_tokens too big"),
    (b'{"error":"engine crashed"}', 500, "upstream_error", "engine crashed"),
    (b"Internal Server Error", 500, "upstream_error", "Internal Server Error"),
    (b"", 500, "upstream_error", "upstream error"),
])
def test_compatible_servers_error_shapes_are_read(body, status, code, message):
    err = openai_error(MODEL, body, status)
    assert (err.code, err.message) == (code, f"model local-vllm: upstream returned {status}: "
                                             f"{message}")


def test_a_responses_stream_error_event_is_mapped_like_any_other():
    err = openai_error(MODEL, {"type": "error", "code": "rate_limit_exceeded",
                               "message": "slow down, sk-local-secret"})
    assert (err.status, err.code, err.retryable) == (429, "upstream_rate_limited", True)
    assert err.message == "model local-vllm: upstream sent an error: slow down, [redacted]"
