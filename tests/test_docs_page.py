"""The documentation page and playground at ``/``, driven in Debian's headless Chromium.

Playwright (sync API) drives ``/usr/bin/chromium`` (never Playwright's own browser download)
against a real gateway on loopback. Two gateways are shared by the module:

* ``gw``: the built-in catalog (the local model ``smollm2-135m-instruct`` and the others);
* ``priced_gw``: the local model plus ``gpt-4o`` routed to a fake OpenAI upstream, priced, so
  a playground answer has a non-zero cost.

Screenshots go to ``tests/artifacts/`` (gitignored): the full page on a desktop viewport, the
playground after a streamed answer, and the full page at 375 px wide.
"""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import openai_model  # noqa: E402
from support.browser import Tab, shot, sync_api  # noqa: E402
from support.server import LOCAL_MODEL, GatewayServer  # noqa: E402

LOCAL = LOCAL_MODEL["id"]
ANSWER_TIMEOUT_MS = 90_000


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    with GatewayServer(tmp_path_factory.mktemp("docs-builtin"), models=None) as server:
        server.key = server.create_key()
        yield server


@pytest.fixture(scope="module")
def fake():
    from fakes.upstream import FakeOpenAI

    f = FakeOpenAI()
    f.start_in_thread()
    yield f
    f.stop_thread()


@pytest.fixture(scope="module")
def priced_gw(tmp_path_factory, fake):
    models = [LOCAL_MODEL, openai_model(fake)]
    with GatewayServer(tmp_path_factory.mktemp("docs-priced"), models=models) as server:
        server.key = server.create_key()
        yield server


class Visit(Tab):
    """A tab on a gateway's documentation page."""

    def open(self):
        self.page.goto(self.server.base_url + "/", wait_until="load")
        self.page.wait_for_load_state("networkidle")
        return self.page


@pytest.fixture
def visit(browser):
    opened: list[Visit] = []

    def make(server, **kw) -> Visit:
        v = Visit(browser, server, **kw)
        opened.append(v)
        return v

    yield make
    for v in opened:
        v.close()


def models_json(server) -> list[dict]:
    r = httpx.get(server.api_url + "/models",
                  headers={"Authorization": f"Bearer {server.key}"}, timeout=30)
    r.raise_for_status()
    return r.json()["data"]


def per_1k(price) -> str:
    value = format((Decimal(str(price)) * 1000).normalize(), "f")
    whole, _, frac = value.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def load_models(page, key: str) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Load models").click()
    sync_api.expect(page.locator("#pg-models-status")).to_contain_text("available")


def error_area(page):
    return page.get_by_role("alert", name="Error")


# ---------------------------------------------------------------- tests

def test_page_loads_without_console_errors(visit, gw):
    v = visit(gw)
    page = v.open()
    assert page.title() == "SpaceAI API documentation"
    sync_api.expect(page.get_by_role("heading", name="Introduction", level=1)).to_be_visible()
    for name in ("Authentication", "Listing models", "Models and pricing", "Chat completions",
                 "Streaming", "Errors", "Budgets and rate limits", "Playground"):
        sync_api.expect(page.get_by_role("heading", name=name, exact=True)).to_have_count(1)
    # the key is never placed in the page by the server
    assert gw.key not in page.content()
    page.mouse.wheel(0, 100_000)  # scroll through the page: lazy behaviour must not error
    page.wait_for_timeout(300)
    v.assert_clean()
    page.mouse.wheel(0, -100_000)
    page.wait_for_timeout(200)
    shot(page, "docs-desktop-full.png", full_page=True)


