"""The console's admin endpoints: the overview from the rollup, the request log, key edits.

A real gateway on loopback with fake upstreams; the rollup is checked against the ledger it
summarises, and the overview against ``/admin/usage`` and ``spaceai usage --json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa
from fakes.upstream import Error, Reply, SlowStream, unused_port
from support.backends import REDIS_URL, priced_model, routed_models
from support.server import GatewayServer

from spaceai.metering import rollup

PROMPT = [{"role": "user", "content": "Count the requests on the console please"}]
CLI = [sys.executable, "-m", "spaceai"]


def _chat(gw: GatewayServer, secret: str, model: str = "gpt-4o", **body) -> httpx.Response:
    return httpx.post(gw.api_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {secret}"},
                      json={"model": model, "messages": PROMPT, "max_tokens": 20, **body},
                      timeout=30)


def _traffic(gw: GatewayServer, fake) -> dict[str, str]:
    """A mix over two keys and two models, with upstream errors and refusals."""
    a = gw.create_key(name="team-a")
    b = gw.create_key(name="team-b", models=["mini"])
    for i in range(6):
        assert _chat(gw, a, model="mini" if i % 3 == 0 else "gpt-4o").status_code == 200
    for _ in range(3):
        assert _chat(gw, b, model="mini", stream=True).status_code == 200
    fake.script(Error(500, message="boom"))
    assert _chat(gw, a).status_code == 502
    poor = gw.create_key(name="poor", budget=0.00001)
    assert _chat(gw, poor).status_code == 429  # over its budget: refused, and recorded
    assert _chat(gw, b, model="gpt-4o").status_code == 403  # a model it may not use: too
    # no such key: no key to record it under (its access line says why)
    assert httpx.post(gw.api_url + "/chat/completions", json={"model": "gpt-4o"},
                      headers={"Authorization": "Bearer sk-space-nope"}).status_code == 401
    return {"a": a, "b": b, "poor": poor}


def _rollup_from_ledger(engine: sa.Engine) -> dict[tuple, list]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT created_at, key_id, model, status, prompt_tokens, completion_tokens, "
            "cost_nanos, latency_ms FROM usage")).all()
    index = {n: i for i, n in enumerate(["created_at", "key_id", "model", "status",
                                         "prompt_tokens", "completion_tokens", "cost_nanos",
                                         "latency_ms"])}
    return rollup.expand(rollup.aggregate(rows, index))


def _rollup_table(engine: sa.Engine) -> dict[tuple, list]:
    cols = rollup.SUM_COLUMNS + rollup.BIN_COLUMNS
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            f"SELECT span_hours, start_hour, key_id, model, {', '.join(cols)} "
            "FROM usage_rollup")).all()
    return {(r[0], r[1], r[2], r[3]): list(r[4:]) for r in rows}


def _assert_agree(engine: sa.Engine) -> None:
    expected, actual = _rollup_from_ledger(engine), _rollup_table(engine)
    assert expected.keys() == actual.keys()
    for group, want in expected.items():
        got = actual[group]
        assert got[:5] == want[:5], group  # requests, errors, tokens, cost: exact
        assert got[5] == pytest.approx(want[5])  # latency sum
        assert got[6:] == want[6:], group  # latency histogram


@pytest.fixture
def served(tmp_path, fake):
    models = [priced_model(fake), priced_model(fake, id="mini",
                                               pricing={"input": 0.000001, "output": 0.000002})]
    with GatewayServer(tmp_path, models=models) as gw:
        yield gw


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"])
def test_rollup_always_agrees_with_the_ledger(tmp_path, fake, pg_url, backend):
    shared = {"database_url": pg_url, "redis_url": REDIS_URL} if backend != "sqlite" else {}
    models = [priced_model(fake), priced_model(fake, id="mini")]
    with GatewayServer(tmp_path, models=models, **shared) as gw:
        _traffic(gw, fake)
        gw.flush_ledger()
        _assert_agree(gw.gateway.engine)
        # a replayed spool inserts nothing new, and adds nothing to the rollup
        before = _rollup_table(gw.gateway.engine)
        from spaceai.metering.ledger_process import Store, target_of
        kind, target = target_of(gw.gateway.engine.url)
        store = Store(kind, target, str(tmp_path))
        with gw.gateway.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT {', '.join(_fields())} FROM usage")).all()
        assert store.write([list(r) for r in rows]) == []
        assert _rollup_table(gw.gateway.engine) == before
        _assert_agree(gw.gateway.engine)


def _fields() -> tuple[str, ...]:
    from spaceai.metering.layouts import FIELDS
    return FIELDS


def test_overview_figures_equal_the_usage_api_and_the_cli(served, fake, tmp_path):
    gw = served
    _traffic(gw, fake)
    for window, bucket, count in (("24h", "hour", 24), ("7d", "day", 7), ("30d", "day", 30),
                                  ("7d", "hour", 168)):
        ov = gw.admin("GET", "/admin/overview", params={"window": window, "bucket": bucket})
        assert ov.status_code == 200, ov.text
        ov = ov.json()
        assert len(ov["buckets"]) == count and ov["buckets"][0]["start"] == ov["since"]
        usage = gw.usage_rows(since=ov["since"])["totals"]
        t = ov["totals"]
        assert {k: t[k] for k in usage} == usage
        assert sum(b["requests"] for b in ov["buckets"]) == t["requests"] == 12
        assert Decimal(str(t["cost"])) == sum(Decimal(str(b["cost"])) for b in ov["buckets"])
    env = {**os.environ, "SPACEAI_DATABASE_URL": gw.settings.database_url,
           "SPACEAI_CONFIG": gw.settings.config_path}
    cli = json.loads(subprocess.run([*CLI, "usage", "--json", "--since", ov["since"]], env=env,
                                    capture_output=True, text=True, check=True).stdout)
    assert cli["totals"] == {k: ov["totals"][k] for k in cli["totals"]}
    # by key and by model, against the usage API's groups
    groups = gw.usage_rows(since=ov["since"])["by_key_model"]
    per_key: dict = defaultdict(lambda: [0, Decimal(0)])
    per_model: dict = defaultdict(lambda: [0, Decimal(0)])
    for g in groups:
        for bag, ident in ((per_key, g["key_id"]), (per_model, g["model"])):
            bag[ident][0] += g["requests"]
            bag[ident][1] += Decimal(str(g["cost"]))
    assert {k["key_id"]: [k["requests"], Decimal(str(k["cost"]))] for k in ov["by_key"]} == per_key
    assert {m["model"]: [m["requests"], Decimal(str(m["cost"]))]
            for m in ov["by_model"]} == per_model
    names = {k["name"] for k in ov["by_key"]}
    assert names == {"team-a", "team-b", "poor"}
    assert t["errors"] == 3  # the upstream 500, the budget refusal, the model not allowed
    assert t["p50_latency_ms"] is not None and t["p95_latency_ms"] >= t["p50_latency_ms"]
    # filtered to one model
    mini = gw.admin("GET", "/admin/overview", params={"model": "mini"}).json()
    assert mini["totals"]["requests"] == per_model["mini"][0]
    assert gw.admin("GET", "/admin/overview", params={"window": "1y"}).status_code == 400


def test_request_log_filters_and_pages_newest_first(served, fake):
    gw = served
    _traffic(gw, fake)
    log = gw.admin("GET", "/admin/requests", params={"limit": 5}).json()
    assert len(log["data"]) == 5 and log["has_more"]
    ids = [r["id"] for r in log["data"]]
    assert ids == sorted(ids, reverse=True)
    rest = gw.admin("GET", "/admin/requests",
                    params={"before": log["next_before"], "limit": 100}).json()
    assert len(rest["data"]) == 7 and not rest["has_more"]
    errors = gw.admin("GET", "/admin/requests", params={"status": "error"}).json()["data"]
    assert sorted(r["http_status"] for r in errors) == [403, 429, 502]
    refused = gw.admin("GET", "/admin/requests", params={"status": "refused"}).json()["data"]
    assert sorted(r["http_status"] for r in refused) == [403, 429]
    assert [r["http_status"] for r in gw.admin(
        "GET", "/admin/requests", params={"status": "502"}).json()["data"]] == [502]
    mini = gw.admin("GET", "/admin/requests", params={"model": "mini"}).json()["data"]
    assert mini and all(r["model"] == "mini" for r in mini)
    row = mini[0]
    assert row["key_name"] == "team-b" and row["streamed"] and row["ttft_ms"] is not None
    for field in ("request_id", "endpoint", "prompt_tokens", "completion_tokens", "cost",
                  "latency_ms", "created_at", "status", "error", "provider"):
        assert field in row
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert gw.admin("GET", "/admin/requests", params={"since": future}).json()["data"] == []
    assert gw.admin("GET", "/admin/requests", params={"limit": "x"}).status_code == 400
    assert gw.admin("GET", "/admin/requests").headers["content-type"].startswith(
        "application/json")
    assert httpx.get(gw.base_url + "/admin/requests").status_code == 401
    activity = gw.admin("GET", "/admin/keys/activity").json()["data"]
    assert all(a["last_used_at"] for a in activity)
    models = gw.admin("GET", "/admin/models").json()["data"]
    assert {m["id"] for m in models} == {"gpt-4o", "mini"}
    assert all("pricing" in m and "capabilities" in m for m in models)


def test_request_log_shows_how_requests_were_routed_and_which_were_turned_away(
        tmp_path, fake):
    """A fallback (its first deployment down), a retried stream and an invalid request of a
    known key, as the console's request log and overview show them."""
    models = routed_models(fake, retries=2)
    with GatewayServer(tmp_path, models=models) as gw:
        secret = gw.create_key(name="routed")
        key_id = httpx.get(gw.api_url + "/key",
                           headers={"Authorization": f"Bearer {secret}"}).json()["id"]
        fake.script(Reply(delay=0.3))
        fell_back = _chat(gw, secret, model="primary")
        assert fell_back.status_code == 200 and fell_back.json()["model"] == "gpt-4o"
        fake.script(Error(500, message="flaky"), SlowStream(delay_per_chunk=0.05, chunks=4))
        retried = _chat(gw, secret, model="flaky", stream=True,
                        stream_options={"include_usage": True})
        assert retried.status_code == 200 and "[DONE]" in retried.text
        invalid = _chat(gw, secret, model="flaky", max_tokens=-1)
        assert invalid.status_code == 400
        log = gw.admin("GET", "/admin/requests", params={"key": key_id}).json()["data"]
        rows = {r["request_id"]: r for r in log}
        assert len(rows) == 3
        row = rows[fell_back.headers["x-request-id"]]
        assert (row["model_requested"], row["model"], row["fallbacks"], row["retries"],
                row["status"]) == ("primary", "gpt-4o", 1, 0, "ok")
        assert row["deployment"] == fake.base_url.rsplit("/", 1)[0]
        assert row["upstream_ms"] >= 300  # the upstream's own delay
        row = rows[retried.headers["x-request-id"]]
        assert (row["model_requested"], row["model"], row["fallbacks"], row["retries"],
                row["streamed"]) == ("flaky", "flaky", 0, 1, True)
        assert row["upstream_ms"] >= 150  # a stream waits on its upstream until it ends
        row = rows[invalid.headers["x-request-id"]]
        assert (row["status"], row["http_status"], row["model_requested"], row["cost"],
                row["prompt_tokens"], row["completion_tokens"]) == (
            "invalid_request", 400, "flaky", 0, 0, 0)
        assert "max_tokens" in row["error"]
        for row in log:  # the latency splits into upstream time and the gateway's own
            assert row["upstream_ms"] + row["overhead_ms"] == pytest.approx(row["latency_ms"],
                                                                            abs=0.01)
            assert row["overhead_ms"] >= 0
        # filters: the new statuses, and a model asked for as well as one that served
        bad = gw.admin("GET", "/admin/requests", params={"status": "invalid_request"}).json()
        assert [r["request_id"] for r in bad["data"]] == [invalid.headers["x-request-id"]]
        assert [r["http_status"] for r in gw.admin(
            "GET", "/admin/requests", params={"status": "400"}).json()["data"]] == [400]
        for model in ("primary", "gpt-4o"):
            found = gw.admin("GET", "/admin/requests", params={"model": model}).json()["data"]
            assert [r["request_id"] for r in found] == [fell_back.headers["x-request-id"]]
        # the invalid request is the key's one error in the overview (from the rollup)
        ov = gw.admin("GET", "/admin/overview", params={"key": key_id}).json()
        assert (ov["totals"]["requests"], ov["totals"]["errors"]) == (3, 1)
        spend = httpx.get(gw.api_url + "/key",
                          headers={"Authorization": f"Bearer {secret}"}).json()["spend"]
        streamed = json.loads(retried.text.split("data: ")[-2])["usage"]["cost"]
        assert Decimal(str(spend)) == Decimal(fell_back.headers["x-spaceai-cost"]) + Decimal(
            str(streamed))  # the invalid request charged nothing


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis"])
def test_a_budget_edited_down_refuses_the_next_request(tmp_path, fake, pg_url, backend):
    shared = {"database_url": pg_url, "redis_url": REDIS_URL} if backend != "sqlite" else {}
    with GatewayServer(tmp_path, models=[priced_model(fake), priced_model(fake, id="mini")],
                       **shared) as gw:
        secret = gw.create_key(name="edit-me", budget=10)
        key_id = httpx.get(gw.api_url + "/key",
                           headers={"Authorization": f"Bearer {secret}"}).json()["id"]
        assert _chat(gw, secret).status_code == 200
        r = gw.admin("PATCH", f"/admin/keys/{key_id}", json={"budget": 0.0001, "rpm": 100})
        assert r.status_code == 200, r.text
        assert r.json()["budget"] == 0.0001 and r.json()["rpm"] == 100
        refused = _chat(gw, secret)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "insufficient_quota"
        # raised again, and limited to one model
        r = gw.admin("PATCH", f"/admin/keys/{key_id}", json={"budget": None, "models": ["mini"]})
        assert r.json()["budget"] is None and r.json()["models"] == ["mini"]
        assert _chat(gw, secret, model="mini").status_code == 200
        assert _chat(gw, secret).status_code == 403
        # an rpm of 1: the next request is over it
        gw.admin("PATCH", f"/admin/keys/{key_id}", json={"rpm": 1, "models": None})
        codes = [_chat(gw, secret).status_code for _ in range(2)]
        assert 429 in codes
        # expired now
        gw.admin("PATCH", f"/admin/keys/{key_id}",
                 json={"rpm": None, "expires_at": datetime.now(UTC).isoformat()})
        assert _chat(gw, secret).status_code == 401
        # bad edits
        assert gw.admin("PATCH", f"/admin/keys/{key_id}", json={"budget": "x"}).status_code == 400
        assert gw.admin("PATCH", f"/admin/keys/{key_id}", json={"rpm": 0}).status_code == 400
        assert gw.admin("PATCH", f"/admin/keys/{key_id}", json={"models": ["nope"]}).status_code == 400
        assert gw.admin("PATCH", f"/admin/keys/{key_id}", json={"colour": 1}).status_code == 400
        assert gw.admin("PATCH", "/admin/keys/key_missing", json={"rpm": 5}).status_code == 404
        assert httpx.patch(f"{gw.base_url}/admin/keys/{key_id}", json={"rpm": 5}).status_code == 401


