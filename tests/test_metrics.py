"""GET /metrics: Prometheus text with requests, tokens, cost, latency, TTFT, in-flight and
refusals (counters are per process, so the test reads differences)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.backends import priced_model
from support.server import GatewayServer

PROMPT = [{"role": "user", "content": "Say hello to the budget test please"}]


def scrape(gw: GatewayServer) -> dict[tuple[str, tuple], float]:
    r = httpx.get(gw.base_url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_metrics_count_requests_tokens_cost_latency_and_refusals(tmp_path, fake):
    model = priced_model(fake, id="metrics-model", upstream_model="gpt-4o")
    with GatewayServer(tmp_path, models=[model]) as gw:
        before = scrape(gw)
        auth = {"Authorization": f"Bearer {gw.create_key(rpm=3, budget=0.0022)}"}
        body = {"model": "metrics-model", "messages": PROMPT, "max_tokens": 5}
        assert httpx.post(gw.api_url + "/chat/completions", headers=auth,
                          json=body).status_code == 200
        with httpx.stream("POST", gw.api_url + "/chat/completions", headers=auth,
                          json={**body, "stream": True}) as r:
            r.read()
        # $0.00096 spent + $0.00159 reserve > $0.0022: a budget refusal
        r = httpx.post(gw.api_url + "/chat/completions", headers=auth, json=body)
        assert r.json()["error"]["code"] == "insufficient_quota"
        other = {"Authorization": f"Bearer {gw.create_key(rpm=1)}"}
        httpx.post(gw.api_url + "/chat/completions", headers=other, json=body)
        r = httpx.post(gw.api_url + "/chat/completions", headers=other, json=body)
        assert r.json()["error"]["type"] == "requests"
        after = scrape(gw)

    def delta(name: str, **labels: str) -> float:
        ident = (name, tuple(sorted(labels.items())))
        return after.get(ident, 0.0) - before.get(ident, 0.0)

    m = "metrics-model"
    assert delta("spaceai_requests_total", model=m, status="ok") == 3
    assert delta("spaceai_requests_total", model=m, status="refused") == 2
    assert delta("spaceai_tokens_total", model=m, direction="in") == 30
    assert delta("spaceai_tokens_total", model=m, direction="out") == 9
    assert delta("spaceai_cost_usd_total", model=m) == pytest.approx(3 * 0.00048)
    assert delta("spaceai_request_duration_seconds_count", model=m) == 3
    assert delta("spaceai_time_to_first_token_seconds_count", model=m) == 1
    assert delta("spaceai_budget_refusals_total") == 1
    assert delta("spaceai_rate_limit_refusals_total", kind="requests") == 1
    assert after[("spaceai_requests_in_flight", ())] == 0


def test_counted_requests_reach_the_histogram_buckets_observe_would_put_them_in():
    """Requests are counted in plain numbers and handed over at a scrape: the scrape shows each
    latency in the bucket Prometheus' own ``observe`` puts it in (bounds inclusive, past the
    last one in +Inf), with the same sum and count."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from spaceai import metrics

    values = [0.0, 0.004, 0.005, 0.0051, 1.0, 299.0, 300.0, 301.5, 1e6]
    registry = CollectorRegistry()
    reference = Histogram("spaceai_request_duration_seconds", "", ["model"],
                          buckets=metrics._LATENCY_BUCKETS, registry=registry)
    for value in values:
        reference.labels("histogram-model").observe(value)
        metrics.request_started()
        metrics.request_finished("histogram-model", "ok", 3, 4, 0.5, value, value / 2)

    def samples(text: bytes, name: str) -> dict[tuple, float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text.decode())
                for s in family.samples if s.name.startswith(name)
                and not s.name.endswith("_created")
                and s.labels.get("model") == "histogram-model"}

    scraped = metrics.exposition()[0]
    assert samples(scraped, "spaceai_request_duration_seconds") == samples(
        generate_latest(registry), "spaceai_request_duration_seconds")
    assert samples(scraped, "spaceai_requests_total") == {
        ("spaceai_requests_total", (("model", "histogram-model"), ("status", "ok"))): 9}
    assert samples(scraped, "spaceai_tokens_total")[
        ("spaceai_tokens_total", (("direction", "out"), ("model", "histogram-model")))] == 36
