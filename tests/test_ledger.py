"""The usage ledger: one row per request however it ends, nothing lost on SIGTERM, and the
usage API, the CLI and /v1/key agreeing to the cent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml
from fakes.upstream import Error, FakeOpenAI, Hang, Reply, SlowStream
from support.backends import REDIS_URL, priced_model
from support.server import ADMIN_KEY, GatewayServer, free_port

PROMPT = [{"role": "user", "content": "Say hello to the budget test please"}]
N = 3  # requests of each kind
CLI = [sys.executable, "-m", "spaceai"]


def _chat(gw: GatewayServer, secret: str, **body) -> httpx.Response:
    return httpx.post(gw.api_url + "/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                      json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 50, **body},
                      timeout=30)


def _disconnect_mid_stream(gw: GatewayServer, secret: str) -> int:
    """Read two content chunks of a stream, then hang up; the chunks read."""
    seen = 0
    with httpx.stream("POST", gw.api_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {secret}"},
                      json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 50,
                            "stream": True}, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                seen += 1
                if seen == 2:
                    break
    return seen


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"])
def test_every_ending_writes_exactly_one_row_with_its_tokens(tmp_path, fake, pg_url, backend):
    models = [priced_model(fake), priced_model(fake, id="slow", upstream_model="gpt-4o",
                                               timeout_s=0.3)]
    shared = {"database_url": pg_url, "redis_url": REDIS_URL} if backend != "sqlite" else {}
    with GatewayServer(tmp_path, models=models, **shared) as gw:
        secret = gw.create_key(budget=5)
        key_id = httpx.get(gw.api_url + "/key",
                           headers={"Authorization": f"Bearer {secret}"}).json()["id"]
        for _ in range(N):
            assert _chat(gw, secret).status_code == 200
            assert _chat(gw, secret, stream=True).status_code == 200
            fake.script(Error(500, message="boom"))
            assert _chat(gw, secret).status_code == 502
            fake.script(SlowStream(delay_per_chunk=0.05, chunks=40))
            assert _disconnect_mid_stream(gw, secret) == 2
            fake.script(Hang(seconds=2))
            r = _chat(gw, secret, model="slow")
            assert r.status_code == 504
        gw.flush_ledger()
        deadline = time.monotonic() + 5
        while gw.usage_rows(key=key_id)["totals"]["requests"] < 5 * N:
            assert time.monotonic() < deadline, "a disconnected stream was never recorded"
            time.sleep(0.05)
        report = gw.usage_rows(key=key_id, limit=100)
        rows = report["data"]
        assert len(rows) == 5 * N == report["totals"]["requests"]
        assert len({r["request_id"] for r in rows}) == 5 * N

        def kind(status, streamed, model="gpt-4o"):
            return [r for r in rows
                    if (r["status"], r["streamed"], r["model"]) == (status, streamed, model)]

        for row in kind("ok", False) + kind("ok", True):
            assert (row["prompt_tokens"], row["completion_tokens"]) == (10, 3)
            assert Decimal(str(row["cost"])) == Decimal("0.00048")
        assert len(kind("ok", False)) == len(kind("ok", True)) == N
        assert len(errors := kind("upstream_error", False)) == N
        assert all(r["http_status"] == 502 and r["completion_tokens"] == 0 for r in errors)
        assert len(gone := kind("client_disconnected", True)) == N
        for row in gone:  # billed for what upstream produced before the hang-up
            assert 2 <= row["completion_tokens"] < 40 and row["prompt_tokens"] == 15
            assert row["ttft_ms"] is not None
        assert len(timeouts := kind("timeout", False, "slow")) == N
        assert all(r["http_status"] == 504 for r in timeouts)
        # every reservation was settled exactly once: spend is exactly the ledger's sum
        spend = httpx.get(gw.api_url + "/key",
                          headers={"Authorization": f"Bearer {secret}"}).json()["spend"]
        assert Decimal(str(spend)) == Decimal(str(report["totals"]["cost"]))
        control = gw.gateway.control
        if hasattr(control, "outstanding_nanos"):
            assert control.outstanding_nanos(key_id) == 0


def _env(tmp_path: Path, fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    config = tmp_path / "catalog.yaml"
    config.write_text(yaml.safe_dump({"models": [priced_model(fake)]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPACEAI_")}
    env.update(SPACEAI_CONFIG=str(config), SPACEAI_ADMIN_KEY=ADMIN_KEY,
               SPACEAI_DATABASE_URL=f"sqlite:///{tmp_path}/spaceai.db", **extra)
    return env


def _cli(env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([*CLI, *args, "--json"], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout)


def _log_of(proc: subprocess.Popen) -> str:
    """What the server wrote to stderr (a file, never a pipe nobody reads: a pipe fills)."""
    path = getattr(proc, "log_path", None)
    return path.read_text(errors="replace")[-4000:] if path else "server exited"


def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, _log_of(proc)
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("spaceai serve did not become ready")


def test_sigterm_during_load_loses_no_row(tmp_path, fake):
    # rows stay queued (flush every 30 s) until the shutdown drains them
    env = _env(tmp_path, fake, SPACEAI_LEDGER_FLUSH_S="30")
    secret = _cli(env, "keys", "create", "--name", "load")["key"]
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=log_file, text=True)
    proc.log_path = log_path
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_up(url, proc)
        fake.script(*[Reply(delay=0.5)] * 60)

        client = httpx.Client(limits=httpx.Limits(max_connections=60), timeout=30)

        def one(_: int) -> str | None:
            try:
                r = client.post(url + "/v1/chat/completions",
                               headers={"Authorization": f"Bearer {secret}"},
                                json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5})
            except httpx.HTTPError:
                return None
            return r.headers["x-request-id"] if r.status_code == 200 else None

        with ThreadPoolExecutor(60) as pool:
            futures = [pool.submit(one, i) for i in range(60)]
            deadline = time.monotonic() + 10
            while len(fake.requests) < 60 and time.monotonic() < deadline:
                time.sleep(0.01)  # until every request is waiting on the upstream
            proc.send_signal(signal.SIGTERM)
            answered = {f.result() for f in futures} - {None}
        client.close()
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once done
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(answered) == 60  # graceful: in-flight requests finish
    engine = sa.create_engine(env["SPACEAI_DATABASE_URL"])
    with engine.connect() as conn:
        recorded = {r[0] for r in conn.execute(sa.text("SELECT request_id FROM usage"))}
        spend = conn.execute(sa.text("SELECT spend_nanos FROM api_keys")).scalar()
    assert answered <= recorded and len(recorded) == 60
    assert spend == 60 * 480_000


def test_usage_api_cli_and_own_key_agree_to_the_cent(tmp_path, fake):
    env = _env(tmp_path, fake)
    with GatewayServer(tmp_path, models=[priced_model(fake), priced_model(fake, id="mini")],
                       database_url=env["SPACEAI_DATABASE_URL"]) as gw:
        secret = gw.create_key(name="a")
        other = gw.create_key(name="b")
        auth = {"Authorization": f"Bearer {secret}"}
        costs = []
        for i in range(5):
            r = _chat(gw, secret, model="mini" if i % 2 else "gpt-4o", max_tokens=5)
            costs.append(Decimal(r.headers["x-spaceai-cost"]))
        _chat(gw, other)
        key = httpx.get(gw.api_url + "/key", headers=auth).json()
        assert Decimal(str(key["spend"])) == sum(costs)
        api = gw.usage_rows(key=key["id"])
        assert Decimal(str(api["totals"]["cost"])) == sum(costs) and api["totals"]["requests"] == 5
        cli = _cli(env, "usage", "--key", key["id"])
        assert cli["totals"] == api["totals"]
        assert Decimal(str(_cli(env, "keys", "list")["data"][0]["spend"])) == sum(costs)
        # filters and pages
        assert gw.usage_rows(key=key["id"], model="mini")["totals"]["requests"] == 2
        assert gw.usage_rows(since="2999-01-01")["totals"]["requests"] == 0
        assert gw.usage_rows()["totals"]["requests"] == 6
        first = gw.usage_rows(key=key["id"], limit=2)
        second = gw.usage_rows(key=key["id"], limit=2, offset=2)
        third = gw.usage_rows(key=key["id"], limit=2, offset=4)
        assert first["has_more"] and second["has_more"] and not third["has_more"]
        ids = [r["id"] for page in (first, second, third) for r in page["data"]]
        assert len(ids) == len(set(ids)) == 5


def test_rows_survive_the_writer_process_being_killed(tmp_path):
    """The writer process is restarted and the batch sent again: no row is lost."""
    import os
    import signal

    import sqlalchemy as sa

    from spaceai.metering.ledger import Ledger, UsageRecord
    from spaceai.storage.db import create_engine, migrate

    url = f"sqlite:///{tmp_path}/kill.db"
    migrate(url)
    engine = create_engine(url)
    ledger = Ledger(engine, flush_interval_s=0.05)
    ledger.start()

    def rec(i):
        return UsageRecord(request_id=f"r{i}", key_id=None, model="m", provider="openai",
                           endpoint="/v1/chat/completions", status="ok", http_status=200,
                           prompt_tokens=i, completion_tokens=1)

    for i in range(50):
        ledger.record(rec(i))
    assert ledger.flush(10)
    os.kill(ledger._proc.pid, signal.SIGKILL)
    for i in range(50, 120):
        ledger.record(rec(i))
    assert ledger.flush(20)
    ledger.close()
    with engine.connect() as conn:
        n, total = conn.execute(sa.text("SELECT count(*), sum(prompt_tokens) FROM usage")).one()
    assert n == 120 and total == sum(range(120))


def test_spool_rows_of_every_layout_read_as_the_current_fields():
    """Old spool lines (no version, fewer fields) and current ones decode to the same shape:
    the fields an old layout lacked are null, a reservation is found after any layout."""
    import orjson

    from spaceai.metering import layouts
    from spaceai.metering.ledger import UsageRecord

    # a field added to the record without a new layout would be lost from the spool
    assert tuple(UsageRecord.__dataclass_fields__) == layouts.FIELDS
    first = layouts.LAYOUTS[1]
    old = [f"v-{name}" for name in first]
    want = [f"v-{name}" if name in first else None for name in layouts.FIELDS]
    assert layouts.decode(old) == (want, None)
    assert layouts.decode([*old, "adm_1", "2026-11"]) == (want, ("adm_1", "2026-11"))
    values = tuple(f"now-{name}" for name in layouts.FIELDS)
    for reservation in (None, ("adm_2", "all")):
        line = orjson.loads(layouts.encode(values, reservation))
        assert line[0] == layouts.VERSION
        assert layouts.decode(line) == (list(values), reservation)
    with pytest.raises(ValueError, match="unknown layout"):
        layouts.decode([layouts.VERSION + 1, "a newer gateway's row"])
    with pytest.raises(ValueError, match="not a JSON array"):
        layouts.decode({"request_id": "r1"})


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0006_adds_the_routing_columns_to_existing_rows_and_downgrades(
        tmp_path, backend):
    from alembic import command
    from alembic.config import Config
    from support.backends import drop_database, postgres_url

    from spaceai.storage.db import MIGRATIONS, create_engine, migrate, normalize_url

    url = f"sqlite:///{tmp_path}/old.db" if backend == "sqlite" else postgres_url()
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url))
    routing = {"model_requested", "deployment", "retries", "fallbacks", "upstream_ms"}
    try:
        command.upgrade(cfg, "0005")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO usage (request_id, key_id, model, provider, endpoint, prompt_tokens,"
                " completion_tokens, cached_tokens, cost_nanos, status, http_status, streamed,"
                " latency_ms, created_at) VALUES ('before-0006', NULL, 'gpt-4o', 'openai',"
                " '/v1/chat/completions', 5, 3, 0, 42, 'ok', 200, false, 10.5,"
                " '2026-11-20 10:00:00')"))
        migrate(url)
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT request_id, cost_nanos, model_requested, deployment, retries, fallbacks,"
                " upstream_ms FROM usage")).one()
        assert tuple(row) == ("before-0006", 42, None, None, None, None, None)
        engine.dispose()
        command.downgrade(cfg, "0005")
        engine = create_engine(url)
        columns = {c["name"] for c in sa.inspect(engine).get_columns("usage")}
        assert not routing & columns and "latency_ms" in columns
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM usage")).scalar() == 1
        engine.dispose()
    finally:
        if backend != "sqlite":
            drop_database(url)


def test_a_spool_line_no_layout_reads_is_kept_as_a_dead_letter_not_skipped(tmp_path):
    """A row a newer gateway spooled (read after a downgrade) or a damaged line cannot be
    written, but it is not lost: it is kept verbatim as a dead letter (and counted), and the
    rows around it are written."""
    from spaceai.metering import layouts
    from spaceai.metering.ledger import UsageRecord
    from spaceai.metering.ledger_process import replay, target_of
    from spaceai.storage.db import create_engine, migrate

    url = f"sqlite:///{tmp_path}/ledger.db"
    migrate(url)
    engine = create_engine(url)

    def line(request_id: str) -> bytes:
        rec = UsageRecord(request_id=request_id, key_id="k", model="m", provider="openai",
                          endpoint="/v1/chat/completions", status="ok", http_status=200,
                          prompt_tokens=3, cost_nanos=7)
        return layouts.encode(tuple(getattr(rec, f) for f in layouts.FIELDS), None)

    newer = b'[%d,"from-a-newer-gateway","k","m",1,2,3]\n' % (layouts.VERSION + 1)
    damaged = b'["torn", 1, \n'
    segment = tmp_path / "spool" / "1234-seg-0"
    segment.parent.mkdir()
    segment.write_bytes(line("before") + newer + damaged + line("after"))
    rows, written = replay(*target_of(engine.url), str(segment))
    assert written == 2 and sorted(r.values[0] for r in rows) == ["after", "before"]
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.text("SELECT request_id FROM usage")).scalars()) == [
            "after", "before"]
        dead = conn.execute(sa.text(
            "SELECT request_id, payload, reason FROM usage_dead_letters ORDER BY id")).all()
    assert [d[0] for d in dead] == ["from-a-newer-gateway", None]
    assert [json.loads(d[1]) for d in dead] == [newer.decode()[:-1], damaged.decode()[:-1]]
    assert "unknown layout" in dead[0][2] and dead[1][2]
    assert not segment.exists()
