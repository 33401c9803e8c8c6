"""Deadlines that bound a whole upstream attempt, whatever the upstream does byte by byte.

A non-streaming attempt ends by ``timeout_s`` even when its body trickles in; a stream must
show its first content by the time-to-first-token deadline and is never silent (keep-alives
do not count) for longer than ``stream_idle_timeout_s``. The client sees a 504 (before any
byte) or an error event (mid-stream), and the ledger row says ``timeout`` with what was
produced.
"""

from __future__ import annotations

import time

import anthropic
import openai
import pytest
from conftest import anthropic_model, openai_model
from fakes.scripted import (
    ANTHROPIC_PING,
    SSE_COMMENT,
    ScriptedUpstream,
    anthropic_events,
    anthropic_message,
    chunked,
    openai_completion,
    openai_events,
    stream,
    trickle,
)
from support.server import GatewayServer

MSG = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    up = ScriptedUpstream().start_in_thread()
    an = ScriptedUpstream().start_in_thread()
    total = {"timeout_s": 2, "max_retries": 0}
    # streams: a long timeout_s, which must not be what ends them
    streams = {"timeout_s": 30, "first_byte_timeout_s": 1, "stream_idle_timeout_s": 1,
               "max_retries": 0}
    models = [openai_model(up, "gpt", **total), anthropic_model(an, "claude", **total),
              openai_model(up, "gpt-stream", **streams),
              openai_model(up, "gpt-retry", timeout_s=1, max_retries=1),
              anthropic_model(an, "claude-stream", **streams)]
    with GatewayServer(tmp_path_factory.mktemp("deadlines"), models=models) as server:
        server.up, server.an = up, an
        yield server
    up.stop_thread()
    an.stop_thread()


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=gw.api_url, api_key=gw.create_key(), max_retries=0,
                         timeout=30)


def row(gw, request_id):
    gw.flush_ledger()
    rows = [r for r in gw.usage_rows(limit=1000)["data"] if r["request_id"] == request_id]
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("model,upstream,body", [("gpt", "up", openai_completion()),
                                                 ("claude", "an", anthropic_message())])
def test_trickling_answer_ends_at_the_attempts_deadline(gw, client, model, upstream, body):
    getattr(gw, upstream).script(trickle(body, every=0.5))  # 1 byte / 0.5 s: ~100 s in all
    t = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model=model, messages=MSG)
    held = time.monotonic() - t
    assert e.value.status_code == 504 and 1.8 < held < 3.5, held
    assert "timed out" in e.value.message
    r = row(gw, e.value.response.headers["x-request-id"])
    assert r["status"] == "timeout" and r["http_status"] == 504


def test_timed_out_attempt_is_retried_before_anything_reached_the_client(gw, client):
    from fakes.scripted import delayed_json

    gw.up.script(trickle(openai_completion(), every=0.3), delayed_json(openai_completion(), 0))
    t = time.monotonic()
    reply = client.chat.completions.create(model="gpt-retry", messages=MSG)
    assert reply.choices[0].message.content.startswith("Hello there")
    assert 0.9 < time.monotonic() - t < 4  # one 1 s attempt, a backoff, then the answer


@pytest.mark.parametrize("model,upstream,events,keepalive", [
    ("gpt-stream", "up", openai_events("Hello", " world"), SSE_COMMENT),
    ("gpt-stream", "up", openai_events("Hello", " world"), None),
    ("claude-stream", "an", anthropic_events("Hello", " world"), ANTHROPIC_PING),
    ("claude-stream", "an", anthropic_events("Hello", " world"), None),
])
def test_silent_stream_is_ended_within_the_silence_deadline(gw, client, model, upstream,
                                                           events, keepalive):
    getattr(gw, upstream).script(stream(events, then=keepalive, every=0.2))
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MSG,
                                                           stream=True)
    got = []
    t = time.monotonic()
    with pytest.raises(openai.APIError) as e:
        for ch in raw.parse():
            if ch.choices and ch.choices[0].delta.content:
                got.append(ch.choices[0].delta.content)
    held = time.monotonic() - t
    assert "".join(got) == "Hello world"
    assert "timed out" in str(e.value) and "silent" in str(e.value)
    assert held < 3.5, held  # silence deadline 1 s (the stream's timeout_s: 30)
    r = row(gw, raw.headers["x-request-id"])
    assert r["status"] == "timeout" and r["streamed"] is True
    assert r["completion_tokens"] == 2


@pytest.mark.parametrize("model,upstream,keepalive", [("gpt-stream", "up", SSE_COMMENT),
                                                      ("claude-stream", "an", ANTHROPIC_PING)])
def test_stream_of_keepalives_only_misses_time_to_first_token(gw, client, model, upstream,
                                                              keepalive):
    getattr(gw, upstream).script(stream([], then=keepalive, every=0.2))
    t = time.monotonic()
    with pytest.raises(openai.APIStatusError) as e:
        list(client.chat.completions.create(model=model, messages=MSG, stream=True))
    assert e.value.status_code == 504 and time.monotonic() - t < 3.5
    assert "no content within 1 s" in e.value.message
    assert row(gw, e.value.response.headers["x-request-id"])["status"] == "timeout"


def test_native_messages_stream_ends_with_an_error_event_when_silent(gw):
    gw.an.script(stream(anthropic_events("Hello", " world"), then=ANTHROPIC_PING, every=0.2))
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.create_key(), max_retries=0,
                                 timeout=30)
    got, rid = [], None
    t = time.monotonic()
    with pytest.raises(anthropic.APIError) as e:
        with client.messages.stream(model="claude-stream", max_tokens=50,
                                    messages=MSG) as s:
            rid = s.response.headers["x-request-id"]
            for text in s.text_stream:
                got.append(text)
    assert "".join(got) == "Hello world" and "timed out" in str(e.value)
    assert time.monotonic() - t < 3.5
    r = row(gw, rid)
    assert r["status"] == "timeout" and r["completion_tokens"] >= 1


def test_stream_that_keeps_producing_is_not_cut_by_the_silence_deadline(gw, client):
    events = openai_events("a")
    tail = openai_events(*[" b"] * 8)[1:]  # a content chunk every 0.4 s: 3.2 s in all
    done = b"data: [DONE]\n\n"
    steps = stream(events) + [(0.4, chunked(e)) for e in tail] + [(0, chunked(done)),
                                                                   (0, b"0\r\n\r\n")]
    gw.up.script(steps)
    text = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        model="gpt-stream", messages=MSG, stream=True) if ch.choices)
    assert text == "a" + " b" * 8


def test_stream_idle_timeout_is_a_catalog_setting_with_a_default():
    from spaceai.catalog import Catalog
    from spaceai.router import _deployments

    catalog = Catalog.from_dicts([
        {"id": "a", "provider": "openai", "api_key": "k"},
        {"id": "b", "provider": "openai", "api_key": "k", "stream_idle_timeout_s": 15,
         "deployments": [{"base_url": "http://x/v1", "stream_idle_timeout_s": 5}]}])
    assert catalog.get("a").stream_idle_timeout_s == 60
    assert catalog.get("b").stream_idle_timeout_s == 15
    assert _deployments(catalog.get("b"))[0].config.stream_idle_timeout_s == 5
