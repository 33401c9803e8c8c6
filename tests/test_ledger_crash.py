"""The ledger never loses a row, whatever process dies: real `spaceai serve` processes under
load, killed with SIGKILL (the ledger writer, one worker, the whole gateway), then restarted.

After each kill: every response a client received has its row, no row is there twice, and the
key's budget state (what `/v1/key` reports, what the database holds) equals the ledger.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
import sqlalchemy as sa
import yaml
from support.backends import REDIS_URL, priced_model
from support.server import ADMIN_KEY, free_port

from spaceai.storage.tables import NANOS_PER_USD

PROMPT = [{"role": "user", "content": "Count the rows for me please"}]


class Served:
    """A `spaceai serve` process group on one database and spool folder."""

    def __init__(self, tmp_path, fake, database_url: str, workers: int = 1,
                 redis_url: str | None = None) -> None:
        config = tmp_path / "catalog.yaml"
        config.write_text(yaml.safe_dump({"models": [priced_model(fake)]}))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEAI_")}
        self.env.update(SPACEAI_CONFIG=str(config), SPACEAI_ADMIN_KEY=ADMIN_KEY,
                        SPACEAI_DATABASE_URL=database_url, SPACEAI_LEDGER_FLUSH_S="0.05",
                        SPACEAI_LEDGER_DIR=str(tmp_path / "spool"))
        if redis_url:
            self.env["SPACEAI_REDIS_URL"] = redis_url
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spaceai", "serve", "--port", str(self.port), "--workers",
             str(self.workers)], env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, "spaceai serve exited"
            assert time.monotonic() < deadline, "spaceai serve did not become ready"
            try:
                if httpx.get(self.url + "/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def descendants(self) -> list[tuple[int, str]]:
        """(pid, command line) of every process below the server."""
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], capture_output=True,
                             text=True).stdout
        children: dict[int, list[tuple[int, str]]] = {}
        for line in out.splitlines():
            pid, ppid, args = line.split(None, 2)
            children.setdefault(int(ppid), []).append((int(pid), args))
        found, todo = [], [self.proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child[0])
        return found

    def writers(self) -> list[int]:
        return [pid for pid, args in self.descendants() if "ledger_process" in args]

    def kill_all(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def admin(self, method: str, path: str, **kw) -> httpx.Response:
        return httpx.request(method, self.url + path, timeout=30,
                             headers={"Authorization": f"Bearer {ADMIN_KEY}"}, **kw)


class Load:
    """Clients sending requests until stopped; the request ids of every answer they got."""

    def __init__(self, url: str, key: str, clients: int = 8) -> None:
        self.url, self.key, self.clients = url, key, clients
        self.received: list[str] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _client(self) -> None:
        auth = {"Authorization": f"Bearer {self.key}"}
        body = {"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5}
        limits = httpx.Limits(max_keepalive_connections=0)  # spread over the workers
        async with httpx.AsyncClient(timeout=10, limits=limits) as client:
            while not self._stop.is_set():
                try:
                    r = await client.post(self.url + "/v1/chat/completions", headers=auth,
                                          json=body)
                    if r.status_code == 200:
                        r.json()  # the whole answer arrived
                        self.received.append(r.headers["x-request-id"])
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1
                    await asyncio.sleep(0.02)

    async def _run(self) -> None:
        await asyncio.gather(*(self._client() for _ in range(self.clients)))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        start = len(self.received)
        while len(self.received) < start + n:
            assert time.monotonic() < deadline, f"only {len(self.received)} answers"
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)


def _ledger(database_url: str, key_id: str) -> tuple[list[str], int, int]:
    """(request ids, sum of their cost, the key's recorded spend) in the database."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text(
            "SELECT request_id FROM usage WHERE key_id = :k"), {"k": key_id})]
        cost = conn.execute(sa.text(
            "SELECT coalesce(sum(cost_nanos), 0) FROM usage WHERE key_id = :k"),
            {"k": key_id}).scalar()
        spend = conn.execute(sa.text("SELECT spend_nanos FROM api_keys WHERE id = :k"),
                             {"k": key_id}).scalar()
    engine.dispose()
    return ids, int(cost), int(spend)