def test_cli_keys_update_changes_limits_and_clears_them(served):
    gw = served
    env = {**os.environ, "SPACEAI_DATABASE_URL": gw.settings.database_url,
           "SPACEAI_CONFIG": gw.settings.config_path}

    def cli(*args: str) -> dict:
        out = subprocess.run([*CLI, "keys", *args, "--json"], env=env, capture_output=True,
                             text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    key = cli("create", "--name", "cli", "--budget", "5")
    got = cli("update", key["id"], "--budget", "1.5", "--rpm", "7", "--tpm", "900",
              "--models", "mini", "--expires", "30d")
    assert (got["budget"], got["rpm"], got["tpm"], got["models"]) == (1.5, 7, 900, ["mini"])
    assert got["expires_at"]
    got = cli("update", key["id"], "--budget", "none", "--rpm", "none", "--models", "all",
              "--expires", "never")
    assert (got["budget"], got["rpm"], got["tpm"], got["models"], got["expires_at"]) == (
        None, None, 900, None, None)
    assert cli("update", key["id"], "--alerts", "90,25")["alert_thresholds"] == [25, 90]
    assert cli("update", key["id"], "--alerts", "default")["alert_thresholds"] is None
    bad = subprocess.run([*CLI, "keys", "update", key["id"], "--models", "nope"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown models" in bad.stderr
    missing = subprocess.run([*CLI, "keys", "update", "key_missing", "--rpm", "3"], env=env,
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "no key" in missing.stderr


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_sums_existing_ledger_rows_into_the_rollup(tmp_path, backend):
    from alembic import command
    from alembic.config import Config
    from support.backends import drop_database, postgres_url

    from spaceai.storage.db import MIGRATIONS, create_engine, migrate, normalize_url

    url = f"sqlite:///{tmp_path}/old.db" if backend == "sqlite" else postgres_url()
    try:
        _migrate_with_old_rows(url, Config, command, MIGRATIONS, create_engine, migrate,
                               normalize_url)
    finally:
        if backend != "sqlite":
            drop_database(url)


def _migrate_with_old_rows(url, Config, command, MIGRATIONS, create_engine, migrate,  # noqa: N803
                           normalize_url) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url))
    command.upgrade(cfg, "0002")
    engine = create_engine(url)
    start = datetime(2026, 11, 1, 10, 59, tzinfo=UTC)
    with engine.begin() as conn:
        for i in range(50):
            conn.execute(sa.text(
                "INSERT INTO usage (request_id, key_id, model, provider, endpoint, prompt_tokens,"
                " completion_tokens, cached_tokens, cost_nanos, status, http_status, streamed,"
                " latency_ms, created_at) VALUES (:r, :k, :m, 'openai', '/v1/chat/completions',"
                " :p, :c, 0, :cost, :s, :h, :streamed, :lat, :at)"),
                {"r": f"old-{i}", "k": None if i % 7 == 0 else f"key_{i % 3}",
                 "m": "gpt-4o" if i % 2 else "mini", "p": i, "c": 2 * i, "cost": 1000 * i,
                 "s": "ok" if i % 5 else "upstream_error", "h": 200 if i % 5 else 502,
                 "lat": 0.5 + i * 37.3, "streamed": False, "at": start + timedelta(minutes=i)
                 if url.startswith("postgres") else
                 (start + timedelta(minutes=i)).replace(tzinfo=None).isoformat(" ")})
    migrate(url)
    _assert_agree(engine)
    table = _rollup_table(engine)
    for span in (1, 24):  # every row counted once per span, in its key's rows and in "*"
        assert sum(v[0] for g, v in table.items() if g[0] == span and g[2] != "*") == 50
        assert sum(v[0] for g, v in table.items() if g[0] == span and g[2] == "*") == 50
    assert len({g[1] for g in table if g[0] == 1}) == 2  # two hours
    assert len({g[1] for g in table if g[0] == 24}) == 1  # one day
    engine.dispose()


def test_rollup_percentiles_are_within_one_histogram_bin_of_the_exact_ones():
    import random

    rng = random.Random(7)
    for _ in range(20):
        latencies = [rng.lognormvariate(rng.uniform(0, 8), rng.uniform(0.1, 2)) for _ in range(500)]
        counts = [0] * rollup.BINS
        for ms in latencies:
            counts[rollup.latency_bin(ms)] += 1
        ordered = sorted(latencies)
        for q in (0.5, 0.95):
            exact = ordered[int(q * len(ordered)) - 1]
            estimate = rollup.percentile(counts, q)
            assert exact / 2 ** 0.5 <= estimate <= exact * 2 ** 0.5 or abs(estimate - exact) < 1
    assert rollup.percentile([0] * rollup.BINS, 0.5) is None


def test_overview_over_a_month_of_rows_equals_the_ledger_for_every_window(tmp_path):
    """Rows spread over 40 days: hour and day rollup rows stitched at the window's edges."""
    import random

    from spaceai.metering.ledger_process import Store
    from spaceai.metering.overview import overview
    from spaceai.metering.usage import query_usage
    from spaceai.storage.db import create_engine, migrate

    path = tmp_path / "month.db"
    url = f"sqlite:///{path}"
    migrate(url)
    engine = create_engine(url)
    store = Store("sqlite", str(path), str(tmp_path))
    rng = random.Random(3)
    now = datetime.now(UTC)
    rows = []
    for i in range(3000):
        at = now - timedelta(seconds=rng.random() * 40 * 86400)
        status = rng.choice(["ok", "ok", "ok", "upstream_error"])
        row = {"request_id": f"r{i}", "key_id": rng.choice(["key_a", "key_b", None]),
               "model": rng.choice(["m1", "m2"]), "provider": "openai",
               "endpoint": "/v1/chat/completions", "status": status,
               "http_status": 200 if status == "ok" else 502,
               "prompt_tokens": rng.randint(1, 50), "completion_tokens": rng.randint(0, 50),
               "cached_tokens": 0, "cost_nanos": rng.randint(0, 10**6), "error": None,
               "streamed": False, "latency_ms": rng.random() * 500, "ttft_ms": None,
               "created_at": at.replace(tzinfo=None).isoformat(" ", "microseconds")}
        rows.append([row.get(f) for f in _fields()])
    store.write(rows)
    _assert_agree(engine)
    for window, bucket in (("24h", "hour"), ("24h", "day"), ("7d", "hour"), ("7d", "day"),
                           ("30d", "day"), ("30d", "hour")):
        for key_id, model in ((None, None), ("key_a", None), (None, "m2"), ("key_b", "m1")):
            ov = overview(engine, window, bucket, key_id=key_id, model=model, split="model")
            ledger = query_usage(engine, key_id=key_id, model=model, since=ov["since"])
            want = ledger["totals"]
            assert {k: ov["totals"][k] for k in want} == want, (window, bucket, key_id, model)
            assert 0 <= ov["totals"]["errors"] <= want["requests"]
            if window == "30d" and not key_id and not model:
                assert 0 < ov["totals"]["errors"] < want["requests"]
            assert sum(b["requests"] for b in ov["buckets"]) == want["requests"]
            by_key: dict = defaultdict(int)
            by_model: dict = defaultdict(int)
            for g in ledger["by_key_model"]:
                by_key[g["key_id"]] += g["requests"]
                by_model[g["model"]] += g["requests"]
            assert {k["key_id"]: k["requests"] for k in ov["by_key"]} == by_key
            assert {m["model"]: m["requests"] for m in ov["by_model"]} == by_model
            series = ov["series"]
            assert sum(sum(s["requests"]) for s in series) == want["requests"]
            assert {s["model"] for s in series} == {m for m, n in by_model.items() if n}


def test_models_view_shows_each_deployments_health_without_credentials(tmp_path, fake):

    dead = f"http://127.0.0.1:{unused_port()}/v1"
    model = {**priced_model(fake, "two-ways", max_retries=1),
             "deployments": [{"base_url": dead}, {"base_url": fake.base_url}]}
    with GatewayServer(tmp_path, models=[model]) as gw:
        secret = gw.create_key()
        for _ in range(4):
            assert _chat(gw, secret, "two-ways").status_code == 200
        data = gw.admin("GET", "/admin/models").json()["data"]
        deployments = {d["upstream"]: d for d in data[0]["deployments"]}
        down = deployments[dead.rsplit("/", 1)[0]]
        up = deployments[fake.base_url.rsplit("/", 1)[0]]
        assert down["recent_error_rate"] == 1.0 and down["recent_attempts"] >= 3
        assert down["cooling_down_s"] > 0  # three failures in a row: skipped for a while
        assert up["recent_error_rate"] == 0.0 and up["recent_attempts"] == 4
        assert fake.api_key not in str(data)
