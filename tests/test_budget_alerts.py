"""Budget alerts: one webhook call per threshold crossed, per budget period, across processes.

A local webhook receiver (plain http.server on loopback) records every call; its first answer
is a 500, so the first alert is delivered on a retry.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from support.backends import REDIS_URL, priced_model
from support.server import GatewayServer

PROMPT = [{"role": "user", "content": "Spend a little of the budget please"}]


class Receiver:
    """A webhook on loopback: records each call's JSON; fails the first ``fail_first``."""

    def __init__(self, fail_first: int = 1) -> None:
        self.calls: list[dict] = []
        self.delivered: list[dict] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.calls.append(body)
                status = 500 if len(receiver.calls) <= receiver.fail_first else 200
                if status == 200:
                    receiver.delivered.append(body)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis, two processes"])
def test_each_crossed_threshold_alerts_exactly_once(tmp_path, fake, pg_url, receiver, backend):
    shared = {"database_url": pg_url, "redis_url": REDIS_URL} if backend != "sqlite" else {}
    settings = {"alert_webhook": receiver.url, "alert_poll_s": 0.05}
    models = [priced_model(fake)]
    with GatewayServer(tmp_path, models=models, settings=settings, **shared) as a:
        others = [a]
        second = None
        if shared:
            second = GatewayServer(tmp_path, models=models, settings=settings, **shared).start()
            others.append(second)
        try:
            secret = a.create_key(name="alerted", budget=1.0)
            auth = {"Authorization": f"Bearer {secret}"}
            key_id = httpx.get(a.api_url + "/key", headers=auth).json()["id"]
            for i in range(6):  # every process serves the key
                gw = others[i % len(others)]
                r = httpx.post(gw.api_url + "/chat/completions", headers=auth, timeout=30,
                               json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 10})
                assert r.status_code == 200
            spend = httpx.get(a.api_url + "/key", headers=auth).json()["spend"]
            time.sleep(0.3)
            assert receiver.calls == []  # far below 50 %

            def budget(usd: float) -> None:
                r = a.admin("PATCH", f"/admin/keys/{key_id}", json={"budget": usd})
                assert r.status_code == 200, r.text

            budget(spend * 1.5)  # 67 %: crosses 50
            _wait_for(lambda: len(receiver.delivered) == 1)
            budget(spend * 1.1)  # 91 %: crosses 80
            _wait_for(lambda: len(receiver.delivered) == 2)
            budget(spend)  # 100 %
            _wait_for(lambda: len(receiver.delivered) == 3)
            budget(spend * 1.5)  # back under, then over again: nothing new this period
            budget(spend * 0.5)
            time.sleep(1.0)
        finally:
            if second is not None:
                second.stop()
    assert [d["threshold"] for d in receiver.delivered] == [50, 80, 100]
    assert len(receiver.calls) == 4  # the first delivery failed once and was retried
    first = receiver.delivered[0]
    assert first["key_id"] == key_id and first["key_name"] == "alerted"
    assert "alerted" in first["text"] and "50%" in first["text"]
    assert first["period"] == "all"
    assert secret not in json.dumps(receiver.calls)


def test_alerts_are_listed_for_the_console_with_their_delivery(tmp_path, fake, receiver):
    settings = {"alert_webhook": receiver.url, "alert_poll_s": 0.05,
                "alert_thresholds": "10,90"}
    with GatewayServer(tmp_path, models=[priced_model(fake)], settings=settings) as gw:
        secret = gw.create_key(name="listed", budget=1.0)
        auth = {"Authorization": f"Bearer {secret}"}
        key_id = httpx.get(gw.api_url + "/key", headers=auth).json()["id"]
        httpx.post(gw.api_url + "/chat/completions", headers=auth, timeout=30,
                   json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 10})
        spend = httpx.get(gw.api_url + "/key", headers=auth).json()["spend"]
        # the key's own thresholds replace the gateway's
        r = gw.admin("PATCH", f"/admin/keys/{key_id}",
                     json={"alert_thresholds": [25], "budget": spend * 2})
        assert r.json()["alert_thresholds"] == [25]
        _wait_for(lambda: len(receiver.delivered) == 1)
        _wait_for(lambda: gw.admin("GET", "/admin/alerts").json()["data"][0]["sent_at"])
        listed = gw.admin("GET", "/admin/alerts").json()
        assert gw.admin("PATCH", f"/admin/keys/{key_id}",
                        json={"alert_thresholds": [0]}).status_code == 400
    assert listed["webhook"] is True
    (alert,) = listed["data"]
    assert alert["key_name"] == "listed" and alert["threshold"] == 25
    assert alert["attempts"] == 2 and alert["last_error"] is None
    assert receiver.delivered[0]["threshold"] == 25


