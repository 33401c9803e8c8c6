"""Requests and tokens per minute per key: held to the limit, in one process and across two."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fakes.upstream import Reply
from support.backends import gateways, priced_model
from support.server import GatewayServer

PROMPT = [{"role": "user", "content": "Say hello to the budget test please"}]
RESERVED_TOKENS = 15 + 5  # the gateway's prompt estimate + max_tokens
USED_TOKENS = 10 + 3  # what the fake reports


async def _burst(servers, secret: str, n: int) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(timeout=30) as client:
        async def one(i: int) -> httpx.Response:
            return await client.post(servers[i % len(servers)].api_url + "/chat/completions",
                                     headers=headers,
                                     json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5})

        return await asyncio.gather(*(one(i) for i in range(n)))


def _post(gw: GatewayServer, secret: str) -> httpx.Response:
    return httpx.post(gw.api_url + "/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                      json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5}, timeout=30)


BACKENDS = ["sqlite", "postgres+redis"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_rpm_admits_exactly_the_limit_in_a_burst(tmp_path, fake, pg_url, backend):
    fake.script(*[Reply(delay=0.05)] * 30)
    with gateways(tmp_path, fake, backend, pg_url) as servers:
        secret = servers[0].create_key(rpm=10)
        replies = asyncio.run(_burst(servers, secret, 30))
        served = [r for r in replies if r.status_code == 200]
        refused = [r for r in replies if r.status_code != 200]
        assert len(served) == 10
        for r in refused:
            assert r.status_code == 429
            err = r.json()["error"]
            assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded")
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert r.headers["x-ratelimit-limit-requests"] == "10"
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
        remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in served)
        assert remaining == list(range(10))
        assert all(r.headers["x-ratelimit-reset-requests"].endswith("s") for r in served)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tpm_holds_within_one_request_and_counts_real_tokens(tmp_path, fake, pg_url, backend):
    with gateways(tmp_path, fake, backend, pg_url) as servers:
        secret = servers[0].create_key(tpm=100)
        served = 0
        for i in range(12):  # sequential, alternating processes: settles correct the count
            r = _post(servers[i % len(servers)], secret)
            if r.status_code != 200:
                break
            served += 1
            assert r.headers["x-ratelimit-limit-tokens"] == "100"
            assert r.json()["usage"]["total_tokens"] == USED_TOKENS
        # admitted while the real tokens so far plus this request's reserve fit in 100
        assert served == (100 - RESERVED_TOKENS) // USED_TOKENS + 1
        err = r.json()["error"]
        assert r.status_code == 429 and (err["type"], err["code"]) == ("tokens",
                                                                      "rate_limit_exceeded")
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ratelimit-remaining-tokens"] == str(100 - served * USED_TOKENS)


def test_request_larger_than_tpm_is_refused_as_too_large(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        secret = gw.create_key(tpm=10)
        r = _post(gw, secret)
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert "Request too large" in r.json()["error"]["message"]
        assert r.headers["x-should-retry"] == "false"
        assert not fake.requests


def test_key_without_limits_gets_no_rate_limit_headers(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        r = _post(gw, gw.create_key())
        assert r.status_code == 200
        assert not [h for h in r.headers if h.startswith("x-ratelimit")]
