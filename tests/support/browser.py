"""Debian's headless Chromium for the page tests (the docs page, the console): one browser a
module, and tabs that record every error the page logs and every URL it requests.

Importing it is the check that Chromium and Playwright are here (a skip on a developer's
machine, a failure under ``CI=true``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.required import missing, require_module

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    missing(f"{CHROMIUM} is missing (apt-get install -y chromium)")

sync_api = require_module("playwright.sync_api")
expect = sync_api.expect

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-quic"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 812}


@contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium (the ``browser`` fixture of tests/conftest.py opens one a module)."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


class Tab:
    """A browser tab on ``server``, recording console errors, page errors and requests."""

    def __init__(self, browser: Any, server: Any, viewport: dict = DESKTOP,
                 **context_kw: Any) -> None:
        self.server = server
        self.context = browser.new_context(viewport=viewport, **context_kw)
        self.page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def close(self) -> None:
        self.context.close()

    def assert_clean(self) -> None:
        """No error logged, and nothing fetched from another host."""
        assert self.errors == [], self.errors
        foreign = [u for u in self.requests if not u.startswith(self.server.base_url + "/")]
        assert foreign == [], f"requests to another host: {foreign}"


def shot(page_or_locator: Any, name: str, **kw: Any) -> Path:
    """A screenshot saved to ``tests/artifacts/`` (gitignored), for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page_or_locator.screenshot(path=str(path), **kw)
    assert path.stat().st_size > 1000
    return path