def test_models_table_matches_v1_models(visit, gw, priced_gw):
    for server in (gw, priced_gw):
        page = visit(server).open()
        api = models_json(server)
        rows = page.locator("#models-table tbody tr[data-model-id]")
        ids = rows.evaluate_all("rs => rs.map(r => r.dataset.modelId)")
        assert ids == [m["id"] for m in api]
        providers = {m.id: m.provider for m in server.catalog}
        for m in api:
            row = page.locator(f'#models-table tr[data-model-id="{m["id"]}"]')
            cells = row.locator("th, td").all_inner_texts()
            assert cells[0].strip() == m["id"]
            assert row.get_attribute("data-provider") == providers[m["id"]]
            assert cells[1].strip().lower() == providers[m["id"]].lower()
            chips = row.locator(".chip").all_inner_texts()
            assert chips == m["capabilities"]
            assert cells[3].strip() == per_1k(m["pricing"]["input"])
            assert cells[4].strip() == per_1k(m["pricing"]["output"])
            # and the raw per-token prices agree with the API exactly
            assert Decimal(row.get_attribute("data-input-price")) == Decimal(str(m["pricing"]["input"]))
            assert Decimal(row.get_attribute("data-output-price")) == Decimal(str(m["pricing"]["output"]))
    # spot-check the conversion: gpt-4o at 0.00003 / 0.00006 per token
    row = page.locator('#models-table tr[data-model-id="gpt-4o"]')
    assert row.locator("td").nth(2).inner_text().strip() == "$0.03"
    assert row.locator("td").nth(3).inner_text().strip() == "$0.06"


WATCH_RESPONSE = """() => {
  window.__lengths = [];
  const node = document.getElementById("pg-response-text");
  new MutationObserver(() => {
    const n = node.textContent.length;
    if (!node.querySelector(".placeholder")) window.__lengths.push(n);
  }).observe(node, {childList: true, characterData: true, subtree: true});
}"""


def test_streamed_answer_with_usage_and_cost(visit, gw):
    v = visit(gw)
    page = v.open()
    load_models(page, gw.key)
    page.get_by_label("Model", exact=True).select_option(LOCAL)
    page.get_by_label("Temperature").fill("0")
    page.get_by_label("Max tokens").fill("48")
    sync_api.expect(page.get_by_label("Stream")).to_be_checked()
    page.get_by_label("System message").fill("You are a helpful assistant.")
    page.get_by_label("Message", exact=True).fill("Count from 1 to 30, separated by commas.")
    page.evaluate(WATCH_RESPONSE)

    with page.expect_response("**/v1/chat/completions", timeout=ANSWER_TIMEOUT_MS) as info:
        page.get_by_role("button", name="Send").click()
    response = info.value
    body = response.request.post_data_json
    assert body["model"] == LOCAL and body["stream"] is True
    assert body["temperature"] == 0 and body["max_tokens"] == 48
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")

    region = page.get_by_role("region", name="Response")
    usage = region.locator("#pg-usage")
    sync_api.expect(usage).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    answer = region.locator("#pg-response-text").inner_text().strip()
    assert answer and "Response will appear here" not in answer

    # the text arrived progressively: several growing snapshots before the final one
    lengths = [n for n in page.evaluate("window.__lengths") if n > 0]
    assert len(set(lengths)) >= 3, lengths
    assert lengths == sorted(lengths), lengths

    prompt = int(page.locator("#pg-usage-prompt").inner_text())
    completion = int(page.locator("#pg-usage-completion").inner_text())
    total = int(page.locator("#pg-usage-total").inner_text())
    assert prompt > 0 and 0 < completion <= 48 and total == prompt + completion
    assert page.locator("#pg-cost").inner_text().strip() == "$0.00"  # the local model is free
    sync_api.expect(page.locator("#pg-meta")).to_contain_text(f"Model {LOCAL}")
    if completion == 48:  # stopped by max_tokens: the playground says so
        sync_api.expect(page.locator("#pg-meta")).to_contain_text("Cut off at max tokens")
    # the conversation keeps the turn
    turns = page.locator("#pg-history li")
    sync_api.expect(turns).to_have_count(2)
    assert turns.nth(1).locator(".text").inner_text().strip() == answer
    sync_api.expect(error_area(page)).to_be_hidden()
    v.assert_clean()
    page.locator("#playground").scroll_into_view_if_needed()
    shot(page.locator("#playground"), "docs-playground-answer.png")