def _check_ledger(server: Served, database_url: str, key: dict, received: list[str]) -> None:
    """Every answer has its row, none twice, and every view of the key's spend agrees."""
    deadline = time.monotonic() + 30
    while True:  # the restarted process's writer commits within its flush interval
        ids, cost, spend = _ledger(database_url, key["id"])
        if set(received) <= set(ids) and cost == spend or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    missing = set(received) - set(ids)
    assert not missing, f"{len(missing)} of {len(received)} answered requests have no row"
    assert len(ids) == len(set(ids)), "a request was recorded twice"
    assert spend == cost, "the key's recorded spend differs from its ledger rows"
    reported = round(httpx.get(server.url + "/v1/key", timeout=10, headers={
        "Authorization": f"Bearer {key['key']}"}).json()["spend"] * NANOS_PER_USD)
    assert reported == cost, "the budget the gateway enforces differs from the ledger"


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/crash.db"


def _run_kill(tmp_path, fake, database_url, kill: str, workers: int = 1,
              redis_url: str | None = None) -> None:
    fake.script()  # default answers
    server = Served(tmp_path, fake, database_url, workers, redis_url)
    server.start()
    try:
        key = server.admin("POST", "/admin/keys", json={"budget": 1000}).json()
        with Load(server.url, key["key"]) as load:
            load.wait_for(150)
            if kill == "writer":
                for pid in server.writers():
                    os.kill(pid, signal.SIGKILL)
                load.wait_for(150)
                if workers == 1:  # the restart is told, in the health detail and the metrics
                    ledger = httpx.get(server.url + "/health/ready").json()["ledger"]
                    assert ledger["writer_restarts"] == 1 and ledger["writer"] == "ok"
                    text = httpx.get(server.url + "/metrics").text
                    assert "spaceai_ledger_writer_restarts_total 1.0" in text
                    assert "spaceai_ledger_lag_bytes" in text
            elif kill == "worker":
                workers_now = [pid for pid, args in server.descendants()
                               if "ledger_process" not in args and "multiprocessing" in args]
                assert workers_now, server.descendants()
                os.kill(workers_now[0], signal.SIGKILL)
                load.wait_for(150)
            else:
                server.kill_all()
                time.sleep(0.3)
                server.start()
                load.wait_for(50)
        _check_ledger(server, database_url, key, load.received)
    finally:
        server.stop()


@pytest.mark.parametrize("kill", ["writer", "gateway"])
def test_sqlite_rows_survive_kill_9(tmp_path, fake, sqlite_url, kill):
    _run_kill(tmp_path, fake, sqlite_url, kill)


@pytest.mark.parametrize("kill", ["writer", "worker", "gateway"])
def test_two_workers_rows_and_budgets_survive_kill_9(tmp_path, fake, pg_url, kill):
    _run_kill(tmp_path, fake, pg_url, kill, workers=2, redis_url=REDIS_URL)
    # Redis's counter (what every worker enforces) equals the ledger too
    conn = psycopg.connect(pg_url)
    key_id, spend = conn.execute("SELECT id, spend_nanos FROM api_keys").fetchone()
    conn.close()
    counter = redis.Redis.from_url(REDIS_URL).get(f"spaceai:{{{key_id}}}:spend:all")
    assert int(counter) == spend


def test_nul_byte_row_takes_no_other_row_with_it(pg_url, tmp_path):
    from spaceai.metering.ledger import Ledger, UsageRecord
    from spaceai.storage.db import create_engine, migrate

    migrate(pg_url)
    engine = create_engine(pg_url)
    ledger = Ledger(engine, flush_interval_s=0.05, folder=str(tmp_path / "spool"))
    ledger.start()
    for i in range(501):
        ledger.record(UsageRecord(
            request_id=f"nul-{i}", key_id=f"k{i % 7}", model="m", provider="openai",
            endpoint="/v1/chat/completions", status="error", http_status=400,
            error="upstream said: \x00 quoted" if i == 250 else None))
    assert ledger.flush(20)
    ledger.close()
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT count(*) FROM usage WHERE request_id LIKE 'nul-%'")).scalar() == 501
        error = conn.execute(sa.text(
            "SELECT error FROM usage WHERE request_id = 'nul-250'")).scalar()
    assert error == "upstream said: \\x00 quoted"


