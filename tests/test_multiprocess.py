"""Multi-process mode: `spaceai serve --workers N` on PostgreSQL and Redis shares keys,
budgets, limits and the ledger; a setting that cannot share them refuses to start."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from decimal import Decimal

import httpx
import pytest
import yaml
from click.testing import CliRunner
from fakes.upstream import Reply
from support.backends import REDIS_URL, priced_model
from support.server import ADMIN_KEY, GatewayServer, free_port

from spaceai.cli import main

PROMPT = [{"role": "user", "content": "Say hello to the budget test please"}]


def test_budget_race_across_two_worker_processes(tmp_path, fake, pg_url):
    config = tmp_path / "catalog.yaml"
    config.write_text(yaml.safe_dump({"models": [priced_model(fake)]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEAI_")}
    env.update(SPACEAI_CONFIG=str(config), SPACEAI_ADMIN_KEY=ADMIN_KEY,
               SPACEAI_DATABASE_URL=pg_url, SPACEAI_REDIS_URL=REDIS_URL,
               SPACEAI_LEDGER_FLUSH_S="0.05")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"  # a file, not a pipe: 4xx lines are logged at warning
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "spaceai", "serve", "--port", str(port),
                                 "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                                stderr=log_file, text=True)
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, "spaceai serve --workers 2 did not start"
            try:
                ready = httpx.get(url + "/health/ready", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert ready.json()["checks"]["redis"] == "ok"
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        created = httpx.post(url + "/admin/keys", headers=admin, json={"budget": 0.01}).json()
        auth = {"Authorization": f"Bearer {created['key']}"}
        fake.script(*[Reply(delay=0.05)] * 200)

        async def race() -> list[httpx.Response]:
            # a fresh connection per request, so both workers take a share
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
            async with httpx.AsyncClient(timeout=60, limits=limits) as client:
                return await asyncio.gather(*(client.post(
                    url + "/v1/chat/completions", headers=auth,
                    json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5})
                    for _ in range(200)))

        replies = asyncio.run(race())
        served = [r for r in replies if r.status_code == 200]
        refused = [r for r in replies if r.status_code != 200]
        assert 6 <= len(served) <= 20
        assert all(r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
                   for r in refused)
        charged = sum((Decimal(r.headers["x-spaceai-cost"]) for r in served), Decimal(0))
        assert charged <= Decimal("0.01")
        for _ in range(4):  # whichever worker answers reports the same spend
            key = httpx.get(url + "/v1/key", headers=auth).json()
            assert Decimal(str(key["spend"])) == charged
        deadline = time.monotonic() + 5
        while True:  # each worker's ledger flushes within its interval
            report = httpx.get(url + "/admin/usage", headers=admin,
                               params={"key": created["id"]}).json()
            if report["totals"]["requests"] == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert report["totals"]["requests"] == 200
        assert Decimal(str(report["totals"]["cost"])) == charged
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_revoked_key_stops_working_in_every_process_within_a_second(tmp_path, fake, pg_url):
    models = [priced_model(fake)]
    with GatewayServer(tmp_path, models=models, database_url=pg_url, redis_url=REDIS_URL) as a, \
            GatewayServer(tmp_path, models=models, database_url=pg_url, redis_url=REDIS_URL) as b:
        created = a.admin("POST", "/admin/keys", json={"rpm": 100}).json()
        auth = {"Authorization": f"Bearer {created['key']}"}
        body = {"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5}
        assert httpx.post(b.api_url + "/chat/completions", headers=auth, json=body).status_code \
            == 200
        assert a.admin("DELETE", f"/admin/keys/{created['id']}").status_code == 200
        revoked_at = time.monotonic()
        while httpx.post(b.api_url + "/chat/completions", headers=auth,
                         json=body).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0
            time.sleep(0.02)
        r = httpx.post(b.api_url + "/chat/completions", headers=auth, json=body)
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]


def test_ready_checks_redis(tmp_path, fake, pg_url):
    with GatewayServer(tmp_path, models=[priced_model(fake)], database_url=pg_url,
                       redis_url=REDIS_URL) as gw:
        r = httpx.get(gw.base_url + "/health/ready")
        assert r.status_code == 200
        assert r.json()["checks"] == {"database": "ok", "redis": "ok", "ledger": "ok",
                                       "gateway": "ok"}


@pytest.mark.parametrize("env, missing", [
    ({}, ["SPACEAI_DATABASE_URL", "SPACEAI_REDIS_URL"]),
    ({"SPACEAI_DATABASE_URL": "postgresql://127.0.0.1/x"}, ["SPACEAI_REDIS_URL"]),
    ({"SPACEAI_REDIS_URL": REDIS_URL}, ["SPACEAI_DATABASE_URL"]),
])
def test_several_workers_without_shared_state_refuse_to_start(tmp_path, env, missing):
    clean = {k: None for k in os.environ if k.startswith("SPACEAI_")}
    clean["SPACEAI_DATABASE_URL"] = f"sqlite:///{tmp_path}/x.db"
    result = CliRunner().invoke(main, ["serve", "--workers", "3"], env={**clean, **env})
    assert result.exit_code == 2
    for name in missing:
        assert name in result.output
    assert "--workers 3" in result.output