def test_priced_model_shows_cost_and_keeps_history(visit, priced_gw, fake):
    v = visit(priced_gw)
    page = v.open()
    load_models(page, priced_gw.key)
    page.get_by_label("Model", exact=True).select_option("gpt-4o")
    message = page.get_by_label("Message", exact=True)
    for text in ("Hello there", "And again"):
        message.fill(text)
        with page.expect_response("**/v1/chat/completions"):
            page.get_by_role("button", name="Send").click()
        sync_api.expect(page.locator("#pg-usage")).to_be_visible()
        sync_api.expect(page.locator("#pg-response-text")).to_have_text(fake.default_text)
    # the second request carried the first turn (multi-turn history)
    sent = fake.requests_to("/v1/chat/completions")[-1].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == fake.default_text
    prompt = int(page.locator("#pg-usage-prompt").inner_text())
    completion = int(page.locator("#pg-usage-completion").inner_text())
    expected = Decimal(prompt) * Decimal("0.00003") + Decimal(completion) * Decimal("0.00006")
    assert expected > 0
    cost = page.locator("#pg-cost").inner_text().strip()
    assert cost.startswith("$") and Decimal(cost[1:]) == expected
    v.assert_clean()


def test_wrong_key_shows_401(visit, gw):
    v = visit(gw)
    page = v.open()
    page.get_by_label("API key").fill("sk-space-wrong")
    page.get_by_label("Message", exact=True).fill("Hello")
    with page.expect_response("**/v1/chat/completions") as info:
        page.get_by_role("button", name="Send").click()
    assert info.value.status == 401
    alert = error_area(page)
    sync_api.expect(alert).to_be_visible()
    sync_api.expect(alert).to_contain_text("401")
    sync_api.expect(alert).to_contain_text("invalid_request_error")
    sync_api.expect(alert).to_contain_text("Incorrect API key provided.")
    sync_api.expect(alert.locator("dl")).to_contain_text(re.compile(r"Status\s*401"))
    # nothing was added to the conversation and the message is kept for a retry
    sync_api.expect(page.locator("#pg-history li")).to_have_count(0)
    sync_api.expect(page.get_by_label("Message", exact=True)).to_have_value("Hello")
    sync_api.expect(page.locator("#pg-usage")).to_be_hidden()


def test_temperature_3_shows_400_naming_temperature(visit, gw):
    v = visit(gw)
    page = v.open()
    load_models(page, gw.key)
    page.get_by_label("Model", exact=True).select_option(LOCAL)
    page.get_by_label("Temperature").fill("3")
    page.get_by_label("Message", exact=True).fill("Hello")
    with page.expect_response("**/v1/chat/completions") as info:
        page.get_by_role("button", name="Send").click()
    assert info.value.status == 400
    assert info.value.request.post_data_json["temperature"] == 3
    alert = error_area(page)
    sync_api.expect(alert).to_be_visible()
    sync_api.expect(alert).to_contain_text("400")
    sync_api.expect(alert).to_contain_text("invalid_request_error")
    sync_api.expect(alert.locator(".err-message")).to_contain_text("temperature")
    sync_api.expect(alert.locator("dl")).to_contain_text(re.compile(r"Param\s*temperature"))
    sync_api.expect(page.locator("#pg-usage")).to_be_hidden()


