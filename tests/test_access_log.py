"""``spaceai serve --log-level/--log-json``: one access line per request, never a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import yaml
from support.backends import priced_model
from support.server import free_port

ADMIN = "admin-secret-value-123"
UPSTREAM_SECRET = "sk-upstream-secret-abcdef"
PROMPT = [{"role": "user", "content": "hello there"}]


def _serve(tmp_path, fake, *flags: str):
    model = priced_model(fake)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump({"models": [model]}))
    port = free_port()
    env = {**os.environ, "SPACEAI_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite",
           "SPACEAI_ADMIN_KEY": ADMIN, "SPACEAI_CONFIG": str(catalog),
           "OPENAI_API_KEY": UPSTREAM_SECRET, "SPACEAI_LOCAL_PRELOAD": "0"}
    log = open(tmp_path / "stderr.log", "wb")  # noqa: SIM115 - closed by the caller
    proc = subprocess.Popen([sys.executable, "-m", "spaceai", "serve", "--port", str(port),
                             *flags], env=env, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(base + "/health/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "server did not start"
        time.sleep(0.1)
    return proc, base, log


def _stop(proc, log) -> None:
    proc.terminate()
    proc.wait(30)
    log.close()


def test_json_access_log_has_one_line_per_request_and_no_secret(tmp_path, fake):
    proc, base, log = _serve(tmp_path, fake, "--log-level", "info", "--log-json")
    admin = {"Authorization": f"Bearer {ADMIN}"}
    try:
        sent: list[tuple[str, str, int, str]] = []

        def call(method: str, path: str, **kw) -> httpx.Response:
            r = httpx.request(method, base + path, timeout=30, **kw)
            sent.append((method, path.split("?")[0], r.status_code, r.headers["x-request-id"]))
            return r

        secret = call("POST", "/admin/keys", headers=admin, json={"name": "k"}).json()["key"]
        auth = {"Authorization": f"Bearer {secret}"}
        call("POST", "/v1/chat/completions", headers=auth,
             json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5})
        call("POST", "/v1/chat/completions", headers=auth,
             json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 5, "stream": True})
        call("POST", "/v1/chat/completions", headers={"x-api-key": "sk-space-wrongwrongwrong"},
             json={"model": "gpt-4o", "messages": PROMPT})
        call("GET", f"/v1/models/{secret}", headers=auth)  # a secret where a path goes
        call("GET", f"/admin/usage?key={secret}", headers=admin)
        call("GET", "/nope")
        gone = call("POST", "/admin/keys", headers=admin, json={"name": "gone"}).json()
        call("DELETE", f"/admin/keys/{gone['id']}", headers=admin)
        call("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {gone['key']}"},
             json={"model": "gpt-4o", "messages": PROMPT})
    finally:
        _stop(proc, log)
    text = (tmp_path / "stderr.log").read_text()
    for leaked in (ADMIN, UPSTREAM_SECRET, secret, gone["key"], "sk-space-wrongwrongwrong"):
        assert leaked not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) == len([line for line in text.splitlines() if line.strip()]), text
    access = [e for e in lines if e["logger"] == "spaceai.access"]
    got = [(e["method"], e["path"], e["status"], e["request_id"]) for e in access
           if e["path"] != "/health/ready"]
    want = [(m, p if secret not in p else p.replace(secret, secret[:9] + "…[redacted]"), s, rid)
            for m, p, s, rid in sent]
    assert got == want
    assert [s for _, _, s, _ in got] == [201, 200, 200, 401, 404, 200, 404, 201, 200, 401]
    assert all(e["duration_ms"] >= 0 and e["client"] == "127.0.0.1" for e in access)
    assert all(e["level"] == ("warning" if e["status"] >= 400 else "info") for e in access)
    # a failed answer says why: an unknown or revoked key has no ledger row, only this line
    assert [e.get("error") for e in access if e["status"] == 401] == [
        "invalid_api_key: Incorrect API key provided.",
        "invalid_api_key: This API key has been revoked."]
    assert all("error" not in e for e in access if e["status"] < 400)
    assert all(e["error"] in e["message"] for e in access if e["status"] >= 400)


def test_text_access_log_at_info_and_none_at_warning(tmp_path, fake):
    proc, base, log = _serve(tmp_path, fake, "--log-level", "info")
    try:
        rid = httpx.get(base + "/health/live").headers["x-request-id"]
    finally:
        _stop(proc, log)
    lines = (tmp_path / "stderr.log").read_text().splitlines()
    assert [line for line in lines if "GET /health/live 200" in line and rid in line]
    (tmp_path / "quiet").mkdir()
    proc, base, log = _serve(tmp_path / "quiet", fake)  # the default: warning
    try:
        httpx.get(base + "/health/live")
        created = httpx.post(base + "/admin/keys", json={}, timeout=30,
                             headers={"Authorization": f"Bearer {ADMIN}"}).json()
        auth = {"Authorization": f"Bearer {created['key']}"}
        bad = httpx.post(base + "/v1/chat/completions", headers=auth, timeout=30,
                         json={"model": "gpt-4o", "messages": "not a list"})
        wrong = httpx.post(base + "/v1/chat/completions", timeout=30,
                           headers={"Authorization": "Bearer sk-space-wrongwrongwrong"},
                           json={"model": "gpt-4o", "messages": PROMPT})
    finally:
        _stop(proc, log)
    assert (bad.status_code, wrong.status_code) == (400, 401)
    text = (tmp_path / "quiet" / "stderr.log").read_text()
    access = [line for line in text.splitlines() if "spaceai.access" in line]
    assert not [line for line in access if " 200 " in line or " 201 " in line], text
    access = [line for line in access if "/v1/" in line]
    # only the failures, as warnings: the operator sees the clients that fail
    assert len(access) == 2, text
    assert "WARNING" in access[0] and "POST /v1/chat/completions 400" in access[0]
    assert bad.headers["x-request-id"] in access[0] and "Invalid type for 'messages'" in access[0]
    assert "POST /v1/chat/completions 401" in access[1]
    assert "invalid_api_key: Incorrect API key provided." in access[1]
    assert wrong.headers["x-request-id"] in access[1]
    for leaked in (ADMIN, UPSTREAM_SECRET, created["key"], "sk-space-wrongwrongwrong"):
        assert leaked not in text
