"""Request and response bodies: stored only when the operator turns it on (globally or per
key), without secrets, shown to the admin, and purged after their retention."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta

import httpx
import sqlalchemy as sa
from fakes.upstream import Reply
from support.backends import priced_model
from support.server import GatewayServer

from spaceai.bodies import redact
from spaceai.keys import now

SECRET_IN_BODY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


def _chat(gw: GatewayServer, secret: str, **body) -> httpx.Response:
    payload = {"model": "gpt-4o", "max_tokens": 20, "user": SECRET_IN_BODY,
               "messages": [{"role": "user", "content": f"my key is {SECRET_IN_BODY} hello"}],
               "metadata": {"api_key": "plain-secret-value-1234"}, **body}
    return httpx.post(gw.api_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {secret}"}, json=payload, timeout=30)


def _stored(gw: GatewayServer) -> list[tuple]:
    with sa.create_engine(gw.settings.database_url).connect() as conn:
        return conn.execute(sa.text(
            "SELECT request_id, key_id, request, response FROM request_bodies")).all()


def _bodies(gw: GatewayServer, request_id: str) -> httpx.Response:
    """The bodies call, as 404 when none were logged (the endpoint answers logged: false)."""
    r = gw.admin("GET", f"/admin/requests/{request_id}/bodies")
    if r.status_code == 200 and not r.json()["logged"]:
        assert r.json()["request"] is None and r.json()["response"] is None
        return httpx.Response(404, request=r.request)
    return r


def _assert_no_secret(text: str, *secrets: str) -> None:
    for secret in (SECRET_IN_BODY, "plain-secret-value-1234", *secrets):
        assert secret not in text


def test_off_by_default_stores_nothing(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        secret = gw.create_key(name="quiet")
        r = _chat(gw, secret)
        assert r.status_code == 200
        assert _chat(gw, secret, stream=True).status_code == 200
        assert _bodies(gw, r.headers["x-request-id"]).status_code == 404
        assert _stored(gw) == []


def test_on_globally_stores_chat_and_stream_without_secrets(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)],
                       settings={"log_bodies": True}) as gw:
        secret = gw.create_key(name="logged")
        fake.script(Reply(text="the plain answer"))
        r = _chat(gw, secret)
        assert r.status_code == 200
        got = _bodies(gw, r.headers["x-request-id"])
        assert got.status_code == 200, got.text
        data = got.json()
        assert data["request_id"] == r.headers["x-request-id"]
        assert "hello" in data["request"] and "gpt-4o" in data["request"]
        assert json.loads(data["response"])["choices"][0]["message"]["content"] == \
            "the plain answer"
        _assert_no_secret(data["request"] + data["response"], secret)

        fake.script(Reply(chunks=["streamed ", "words ", "here"]))
        s = _chat(gw, secret, stream=True)
        assert s.status_code == 200 and "[DONE]" in s.text
        streamed = _bodies(gw, s.headers["x-request-id"]).json()
        assert streamed["response"] == "streamed words here"
        assert json.loads(streamed["request"])["stream"] is True
        _assert_no_secret(streamed["request"], secret)

        rows = _stored(gw)
        assert len(rows) == 2
        for row in rows:
            _assert_no_secret(" ".join(str(v) for v in row), secret)
            assert row[1] is not None  # the key id


def test_per_key_switch_overrides_the_gateway(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        on = gw.admin("POST", "/admin/keys", json={"name": "on", "log_bodies": True}).json()
        assert on["log_bodies"] is True
        plain = gw.create_key(name="default")
        r_on = _chat(gw, on["key"])
        r_on_stream = _chat(gw, on["key"], stream=True)
        r_plain = _chat(gw, plain)
        assert r_on.status_code == r_on_stream.status_code == r_plain.status_code == 200
        assert _bodies(gw, r_on.headers["x-request-id"]).status_code == 200
        assert _bodies(gw, r_on_stream.headers["x-request-id"]).json()["response"]
        assert _bodies(gw, r_plain.headers["x-request-id"]).status_code == 404
        # switched off again with PATCH: the next request stores nothing
        p = gw.admin("PATCH", f"/admin/keys/{on['id']}", json={"log_bodies": False})
        assert p.status_code == 200 and p.json()["log_bodies"] is False
        r_off = _chat(gw, on["key"])
        assert _bodies(gw, r_off.headers["x-request-id"]).status_code == 404
        assert gw.admin("PATCH", f"/admin/keys/{on['id']}",
                        json={"log_bodies": "yes"}).status_code == 400
        assert len(_stored(gw)) == 2


def test_gateway_on_and_a_key_off(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)],
                       settings={"log_bodies": True}) as gw:
        off = gw.admin("POST", "/admin/keys", json={"log_bodies": False}).json()
        r = _chat(gw, off["key"])
        assert r.status_code == 200
        assert _bodies(gw, r.headers["x-request-id"]).status_code == 404


def test_cli_sets_the_per_key_switch(tmp_path):
    env = {"SPACEAI_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db", "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "spaceai"]
    made = subprocess.run([*run, "keys", "create", "--log-bodies", "--json"], env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    key = json.loads(made.stdout)
    assert key["log_bodies"] is True
    changed = subprocess.run([*run, "keys", "update", key["id"], "--no-log-bodies", "--json"],
                             env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(changed.stdout)["log_bodies"] is False


def test_retention_purges_old_bodies(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)],
                       settings={"log_bodies": True, "log_bodies_days": 7}) as gw:
        secret = gw.create_key()
        r = _chat(gw, secret)
        rid = r.headers["x-request-id"]
        assert _bodies(gw, rid).status_code == 200
        engine = sa.create_engine(gw.settings.database_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE request_bodies SET created_at = :at"),
                         {"at": now() - timedelta(days=8)})
        kept = _chat(gw, secret)
        assert _bodies(gw, kept.headers["x-request-id"]).status_code == 200
        purged = asyncio.run(gw.gateway.bodies.purge())
        assert purged == 1
        assert _bodies(gw, rid).status_code == 404
        assert _bodies(gw, kept.headers["x-request-id"]).status_code == 200


def test_redaction_of_secret_fields_and_key_strings():
    out = redact({"api_key": "abc", "Authorization": "Bearer xyz", "x-api-key": "k",
                  "nested": [{"text": "use sk-live-0123456789abcdef now"}], "n": 3})
    assert out["api_key"] == out["Authorization"] == out["x-api-key"] == "[redacted]"
    assert "sk-live-0123456789abcdef" not in out["nested"][0]["text"]
    assert out["n"] == 3


def test_openapi_documents_the_bodies_endpoint_and_switch(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)]) as gw:
        spec = httpx.get(gw.base_url + "/openapi.json").json()
    op = spec["paths"]["/admin/requests/{request_id}/bodies"]["get"]
    assert op["security"] == [{"admin": []}]
    schemas = spec["components"]["schemas"]
    for name in ("KeyCreate", "KeyUpdate", "Key"):
        assert "log_bodies" in schemas[name]["properties"], name
    assert {"request", "response"} <= set(schemas["RequestBodies"]["properties"])


def test_migration_0005_keeps_existing_keys_and_downgrades(tmp_path):
    from alembic import command
    from alembic.config import Config

    from spaceai.keys import KeyStore
    from spaceai.storage.db import MIGRATIONS, create_engine, migrate, normalize_url

    url = f"sqlite:///{tmp_path}/old.db"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url))
    command.upgrade(cfg, "0004")
    engine = create_engine(url)
    at = now().replace(tzinfo=None).isoformat(" ")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO api_keys (id, name, key_hash, prefix, spend_nanos, revoked, created_at,"
            " updated_at) VALUES ('key_0000000000000001', 'old', 'h', 'sk-space-x', 0, 0, :at,"
            " :at)"), {"at": at})
    migrate(url)
    old = KeyStore(engine).get("key_0000000000000001")
    assert old is not None and old.log_bodies is None
    assert old.to_public()["log_bodies"] is None
    assert sa.inspect(engine).has_table("request_bodies")
    command.downgrade(cfg, "0004")
    assert not sa.inspect(create_engine(url)).has_table("request_bodies")


def test_messages_and_responses_bodies_are_logged_too(tmp_path, fake):
    with GatewayServer(tmp_path, models=[priced_model(fake)],
                       settings={"log_bodies": True}) as gw:
        secret = gw.create_key()
        auth = {"x-api-key": secret, "anthropic-version": "2023-06-01"}
        ask = {"model": "gpt-4o", "max_tokens": 20,
               "messages": [{"role": "user", "content": f"hi {SECRET_IN_BODY}"}]}
        got = {}
        for stream in (False, True):
            fake.script(Reply(chunks=["anthropic ", "shape"]) if stream else
                        Reply(text="anthropic shape"))
            r = httpx.post(gw.base_url + "/v1/messages", headers=auth, timeout=30,
                           json={**ask, "stream": stream})
            assert r.status_code == 200, r.text
            got[("messages", stream)] = _bodies(gw, r.headers["x-request-id"]).json()
            fake.script(Reply(chunks=["responses ", "shape"]) if stream else
                        Reply(text="responses shape"))
            r = httpx.post(gw.api_url + "/responses", timeout=30,
                           headers={"Authorization": f"Bearer {secret}"},
                           json={"model": "gpt-4o", "input": f"hi {SECRET_IN_BODY}",
                                 "stream": stream})
            assert r.status_code == 200, r.text
            got[("responses", stream)] = _bodies(gw, r.headers["x-request-id"]).json()
        for (surface, stream), data in got.items():
            assert data["logged"] is True
            said = "anthropic shape" if surface == "messages" else "responses shape"
            assert said in data["response"], (surface, stream, data)
            assert "hi " in data["request"]
            _assert_no_secret(data["request"] + data["response"], secret)
        assert got[("messages", True)]["response"] == "anthropic shape"
        assert got[("responses", True)]["response"] == "responses shape"
