"""What real upstreams do on the wire, through the whole gateway, for every provider.

The fakes gzip their answers, split every SSE event across two reads (inside its JSON), send
``: keep-alive`` comments and CRLF line ends, close idle keep-alive connections, open Azure
style, and report more output tokens than the chunks they sent: the client must get the same
answer as from a plain upstream, every chunk labelled with the catalog id, and the ledger must
bill the upstream's usage (billing counted chunks would be off by ``EXTRA``).
"""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest
from conftest import anthropic_model, openai_model
from fakes.upstream import FakeAnthropic, FakeOpenAI, Wire
from support.server import GatewayServer

EXTRA = 7  # output tokens the upstream reports beyond the chunks it sent
HARSH = Wire(gzip=True, split_events=True, comments=True, crlf=True,
             extra_output_tokens=EXTRA, idle_close_s=0.3)
ASK = [{"role": "user", "content": "Hello there"}]
WORDS = ["Hello", " from", " fake-openai"]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    oa = FakeOpenAI(wire=HARSH).start_in_thread()
    az = FakeOpenAI(wire=Wire(azure=True)).start_in_thread()
    an = FakeAnthropic(wire=HARSH).start_in_thread()
    models = [openai_model(oa, "gpt-4o", upstream_model="gpt-4o-2024-08-06"),
              openai_model(az, "azure-4o", upstream_model="gpt-4o-2024-11-20"),
              anthropic_model(an, "claude-3.5-sonnet")]
    with GatewayServer(tmp_path_factory.mktemp("wire"), models=models) as server:
        server.oa, server.az, server.an = oa, az, an
        yield server
    for fake in (oa, az, an):
        fake.stop_thread()


@pytest.fixture(scope="module")
def key(gw):
    return gw.create_key()


def ledger_row(gw, request_id: str) -> dict:
    gw.flush_ledger()
    rows = [r for r in gw.usage_rows(limit=100)["data"] if r["request_id"] == request_id]
    assert rows, request_id
    return rows[0]


def raw_stream(gw, key: str, model: str) -> tuple[str, list[dict]]:
    """(request id, every chunk the client received) of a streamed chat completion."""
    with httpx.stream("POST", gw.api_url + "/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": ASK, "stream": True,
                            "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200
        body = r.read().decode()
        rid = r.headers["x-request-id"]
    chunks = [json.loads(line[6:]) for line in body.split("\n")
              if line.startswith("data: ") and line != "data: [DONE]"]
    return rid, chunks


def test_openai_stream_gzipped_split_with_comments_and_crlf_bills_upstream_usage(gw, key):
    rid, chunks = raw_stream(gw, key, "gpt-4o")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"])
    assert text == "".join(WORDS)
    assert {c["model"] for c in chunks} == {"gpt-4o"}
    assert chunks[-1]["usage"]["completion_tokens"] == len(WORDS) + EXTRA
    assert ledger_row(gw, rid)["completion_tokens"] == len(WORDS) + EXTRA


def test_openai_gzipped_answer_is_decoded_and_billed_from_upstream_usage(gw, key):
    client = openai.OpenAI(base_url=gw.api_url, api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=ASK)
    reply = raw.parse()
    assert reply.choices[0].message.content == "".join(WORDS) and reply.model == "gpt-4o"
    assert reply.usage.completion_tokens == len(WORDS) + EXTRA
    assert ledger_row(gw, raw.headers["x-request-id"])["completion_tokens"] == len(WORDS) + EXTRA


def test_idle_connections_closed_by_the_upstream_are_not_an_error(gw, key):
    client = openai.OpenAI(base_url=gw.api_url, api_key=key, max_retries=0)
    sent = len(gw.oa.requests)
    for _ in range(3):
        assert client.chat.completions.create(model="gpt-4o", messages=ASK).choices
        time.sleep(0.5)  # the fake closes keep-alive connections idle for 0.3 s
    assert len(gw.oa.requests) == sent + 3  # and nothing was sent twice


def test_azure_stream_carries_the_catalog_id_in_every_chunk(gw, key):
    rid, chunks = raw_stream(gw, key, "azure-4o")
    assert chunks[0].get("prompt_filter_results")  # Azure's opening chunk, relayed
    assert [c["model"] for c in chunks] == ["azure-4o"] * len(chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"]) == "".join(WORDS)


def test_anthropic_stream_gzipped_split_with_comments_and_crlf_bills_upstream_usage(gw, key):
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)
    with client.messages.stream(model="claude-3.5-sonnet", max_tokens=100,
                                messages=ASK) as stream:
        message = stream.get_final_message()
        rid = stream.response.headers["x-request-id"]
    assert message.content[0].text == "Hello from fake-anthropic"
    assert message.usage.output_tokens == 3 + EXTRA
    assert ledger_row(gw, rid)["completion_tokens"] == 3 + EXTRA
    rid, chunks = raw_stream(gw, key, "claude-3.5-sonnet")  # translated to OpenAI chunks
    assert chunks[-1]["usage"]["completion_tokens"] == 3 + EXTRA
    assert ledger_row(gw, rid)["completion_tokens"] == 3 + EXTRA


def test_anthropic_gzipped_answer_is_decoded(gw, key):
    client = openai.OpenAI(base_url=gw.api_url, api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="claude-3.5-sonnet", messages=ASK)
    assert reply.choices[0].message.content == "Hello from fake-anthropic"
    assert reply.usage.completion_tokens == 3 + EXTRA
