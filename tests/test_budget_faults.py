"""Budgets hold as a hard limit whatever the upstream or the request does: prompts the usual
estimate undercounts, fallbacks dearer than the model asked for, usage reports that are not
token counts, and errors after admission."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from fakes.upstream import Reply, unused_port
from support.backends import priced_model
from support.server import GatewayServer


async def _burst(gw: GatewayServer, secret: str, n: int, body: dict) -> list[httpx.Response]:
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n)) as client:
        return await asyncio.gather(*(client.post(
            gw.api_url + "/chat/completions", headers=headers, json=body) for _ in range(n)))


def _charged(replies: list[httpx.Response]) -> Decimal:
    return sum((Decimal(r.headers["x-spaceai-cost"]) for r in replies if r.status_code == 200),
               Decimal(0))


def _spend(gw: GatewayServer, secret: str) -> Decimal:
    return Decimal(str(httpx.get(gw.api_url + "/key", headers={
        "Authorization": f"Bearer {secret}"}).json()["spend"]))


def test_prompt_the_estimate_undercounts_cannot_overspend(tmp_path, fake):
    # 600 CJK characters: about 600 tokens for a real tokenizer, 150 by 4-characters-a-token
    text = "預算" * 300
    fake.script(*[Reply(delay=0.1, usage=(600, 3))] * 20)
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        budget = Decimal("0.1")  # 600 tokens at $0.00003 = $0.018: five fit
        secret = gw.create_key(budget=float(budget))
        replies = asyncio.run(_burst(gw, secret, 20, {
            "model": "gpt-4o", "messages": [{"role": "user", "content": text}],
            "max_tokens": 5}))
        assert all(r.status_code in (200, 429) for r in replies)
        assert _charged(replies) <= budget
        assert _spend(gw, secret) == _charged(replies) <= budget


def test_dearer_fallback_cannot_overspend(tmp_path, fake):
    dead = f"http://127.0.0.1:{unused_port()}/v1"
    models = [
        {**priced_model(fake, "cheap", fallbacks=["dear"]), "base_url": dead,
         "pricing": {"input": 0.000001, "output": 0.000002}},
        priced_model(fake, "dear", pricing={"input": 0.0001, "output": 0.0002}),
    ]
    fake.script(*[Reply(delay=0.05)] * 60)
    with GatewayServer(tmp_path, models=models) as gw:
        budget = Decimal("0.01")
        secret = gw.create_key(budget=float(budget))
        replies = asyncio.run(_burst(gw, secret, 60, {
            "model": "cheap", "messages": [{"role": "user", "content": "hello there"}],
            "max_tokens": 20}))
        served = [r for r in replies if r.status_code == 200]
        assert served, "the fallback serves what the budget covers"
        assert all(r.json()["model"] == "dear" for r in served)
        assert _charged(replies) <= budget
        assert _spend(gw, secret) == _charged(replies)


def test_negative_usage_is_billed_at_the_reservation(tmp_path, fake):
    fake.script(*[Reply(usage=(-100000, 3))] * 60)
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        budget = Decimal("0.02")
        secret = gw.create_key(budget=float(budget))
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 10}
        first = httpx.post(gw.api_url + "/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {secret}"})
        assert first.status_code == 200
        cost = Decimal(first.headers["x-spaceai-cost"])
        assert cost > 0 and first.json()["usage"]["prompt_tokens"] >= 0
        replies = asyncio.run(_burst(gw, secret, 50, body))
        assert _charged(replies) + cost <= budget
        assert any(r.status_code == 429 for r in replies)
        rows = gw.admin("GET", "/admin/usage").json()
        assert Decimal(str(rows["totals"]["cost"])) == _spend(gw, secret) <= budget
        assert rows["totals"]["prompt_tokens"] >= 0


def test_usage_that_is_not_a_number_is_billed_not_a_500(tmp_path, fake):
    fake.script(Reply(usage=("twelve", 3)), Reply(usage=(12.5, 3)))
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        secret = gw.create_key(budget=1)
        for _ in range(2):
            r = httpx.post(gw.api_url + "/chat/completions",
                           headers={"Authorization": f"Bearer {secret}"},
                           json={"model": "gpt-4o", "max_tokens": 10,
                                 "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
            assert Decimal(r.headers["x-spaceai-cost"]) > 0
        gw.gateway.ledger.flush(10)
        import sqlalchemy as sa

        with gw.gateway.engine.connect() as conn:
            errors = [e for (e,) in conn.execute(sa.text("SELECT error FROM usage"))]
        assert len(errors) == 2 and all("billed the reservation" in e for e in errors)


def test_an_error_after_admission_settles_the_request(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        secret = gw.create_key(budget=0.01)
        key_id = gw.admin("GET", "/admin/keys").json()["data"][0]["id"]
        provider = gw.gateway.providers["openai"]

        async def broken(*args, **kwargs):
            raise RuntimeError("a bug after admission")

        original, provider.chat = provider.chat, broken
        body = {"model": "gpt-4o", "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {secret}"}
        try:
            for _ in range(20):
                r = httpx.post(gw.api_url + "/chat/completions", headers=headers, json=body)
                assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        finally:
            provider.chat = original
        assert gw.gateway.control.outstanding_nanos(key_id) == 0
        assert httpx.post(gw.api_url + "/chat/completions", headers=headers,
                          json=body).status_code == 200
        report = gw.admin("GET", "/admin/usage").json()
        assert report["totals"]["requests"] == 21


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("bad", [("twelve", 3), (-100000, 3), (12.5, 3)])
def test_bad_usage_from_a_native_responses_or_messages_upstream_is_billed_not_a_500(
        tmp_path, fakes, stream, bad):
    """Pass-through answers (OpenAI Responses, Anthropic Messages) are read by the same usage
    type as chat: a count that is not a count bills the reservation, never a 500 or zero."""
    oai, ant = fakes
    oai.reset(), ant.reset()
    oai.script(Reply(usage=bad))
    ant.script(Reply(usage=bad))
    models = [{**priced_model(oai), "id": "native", "responses_api": "native"},
              {"id": "claude", "provider": "anthropic", "upstream_model": "claude-sonnet-4-5",
               "base_url": ant.base_url, "api_key": ant.api_key, "max_retries": 0,
               "pricing": {"input": 0.00001, "output": 0.00003}}]
    with GatewayServer(tmp_path, models=models) as gw:
        secret = gw.create_key(budget=1)
        auth = {"Authorization": f"Bearer {secret}"}
        r1 = httpx.post(gw.api_url + "/responses", headers=auth, json={
            "model": "native", "input": "hi", "max_output_tokens": 10, "stream": stream})
        r2 = httpx.post(gw.api_url + "/messages", headers={"x-api-key": secret}, json={
            "model": "claude", "max_tokens": 10, "stream": stream,
            "messages": [{"role": "user", "content": "hi"}]})
        assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text)
        gw.gateway.ledger.flush(10)
        rows = gw.admin("GET", "/admin/usage").json()["data"]
        assert len(rows) == 2
        for row in rows:
            assert row["prompt_tokens"] >= 0 and row["completion_tokens"] >= 0
            assert row["cost"] > 0 and "billed the reservation" in (row["error"] or ""), row
        assert _spend(gw, secret) == sum(Decimal(str(r["cost"])) for r in rows)
