"""Hard budgets: never exceeded under concurrency, in one process and across two."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from fakes.upstream import Reply
from support.backends import gateways, priced_model
from support.server import GatewayServer

PROMPT = [{"role": "user", "content": "Say hello to the budget test please"}]
# the fake answers 3 completion tokens and counts 7 words + 3 = 10 prompt tokens: $0.00048
SERVED_COST = Decimal("0.00048")


async def _race(servers: list[GatewayServer], secret: str, n: int, **body):
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one(i: int) -> httpx.Response:
            url = servers[i % len(servers)].api_url + "/chat/completions"
            return await client.post(url, headers=headers, json={
                "model": "gpt-4o", "messages": PROMPT, "max_tokens": 5, **body})

        return await asyncio.gather(*(one(i) for i in range(n)))


def own_key(gw: GatewayServer, secret: str) -> dict:
    r = httpx.get(gw.api_url + "/key", headers={"Authorization": f"Bearer {secret}"})
    r.raise_for_status()
    return r.json()


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis, two processes"])
def test_budget_holds_under_200_concurrent_requests(tmp_path, fake, pg_url, backend):
    fake.script(*[Reply(delay=0.05)] * 200)
    with gateways(tmp_path, fake, backend.split(",")[0], pg_url) as servers:
        budget = Decimal("0.01")  # covers about 20 requests
        secret = servers[0].create_key(name="race", budget=float(budget))
        replies = asyncio.run(_race(servers, secret, 200))

        served = [r for r in replies if r.status_code == 200]
        refused = [r for r in replies if r.status_code != 200]
        # at least what the reservations allow at once (43 prompt tokens at most, as UTF-8
        # bytes bound them, + 5 output: $0.00159 each), at most what the spend
        # ($0.00048 each) allows
        assert 6 <= len(served) <= 20 and len(served) + len(refused) == 200
        for r in refused:
            assert r.status_code == 429
            assert r.json()["error"]["type"] == "insufficient_quota"
            assert r.json()["error"]["code"] == "insufficient_quota"
            assert r.headers["x-should-retry"] == "false"
        costs = [Decimal(r.headers["x-spaceai-cost"]) for r in served]
        assert all(c == SERVED_COST for c in costs)
        charged = sum(costs, Decimal(0))
        assert charged <= budget

        for gw in servers:  # every process reports the same, exact spend
            key = own_key(gw, secret)
            assert Decimal(str(key["spend"])) == charged
            assert Decimal(str(key["remaining"])) == budget - charged
        for gw in servers:
            gw.flush_ledger()
        report = servers[-1].usage_rows(key=key["id"], limit=1000)
        assert Decimal(str(report["totals"]["cost"])) == charged
        assert report["totals"]["requests"] == 200
        statuses = [row["status"] for row in report["data"]]
        assert statuses.count("ok") == len(served) and statuses.count("refused") == len(refused)


def test_budget_refuses_a_request_that_could_cost_more_than_is_left(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        secret = gw.create_key(budget=0.002)
        headers = {"Authorization": f"Bearer {secret}"}
        # max_tokens 100 at $0.00006 = $0.006 > $0.002: refused before going upstream
        r = httpx.post(gw.api_url + "/chat/completions", headers=headers, json={
            "model": "gpt-4o", "messages": PROMPT, "max_tokens": 100})
        assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
        assert r.headers["x-should-retry"] == "false"
        assert not fake.requests
        r = httpx.post(gw.api_url + "/chat/completions", headers=headers, json={
            "model": "gpt-4o", "messages": PROMPT, "max_tokens": 5})
        assert r.status_code == 200
        assert Decimal(str(own_key(gw, secret)["spend"])) == Decimal(r.headers["x-spaceai-cost"])


def test_spend_survives_a_restart(tmp_path, fake):
    models = [priced_model(fake)]
    with GatewayServer(tmp_path, models=models) as gw:
        secret = gw.create_key(budget=1)
        for _ in range(3):
            r = httpx.post(gw.api_url + "/chat/completions",
                           headers={"Authorization": f"Bearer {secret}"},
                           json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5})
            assert r.status_code == 200
    with GatewayServer(tmp_path, models=models) as gw:
        assert Decimal(str(own_key(gw, secret)["spend"])) == 3 * SERVED_COST


def test_monthly_budget_counts_this_months_spend(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        secret = gw.create_key(budget=0.002, budget_period="monthly")
        r = httpx.post(gw.api_url + "/chat/completions",
                       headers={"Authorization": f"Bearer {secret}"},
                       json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5})
        assert r.status_code == 200
        key = own_key(gw, secret)
        assert key["budget_period"] == "monthly"
        assert Decimal(str(key["spend"])) == SERVED_COST
        r = httpx.post(gw.api_url + "/chat/completions",
                       headers={"Authorization": f"Bearer {secret}"},
                       json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5})
        assert r.status_code == 429  # 0.00048 spent + 0.00075 reserve > 0.001