def test_copy_as_curl_masks_the_key(visit, gw):
    v = visit(gw, permissions=["clipboard-read", "clipboard-write"])
    page = v.open()
    load_models(page, gw.key)
    page.get_by_label("Model", exact=True).select_option(LOCAL)
    page.get_by_label("Message", exact=True).fill("It's a test")
    page.get_by_role("button", name="Copy as curl").click()
    curl = page.locator("#pg-curl code")
    sync_api.expect(curl).to_be_visible()
    text = curl.inner_text()
    assert gw.key not in text
    assert 'Authorization: Bearer $SPACEAI_API_KEY' in text
    assert text.startswith(f"curl -N {gw.base_url}/v1/chat/completions")
    sync_api.expect(page.locator("#pg-curl-status")).to_have_text("Copied to clipboard")
    clipboard = page.evaluate("navigator.clipboard.readText()")
    assert clipboard == text and gw.key not in clipboard
    # the JSON in the command is the exact request body
    payload = text.split("-d '", 1)[1].rsplit("'", 1)[0].replace("'\\''", "'")
    assert json.loads(payload)["messages"][-1] == {"role": "user", "content": "It's a test"}
    assert json.loads(payload)["model"] == LOCAL

    page.get_by_label("Show key in curl").check()
    sync_api.expect(curl).to_contain_text(f"Authorization: Bearer {gw.key}")
    page.get_by_role("button", name="Copy as curl").click()
    assert gw.key in page.evaluate("navigator.clipboard.readText()")
    page.get_by_label("Show key in curl").uncheck()
    sync_api.expect(curl).not_to_contain_text(gw.key)
    v.assert_clean()


def test_phone_width_has_no_horizontal_overflow(visit, gw):
    v = visit(gw, viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = v.open()
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 375, f"page is {width}px wide at a 375px viewport"
    # the playground controls stay inside the viewport
    for name in ("API key", "Send"):
        box = page.get_by_label(name).bounding_box() if name == "API key" else \
            page.get_by_role("button", name=name).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (name, box)
    v.assert_clean()
    shot(page, "docs-mobile-375.png", full_page=True)


def test_keyboard_tab_reaches_controls_and_ctrl_enter_sends(visit, gw):
    v = visit(gw)
    page = v.open()
    page.locator("body").focus()

    def tab_to(element_id: str, limit: int = 400) -> int:
        for i in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
                return i + 1
        raise AssertionError(f"Tab never reached #{element_id}")

    tab_to("pg-key")
    page.keyboard.type(gw.key)
    tab_to("pg-send", limit=40)
    sync_api.expect(page.get_by_role("button", name="Send")).to_be_focused()

    message = page.get_by_label("Message", exact=True)
    message.focus()
    page.get_by_label("Model", exact=True).select_option(LOCAL)
    page.get_by_label("Max tokens").fill("8")
    message.focus()
    page.keyboard.type("Say hi.")
    with page.expect_request("**/v1/chat/completions") as info:
        page.keyboard.press("Control+Enter")
    assert info.value.post_data_json["messages"][-1]["content"] == "Say hi."
    assert info.value.headers["authorization"] == f"Bearer {gw.key}"
    sync_api.expect(page.locator("#pg-usage")).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    v.assert_clean()


def test_examples_use_the_real_base_url(visit, gw):
    page = visit(gw).open()
    samples = page.locator("pre code").all_text_contents()
    with_url = [s for s in samples if gw.base_url in s]
    assert len(with_url) >= 9, samples
    # every URL in every sample is this server's
    urls = {u for s in samples for u in re.findall(r"https?://[^\s\"'`)]+", s)}
    assert urls and all(u.startswith(gw.base_url + "/") for u in urls), urls
    # curl, Python (openai SDK) and JavaScript each point at this server
    for lang, needle in (("curl", f"curl {gw.base_url}/v1/chat/completions"),
                         ("python", f'base_url="{gw.base_url}/v1"'),
                         ("javascript", f'baseURL: "{gw.base_url}/v1"')):
        panels = page.locator(f'[role="tabpanel"][data-lang="{lang}"] code').all_text_contents()
        assert any(needle in p for p in panels), (lang, needle)
    assert page.locator("body").get_attribute("data-base-url") == gw.base_url
    sync_api.expect(page.locator("#introduction .facts")).to_contain_text(f"{gw.base_url}/v1")
