"""The operator console at ``/console``, driven in Debian's headless Chromium.

A gateway with two priced models on a fake OpenAI upstream gets a scripted mix of traffic
(several keys and models, an upstream error, a budget refusal); then, in the browser: sign in,
read the overview's figures and charts, create a key and use it with the openai SDK, find that
request in the log with its tokens and cost, edit its budget down and see the next request
refused, revoke it; a fallback, a retried request and an invalid one in the request log, with
how each was routed. Screenshots at desktop and 375 px wide go to ``tests/artifacts/``.
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.browser import DESKTOP, PHONE, Tab, expect, shot  # noqa: E402
from support.required import require_module  # noqa: E402

openai = require_module("openai")

from fakes.upstream import Error, Reply  # noqa: E402
from support.backends import priced_model, routed_models  # noqa: E402
from support.server import ADMIN_KEY, GatewayServer  # noqa: E402

PROMPT = [{"role": "user", "content": "Tell the console something worth logging"}]


@pytest.fixture(scope="module")
def fake():
    from fakes.upstream import FakeOpenAI

    f = FakeOpenAI()
    f.start_in_thread()
    yield f
    f.stop_thread()


@pytest.fixture(scope="module")
def webhook():
    from test_budget_alerts import Receiver

    r = Receiver(fail_first=0)
    yield r
    r.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory, fake, webhook):
    models = [priced_model(fake), priced_model(fake, id="gpt-4o-mini",
                                               pricing={"input": 0.00000015, "output": 0.0000006})]
    settings = {"alert_webhook": webhook.url, "alert_poll_s": 0.05}
    with GatewayServer(tmp_path_factory.mktemp("console"), models=models,
                       settings=settings) as server:
        _traffic(server, fake)
        yield server


def _chat(gw, secret, model="gpt-4o", **body) -> httpx.Response:
    return httpx.post(gw.api_url + "/chat/completions",
                      headers={"Authorization": f"Bearer {secret}"},
                      json={"model": model, "messages": PROMPT, "max_tokens": 30, **body},
                      timeout=30)


def _traffic(gw, fake) -> None:
    keys = [gw.create_key(name=n) for n in ("web-app", "batch-jobs", "research")]
    for i in range(18):
        model = "gpt-4o-mini" if i % 3 else "gpt-4o"
        assert _chat(gw, keys[i % 3], model=model, stream=i % 4 == 0).status_code == 200
    for _ in range(2):
        fake.script(Error(500, message="upstream fell over"))
        assert _chat(gw, keys[1]).status_code == 502
    broke = gw.create_key(name="broke", budget=0.00001)
    assert _chat(gw, broke).status_code == 429
    gw.flush_ledger()


class Console(Tab):
    """A tab on the console; confirmation dialogs are accepted."""

    def __init__(self, browser, server, viewport=DESKTOP):
        super().__init__(browser, server, viewport=viewport)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"],
                                       origin=server.base_url)
        self.page.on("dialog", lambda d: d.accept())

    def sign_in(self, key=ADMIN_KEY):
        page = self.page
        page.goto(self.server.base_url + "/console", wait_until="load")
        page.get_by_label("Admin key").fill(key)
        page.keyboard.press("Enter")
        return page


@pytest.fixture
def console(browser):
    opened: list[Console] = []

    def make(server, **kw) -> Console:
        c = Console(browser, server, **kw)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.context.close()


def _usd(value) -> str:
    text = format(Decimal(str(value)).quantize(Decimal("1e-9")).normalize(), "f")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def test_wrong_admin_key_is_refused_and_nothing_is_shown(console, gw):
    c = console(gw)
    page = c.sign_in("not-the-admin-key")
    expect(page.locator("#signin-error")).to_contain_text("Incorrect admin key")
    expect(page.locator("#view-overview")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('spaceai.adminKey')") is None


def test_overview_shows_the_traffic_as_charts_and_the_same_figures_as_the_api(console, gw):
    c = console(gw)
    page = c.sign_in()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    api = gw.admin("GET", "/admin/overview", params={"window": "24h"}).json()
    usage = gw.usage_rows(since=api["since"])["totals"]
    assert api["totals"]["requests"] == usage["requests"] == 21
    stats = page.locator("#stats")
    expect(stats.locator("[data-stat=requests] strong")).to_have_text("21")
    expect(stats.locator("[data-stat=spend] strong")).to_have_text(_usd(usage["cost"]))
    expect(stats.locator("[data-stat=errors] strong")).to_contain_text("3")
    tokens = usage["prompt_tokens"] + usage["completion_tokens"]
    expect(stats.locator("[data-stat=tokens] strong")).to_have_text(f"{tokens:,}")
    for chart in ("spend", "requests", "tokens"):
        assert page.locator(f"#chart-{chart} svg rect.bar").count() >= 1
    assert page.locator("#chart-latency svg path.line").count() == 2
    assert page.locator("#chart-by-key svg rect.bar").count() == 4
    assert page.locator("#chart-by-model svg rect.bar").count() == 2
    # the tables carry the same figures as the usage API
    total_row = page.locator("#table-buckets tfoot tr")
    expect(total_row.locator("td").nth(0)).to_have_text("21")
    model_rows = page.locator("#table-by-model tbody tr")
    expect(model_rows).to_have_count(2)
    # split the spend by model: one series a model
    page.get_by_label("Split spend by").select_option("model")
    expect(page.locator("#legend-spend .item")).to_have_count(2)
    # a 7-day window, per day
    page.get_by_label("Window").select_option("7d")
    expect(page.locator("#overview-range")).to_contain_text("per day")
    expect(stats.locator("[data-stat=requests] strong")).to_have_text("21")
    page.get_by_label("Window").select_option("24h")
    expect(page.locator("#overview-range")).to_contain_text("per hour")
    page.wait_for_timeout(200)
    shot(page, "console-overview-desktop.png", full_page=True)
    c.assert_clean()


def test_a_key_created_in_the_console_is_metered_edited_and_revoked(console, gw, fake, webhook):
    c = console(gw)
    page = c.sign_in()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    page.locator("body").press("2")  # keyboard: the Keys view
    expect(page.get_by_role("heading", name="Keys", level=1)).to_be_visible()
    page.get_by_role("button", name="New key").click()
    dialog = page.locator("#key-dialog")
    dialog.get_by_label("Name").fill("console-made")
    dialog.get_by_label("Budget (USD, empty: none)").fill("5")
    dialog.get_by_label("Requests per minute").fill("100")
    dialog.get_by_role("button", name="Create").click()
    secret_dialog = page.locator("#secret-dialog")
    expect(secret_dialog).to_be_visible()
    secret = page.locator("#secret-value").inner_text().strip()
    assert secret.startswith("sk-space-")
    secret_dialog.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    shot(page, "console-new-key-desktop.png")
    secret_dialog.get_by_role("button", name="Done").click()
    expect(page.locator("#secret-value")).to_have_text("")  # gone from the page once closed
    row = page.locator("#table-keys tbody tr", has_text="console-made")
    expect(row).to_contain_text("100 rpm")
    expect(row.locator(".budget-text")).to_have_text("$0.00 of $5.00")
    key_id = row.get_attribute("data-key-id")

    # the openai SDK with the new key
    client = openai.OpenAI(base_url=gw.api_url, api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=PROMPT,
                                                           max_tokens=20)
    reply = raw.parse()
    request_id = raw.headers["x-request-id"]
    cost = raw.headers["x-spaceai-cost"]
    assert Decimal(cost) > 0

    # the request log, filtered to the key: the request with its tokens and cost
    page.locator("body").press("3")
    expect(page.get_by_role("heading", name="Requests", level=1)).to_be_visible()
    page.locator("#request-filters").get_by_label("Key").select_option(key_id)
    first = page.locator("#table-requests tbody tr").first
    expect(first).to_have_attribute("data-request-id", request_id)
    expect(first.locator("[data-tokens]")).to_have_text(
        f"{reply.usage.prompt_tokens:,} / {reply.usage.completion_tokens:,}")
    expect(first.locator("[data-cost]")).to_have_text(_usd(cost))
    expect(first).to_contain_text("console-made")
    expect(first).to_contain_text("200 ok")
    first.focus()
    page.keyboard.press("Enter")  # opens the details
    details = page.locator("#request-details")
    expect(details.locator("[data-field=request_id]")).to_have_text(request_id)
    expect(details.locator("[data-field=completion_tokens]")).to_have_text(
        str(reply.usage.completion_tokens))
    expect(details.locator("[data-field=endpoint]")).to_have_text("/v1/chat/completions")
    shot(page, "console-request-details-desktop.png")
    page.keyboard.press("Escape")
    expect(page.locator("#request-dialog")).to_be_hidden()
    shot(page, "console-requests-desktop.png", full_page=True)

    # edit its budget down to what it has spent: the next request is refused
    page.locator("body").press("2")
    row = page.locator("#table-keys tbody tr", has_text="console-made")
    expect(row.locator(".budget-text")).to_have_text(f"{_usd(cost)} of $5.00")
    row.get_by_role("button", name="Edit console-made").click()
    dialog.get_by_label("Budget (USD, empty: none)").fill(cost)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(row.locator(".budget-text")).to_have_text(f"{_usd(cost)} of {_usd(cost)}")
    expect(row.locator(".meter")).to_have_class("meter full")
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=PROMPT, max_tokens=20)
    assert refused.value.code == "insufficient_quota"
    # spend is now 100 % of the budget: one alert per threshold, listed on the Keys view
    deadline = time.monotonic() + 10
    while len([d for d in webhook.delivered if d["key_id"] == key_id]) < 3:
        assert time.monotonic() < deadline, webhook.delivered
        time.sleep(0.05)
    page.locator("body").press("r")
    alerts = page.locator("#table-alerts tbody tr")
    expect(alerts).to_have_count(3)
    expect(page.locator('#table-alerts tr[data-alert-threshold="100"]')).to_contain_text("sent")
    shot(page, "console-keys-desktop.png", full_page=True)

    # revoke it: the SDK is turned away
    row.get_by_role("button", name="Revoke console-made").click()
    expect(row.locator(".badge")).to_have_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o", messages=PROMPT, max_tokens=20)
    c.assert_clean()


def test_console_at_phone_width_fits_the_screen(console, gw):
    c = console(gw, viewport=PHONE)
    page = c.sign_in()
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.locator("#chart-spend svg")).to_be_visible()
    page.wait_for_timeout(200)

    def no_sideways_scroll():
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"page is {width}px wide"

    no_sideways_scroll()
    shot(page, "console-overview-375.png", full_page=True)
    shot(page, "console-overview-375-screen.png")
    for view, name in (("2", "keys"), ("3", "requests"), ("4", "models")):
        page.locator("body").press(view)
        expect(page.locator(f"#view-{name}")).to_be_visible()
        expect(page.locator(f"#view-{name} table tbody tr").first).to_be_visible()
        page.wait_for_timeout(100)
        no_sideways_scroll()
        shot(page, f"console-{name}-375.png", full_page=True)
        shot(page, f"console-{name}-375-screen.png")
    c.assert_clean()


def test_models_view_lists_the_catalog_with_prices(console, gw):
    c = console(gw)
    page = c.sign_in()
    page.get_by_role("link", name="Models").click()
    rows = page.locator("#table-models tbody tr")
    expect(rows).to_have_count(2)
    mini = page.locator('#table-models tr[data-model-id="gpt-4o-mini"]')
    expect(mini).to_contain_text("$0.00015")
    expect(mini).to_contain_text("$0.0006")
    expect(page.locator('#table-models tr[data-model-id="gpt-4o"]')).to_contain_text("$0.03")
    # each deployment's health: the scripted upstream errors show in gpt-4o's error rate
    expect(mini.locator(".deployment")).to_contain_text("0% errors of last")
    expect(page.locator('#table-models tr[data-model-id="gpt-4o"] .deployment')).not_to_contain_text(
        " 0% errors")
    shot(page, "console-models-desktop.png")
    # the page is static and asks for the admin key: the server never puts it in the page
    html = httpx.get(gw.base_url + "/console").text
    assert ADMIN_KEY not in html
    assert httpx.get(gw.base_url + "/console/nope.js").status_code == 404
    c.assert_clean()


def test_request_log_shows_fallbacks_retries_and_invalid_requests(console, tmp_path, fake):
    models = routed_models(fake, retries=1)
    with GatewayServer(tmp_path, models=models) as server:
        secret = server.create_key(name="routing")
        fake.script(Reply(delay=0.2))
        fell_back = _chat(server, secret, model="primary")
        assert fell_back.status_code == 200 and fell_back.json()["model"] == "gpt-4o"
        fake.script(Error(500, message="once"))
        retried = _chat(server, secret, model="flaky")
        assert retried.status_code == 200
        invalid = _chat(server, secret, model="flaky", temperature="hot")
        assert invalid.status_code == 400
        server.flush_ledger()
        key_id = httpx.get(server.api_url + "/key",
                           headers={"Authorization": f"Bearer {secret}"}).json()["id"]

        c = console(server)
        page = c.sign_in()
        expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
        page.locator("body").press("3")
        page.locator("#request-filters").get_by_label("Key").select_option(key_id)
        rows = page.locator("#table-requests tbody tr")
        expect(rows).to_have_count(3)

        def row(response: httpx.Response):
            return page.locator(
                f'#table-requests tr[data-request-id="{response.headers["x-request-id"]}"]')

        # the model asked for, then the fallback that served it; no retry, one fallback
        expect(row(fell_back).locator("[data-served-by]")).to_have_text("primary → gpt-4o")
        expect(row(fell_back).locator("[data-routing]")).to_have_text("0 / 1")
        expect(row(fell_back).locator("[data-upstream]")).to_contain_text(" ms")
        expect(row(fell_back).locator("[data-overhead]")).to_contain_text(" ms")
        expect(row(retried).locator("[data-routing]")).to_have_text("1 / 0")
        expect(row(retried).locator("[data-served-by]")).to_have_count(0)  # served as asked
        # turned away before a model: in the log, as the client's error, at no cost
        expect(row(invalid)).to_contain_text("400 invalid_request")
        expect(row(invalid)).to_contain_text("flaky")
        expect(row(invalid).locator("[data-cost]")).to_have_text("$0.00")
        shot(page, "console-requests-routing-desktop.png", full_page=True)

        row(fell_back).click()
        details = page.locator("#request-details")
        for field, text in (("model_requested", "primary"), ("model", "gpt-4o"),
                            ("fallbacks", "1"), ("retries", "0")):
            expect(details.locator(f"[data-field={field}]")).to_have_text(text)
        for field in ("upstream_ms", "overhead_ms", "latency_ms"):
            expect(details.locator(f"[data-field={field}]")).to_contain_text(" ms")
        expect(details.locator("[data-field=deployment]")).to_have_text(
            fake.base_url.rsplit("/", 1)[0])
        shot(page, "console-request-routing-details-desktop.png")
        page.keyboard.press("Escape")

        # the status filter has the new failure status
        page.locator("#request-filters").get_by_label("Status").select_option("invalid_request")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_attribute("data-request-id", invalid.headers["x-request-id"])
        c.assert_clean()

        phone = console(server, viewport=PHONE)
        page = phone.sign_in()
        expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
        page.locator("body").press("3")
        expect(page.locator("#table-requests tbody tr")).to_have_count(3)
        page.wait_for_timeout(100)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"page is {width}px wide"
        shot(page, "console-requests-routing-375.png", full_page=True)
        phone.assert_clean()