def test_row_the_database_refuses_goes_to_dead_letters_alone(pg_url, tmp_path):
    from spaceai.metering.ledger import Ledger, UsageRecord
    from spaceai.storage.db import create_engine, migrate

    migrate(pg_url)
    engine = create_engine(pg_url)
    ledger = Ledger(engine, flush_interval_s=0.05, folder=str(tmp_path / "spool"))
    ledger.start()
    bad = UsageRecord(request_id="bad", key_id="k", model="m", provider="openai",
                      endpoint="/v1/chat/completions", status="ok", http_status=200)
    for i in range(300):
        ledger.record(UsageRecord(request_id=f"good-{i}", key_id="k", model="m",
                                  provider="openai", endpoint="/v1/chat/completions",
                                  status="ok", http_status=200, cost_nanos=1))
        if i == 150:
            bad.created_at = "the year of the dragon"  # no database takes this as a time
            ledger.record(bad)
    assert ledger.flush(20)
    health = ledger.health()
    ledger.close()
    with engine.connect() as conn:
        assert conn.execute(sa.text(
            "SELECT count(*) FROM usage WHERE request_id LIKE 'good-%'")).scalar() == 300
        dead = conn.execute(sa.text("SELECT request_id, reason FROM usage_dead_letters")).all()
    assert [d[0] for d in dead] == ["bad"] and dead[0][1]
    assert health["dead_letters"] == 1


def test_a_spool_left_before_an_upgrade_is_replayed_and_settled_once(tmp_path, fake, pg_url):
    """A gateway killed before the upgrade left a segment in the first, unversioned row
    layout: the upgraded gateway writes its rows at start-up (the fields that layout lacked
    null) and settles their budget reservation in Redis exactly once, even when the segment
    is replayed a second time."""
    import orjson
    from support.server import GatewayServer

    from spaceai.catalog import Catalog
    from spaceai.keys import KeyStore
    from spaceai.limits.shared import RedisControl, redis_keys
    from spaceai.metering.ledger_process import target_of
    from spaceai.metering.spool import spool_dir
    from spaceai.storage.db import create_engine, migrate
    from spaceai.types import ChatRequest

    migrate(pg_url)
    engine = create_engine(pg_url)
    secret, key = KeyStore(engine).create(name="before-upgrade", budget=1.0)
    model = Catalog.from_dicts([priced_model(fake)]).get("gpt-4o")

    async def admit():  # the dead gateway's admission: a reservation left open in Redis
        control = RedisControl(REDIS_URL, engine)
        try:
            return await control.admit(key, model, ChatRequest(
                model="gpt-4o", messages=PROMPT, params={"max_tokens": 5}))
        finally:
            await control.close()

    admission = asyncio.run(admit())
    cost = 123_456
    at = "2026-11-20T10:00:00.123456+00:00"
    # the old gateway's bytes: its 16 fields in order, then admission id and budget period
    served = ["old-served", key.id, "gpt-4o", "openai", "/v1/chat/completions", "ok", 200, 10,
              3, 0, cost, None, False, 12.5, None, at, admission.id, admission.period]
    refused = ["old-refused", key.id, "gpt-4o", "openai", "/v1/chat/completions", "refused",
               429, 0, 0, 0, 0, "over budget", False, 0.4, None, at]
    folder = tmp_path / "spool"
    segment = Path(spool_dir(str(folder), target_of(engine.url)[1])) / "4242-0ld0-000001.spool"
    spool = b"".join(orjson.dumps(row) + b"\n" for row in (served, refused))
    r = redis.Redis.from_url(REDIS_URL)
    spend_key, reserved_key, reservations_key = redis_keys(key.id, admission.period)[:3]
    assert r.hexists(reservations_key, admission.id) and int(r.get(reserved_key)) > 0

    for _ in range(2):  # the second time: as if a crash came before the segment was removed
        segment.write_bytes(spool)
        with GatewayServer(tmp_path, models=[priced_model(fake)], database_url=pg_url,
                           redis_url=REDIS_URL, settings={"ledger_dir": str(folder)}) as gw:
            assert not segment.exists()
            me = httpx.get(gw.api_url + "/key", headers={"Authorization": f"Bearer {secret}"})
            assert round(me.json()["spend"] * NANOS_PER_USD) == cost
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT request_id, status, cost_nanos, model_requested, retries, fallbacks,"
                " upstream_ms, deployment FROM usage WHERE key_id = :k ORDER BY request_id"),
                {"k": key.id}).all()
            spend = conn.execute(sa.text("SELECT spend_nanos FROM api_keys WHERE id = :k"),
                                 {"k": key.id}).scalar()
        assert [tuple(row) for row in rows] == [
            ("old-refused", "refused", 0, None, None, None, None, None),
            ("old-served", "ok", cost, None, None, None, None, None)]
        assert spend == cost
        assert int(r.get(spend_key)) == cost  # settled once, not per replay
        assert not r.hexists(reservations_key, admission.id) and int(r.get(reserved_key)) == 0
    engine.dispose()
