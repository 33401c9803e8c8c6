"""The fault matrix: each failure gives its retry, fallback or clear error in bounded time,
and a usage row that matches what was produced."""

from __future__ import annotations

import time

import openai
import pytest
from conftest import anthropic_model, openai_model
from fakes.upstream import CutStream, Error, Hang, Reply, SlowStream, unused_port
from support.server import GatewayServer


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    from fakes.upstream import FakeAnthropic, FakeOpenAI

    fake = FakeOpenAI()
    fake.start_in_thread()
    fake_an = FakeAnthropic()
    fake_an.start_in_thread()
    dead = f"http://127.0.0.1:{unused_port()}/v1"
    models = [
        openai_model(fake, "retrying", max_retries=2),
        openai_model(fake, "impatient", max_retries=0, first_byte_timeout_s=1, timeout_s=1),
        openai_model(fake, "streamer", max_retries=0),
        {**openai_model(fake, "unreachable", max_retries=1), "base_url": dead},
        {**openai_model(fake, "falls-back", max_retries=0), "base_url": dead,
         "fallbacks": ["backup"]},
        openai_model(fake, "backup", max_retries=0),
        {**openai_model(fake, "two-deployments", max_retries=1),
         "deployments": [{"base_url": dead}, {"base_url": fake.base_url}]},
        anthropic_model(fake_an, "claude", max_retries=0),
        anthropic_model(fake_an, "claude-retrying", max_retries=1),
    ]
    with GatewayServer(tmp_path_factory.mktemp("faults"), models=models) as server:
        server.fake, server.fake_an = fake, fake_an
        yield server
    fake.stop_thread()
    fake_an.stop_thread()


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.api_url, api_key=gw.create_key(), max_retries=0,
                         timeout=20)


MSG = [{"role": "user", "content": "Hello there"}]


def row(gw, request_id):
    gw.flush_ledger()
    rows = [r for r in gw.usage_rows(limit=1000)["data"] if r["request_id"] == request_id]
    assert len(rows) == 1, rows
    return rows[0]


def test_upstream_500_is_retried_then_served(gw, client):
    gw.fake.script(Error(status=500), Error(status=502))
    n = len(gw.fake.requests)
    t = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="retrying", messages=MSG)
    assert raw.parse().choices[0].message.content == "Hello from fake-openai"
    assert len(gw.fake.requests) - n == 3 and time.monotonic() - t < 5
    r = row(gw, raw.headers["x-request-id"])
    assert (r["status"], r["prompt_tokens"], r["completion_tokens"]) == ("ok", 5, 3)
    assert (r["retries"], r["fallbacks"], r["model_requested"]) == (2, 0, "retrying")
    assert r["deployment"] == gw.fake.base_url.rsplit("/", 1)[0]
    # three upstream calls and the backoff between them: upstream time, not the gateway's
    assert 0 < r["upstream_ms"] < r["latency_ms"]
    assert r["overhead_ms"] < r["upstream_ms"]
    assert r["upstream_ms"] + r["overhead_ms"] == pytest.approx(r["latency_ms"], abs=0.01)


def test_429_retry_after_is_honoured(gw, client):
    gw.fake.script(Error(status=429, headers={"retry-after": "1"}))
    t = time.monotonic()
    reply = client.chat.completions.create(model="retrying", messages=MSG)
    elapsed = time.monotonic() - t
    assert reply.choices[0].message.content and 1.0 <= elapsed < 4


def test_retries_exhausted_give_a_clear_error(gw, client):
    gw.fake.script(*[Error(status=503)] * 3)
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="retrying", messages=MSG)
    assert "retrying" in e.value.message and e.value.status_code == 503
    r = row(gw, e.value.response.headers["x-request-id"])
    assert r["status"] == "upstream_error" and r["completion_tokens"] == 0 and r["cost"] == 0
    assert (r["retries"], r["deployment"]) == (2, None)  # none served it


def test_connection_refused_is_a_502_within_bounds(gw, client):
    t = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="unreachable", messages=MSG)
    assert e.value.status_code == 502 and "connect" in e.value.message
    assert time.monotonic() - t < 5


def test_fallback_model_serves_when_the_first_fails(gw, client):
    raw = client.chat.completions.with_raw_response.create(model="falls-back", messages=MSG)
    assert raw.parse().model == "backup"
    r = row(gw, raw.headers["x-request-id"])
    assert (r["model_requested"], r["model"], r["fallbacks"], r["retries"]) == (
        "falls-back", "backup", 1, 0)