def test_an_alert_whose_sender_died_is_delivered_once_by_another_process(
        tmp_path, fake, pg_url, receiver, monkeypatch):
    from datetime import UTC, datetime, timedelta

    from spaceai import alerts
    from spaceai.storage.tables import budget_alerts

    monkeypatch.setattr(alerts, "ORPHAN_SCAN_S", 0.1)
    receiver.fail_first = 0
    shared = {"database_url": pg_url, "redis_url": REDIS_URL}
    settings = {"alert_webhook": receiver.url, "alert_poll_s": 0.05}
    with GatewayServer(tmp_path, models=[priced_model(fake)], settings=settings,
                       **shared) as a:
        secret = a.create_key(name="orphaned", budget=1.0)
        key_id = httpx.get(a.api_url + "/key",
                           headers={"Authorization": f"Bearer {secret}"}).json()["id"]
        old = datetime.now(UTC) - timedelta(minutes=5)
        fresh = datetime.now(UTC)
        with a.gateway.engine.begin() as conn:
            conn.execute(budget_alerts.insert(), [
                # claimed by a process that died after one failed attempt
                {"key_id": key_id, "period": "all", "threshold": 80, "spend_nanos": 850_000_000,
                 "budget_nanos": 10**9, "created_at": old, "attempts": 1, "lease_at": old,
                 "last_error": "HTTP 503"},
                # being sent right now by a live process: left alone
                {"key_id": key_id, "period": "all", "threshold": 50, "spend_nanos": 600_000_000,
                 "budget_nanos": 10**9, "created_at": fresh, "attempts": 0, "lease_at": fresh,
                 "last_error": None}])
        b = GatewayServer(tmp_path, models=[priced_model(fake)], settings=settings,
                          **shared).start()
        try:
            _wait_for(lambda: receiver.delivered)
            time.sleep(1.0)  # both processes scanned several times
        finally:
            b.stop()
        listed = {x["threshold"]: x for x in a.admin("GET", "/admin/alerts").json()["data"]
                  if x["key_id"] == key_id}
    assert [(d["threshold"], d["key_name"]) for d in receiver.delivered] == [(80, "orphaned")]
    assert listed[80]["sent_at"] and listed[80]["attempts"] == 2
    assert listed[50]["sent_at"] is None


@pytest.mark.parametrize("backend", ["sqlite", "postgres+redis, two processes"])
def test_yesterdays_spend_report_is_sent_once(tmp_path, fake, pg_url, receiver, backend):
    """With daily reports on, the day that ended is reported once, however many processes."""
    shared = {"database_url": pg_url, "redis_url": REDIS_URL} if backend != "sqlite" else {}
    settings = {"alert_webhook": receiver.url, "alert_poll_s": 0.05, "alert_daily_report": True}
    models = [priced_model(fake)]
    with GatewayServer(tmp_path, models=models, settings=settings, **shared) as a:
        second = (GatewayServer(tmp_path, models=models, settings=settings, **shared).start()
                  if shared else None)
        try:
            _wait_for(lambda: len(receiver.delivered) == 1)
            time.sleep(0.5)  # many polls later, in both processes: still the one report
        finally:
            if second is not None:
                second.stop()
        listed = a.admin("GET", "/admin/alerts").json()["data"]
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert [d["day"] for d in receiver.delivered] == [yesterday]
    assert len(receiver.calls) == 2  # the first delivery failed once and was retried
    assert "daily spend" in receiver.delivered[0]["text"]
    assert [(x["period"], x["sent_at"] is not None) for x in listed
            if x["kind"] == "daily_report"] == [(yesterday, True)]


def test_a_days_report_on_demand_has_the_ledgers_figures(tmp_path, fake, receiver):
    settings = {"alert_webhook": receiver.url, "alert_poll_s": 0.05}
    receiver.fail_first = 0
    with GatewayServer(tmp_path, models=[priced_model(fake)], settings=settings) as gw:
        secrets = [gw.create_key(name=f"team-{i}", budget=10) for i in range(2)]
        for i, secret in enumerate(secrets):
            for _ in range(i + 1):
                r = httpx.post(gw.api_url + "/chat/completions", timeout=30,
                               headers={"Authorization": f"Bearer {secret}"},
                               json={"model": "gpt-4o", "messages": PROMPT, "max_tokens": 10})
                assert r.status_code == 200
        today = datetime.now(UTC).date().isoformat()
        r = gw.admin("POST", f"/admin/reports/daily?day={today}")
        assert r.status_code == 200 and r.json() == {"day": today, "sent": True}
        _wait_for(lambda: len(receiver.delivered) == 1)
        again = gw.admin("POST", f"/admin/reports/daily?day={today}")
        assert again.json()["sent"] is False  # once per day...
        forced = gw.admin("POST", f"/admin/reports/daily?day={today}&again=true")
        assert forced.json()["sent"] is True  # ...unless asked again
        _wait_for(lambda: len(receiver.delivered) == 2)
        bad = gw.admin("POST", "/admin/reports/daily?day=yesterday")
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "day"
        totals = gw.admin("GET", "/admin/usage").json()["totals"]
    report = receiver.delivered[0]
    assert report["day"] == today and report["requests"] == totals["requests"] == 3
    assert report["cost"] == pytest.approx(totals["cost"])
    assert [k["key_name"] for k in report["top_keys"]] == ["team-1", "team-0"]
    assert [k["requests"] for k in report["top_keys"]] == [2, 1]
    assert report["top_models"][0]["model"] == "gpt-4o"
    assert "team-1" in report["text"] and all(s not in json.dumps(report) for s in secrets)