def test_dead_deployment_is_skipped_and_cooled_down(gw, client):
    for _ in range(6):
        assert client.chat.completions.create(model="two-deployments", messages=MSG).choices


def test_hang_times_out_within_the_models_timeout(gw, client):
    gw.fake.script(Hang(seconds=30))
    t = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="impatient", messages=MSG)
    assert e.value.status_code == 504 and time.monotonic() - t < 3
    assert row(gw, e.value.response.headers["x-request-id"])["status"] == "timeout"


def test_stream_hang_before_first_byte_times_out(gw, client):
    gw.fake.script(Hang(seconds=30))
    t = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        list(client.chat.completions.create(model="impatient", messages=MSG, stream=True))
    assert e.value.status_code == 504 and time.monotonic() - t < 3


@pytest.mark.parametrize("model,fake_attr", [("streamer", "fake"), ("claude", "fake_an")])
def test_stream_cut_midway_ends_with_an_error_and_bills_what_was_produced(gw, client, model,
                                                                          fake_attr):
    getattr(gw, fake_attr).script(CutStream(after_chunks=2, reply=Reply(text="a b c d e f")))
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG,
                                                           stream=True)
    got = []
    t = time.monotonic()
    with pytest.raises(openai.APIError) as e:
        for ch in raw.parse():
            if ch.choices and ch.choices[0].delta.content:
                got.append(ch.choices[0].delta.content)
    assert time.monotonic() - t < 5
    assert "".join(got) == "a b" and "before completion" in str(e.value)
    r = row(gw, raw.headers["x-request-id"])
    assert r["status"] == "upstream_error" and r["completion_tokens"] == 2
    assert r["prompt_tokens"] > 0 and r["cost"] > 0


def test_client_disconnect_cancels_upstream_and_bills_what_was_produced(gw, client):
    gw.fake.script(SlowStream(delay_per_chunk=0.1, chunks=100))
    before = gw.fake.cancelled
    raw = client.chat.completions.with_raw_response.create(model="streamer", messages=MSG,
                                                           stream=True)
    stream = raw.parse()
    seen = 0
    for ch in stream:
        if ch.choices and ch.choices[0].delta.content:
            seen += 1
        if seen == 3:
            break
    stream.close()
    deadline = time.monotonic() + 5
    while gw.fake.cancelled == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gw.fake.cancelled > before, "upstream request was not cancelled"
    r = row(gw, raw.headers["x-request-id"])
    assert r["status"] == "client_disconnected"
    assert 3 <= r["completion_tokens"] < 100 and r["streamed"] is True


async def test_streams_count_as_in_flight_until_they_end():
    """Least-in-flight balancing sees a long stream for its whole length."""
    from spaceai.catalog import Catalog
    from spaceai.router import Route, Router

    class Provider:
        name = "openai"

        async def chat_stream(self, req, model):
            for i in range(3):
                yield {"choices": [{"index": 0, "delta": {"content": str(i)}}]}

    catalog = Catalog.from_dicts([{"id": "m", "provider": "openai", "api_key": "k",
                                   "deployments": [{"base_url": "http://a/v1"},
                                                   {"base_url": "http://b/v1"}]}])
    router = Router(catalog, {"openai": Provider()})
    from spaceai.types import ChatRequest

    req = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    routes = Route(), Route()
    _, _, first = await router.open_stream(req, catalog.get("m"), routes[0])
    _, _, second = await router.open_stream(req, catalog.get("m"), routes[1])
    deps = router._deployments["m"]
    assert sorted(d.in_flight for d in deps) == [1, 1]  # balanced: one stream on each
    assert sorted(r.deployment for r in routes) == ["http://a", "http://b"]
    assert [c async for c in first]  # runs to its end
    await second.aclose()
    assert [d.in_flight for d in deps] == [0, 0]


@pytest.mark.parametrize("status", [408, 409])
def test_a_timeout_or_conflict_upstream_is_retried_on_every_provider(gw, client, status):
    for fake, model in ((gw.fake, "retrying"), (gw.fake_an, "claude-retrying")):
        fake.script(Error(status=status, message="try again"), Reply())
        reply = client.chat.completions.create(model=model, messages=MSG, max_tokens=5)
        assert reply.choices[0].message.content, model
