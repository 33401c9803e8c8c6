"""Shared fixtures: a real gateway on loopback, fake upstreams, the official SDKs as clients."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.server import GatewayServer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# recorded real streams, kept in the repository so a clone anywhere runs the suite
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


@pytest.fixture
def local_gateway(tmp_path):
    """A gateway with the built-in catalog (local model included), SQLite in tmp_path."""
    with GatewayServer(tmp_path) as gw:
        yield gw


@pytest.fixture(scope="module")
def pg_url():
    """A fresh PostgreSQL database on the local server for this module, dropped after it."""
    from support.backends import drop_database, postgres_url

    url = postgres_url()
    yield url
    drop_database(url)


@pytest.fixture
def fake():
    """A fake OpenAI upstream for one test (same as ``fake_openai``)."""
    from fakes.upstream import FakeOpenAI

    fake = FakeOpenAI()
    fake.start_in_thread()
    yield fake
    fake.stop_thread()


@pytest.fixture
def fake_openai(fake):
    return fake


@pytest.fixture
def fake_anthropic():
    from fakes.upstream import FakeAnthropic

    fake = FakeAnthropic()
    fake.start_in_thread()
    yield fake
    fake.stop_thread()


def openai_model(fake, id="gpt-4o", **extra):
    """A catalog entry routing ``id`` to the fake OpenAI upstream."""
    from support.backends import priced_model

    return priced_model(fake, id, owned_by="openai-internal", **extra)


def anthropic_model(fake, id="claude-3.5-sonnet", **extra):
    """A catalog entry routing ``id`` to the fake Anthropic upstream."""
    return {"id": id, "provider": "anthropic",
            "upstream_model": extra.pop("upstream_model", "claude-3-5-sonnet-latest"),
            "base_url": fake.base_url, "api_key": fake.api_key, "owned_by": "anthropic",
            "capabilities": ["chat"], "pricing": {"input": 0.00002, "output": 0.00005},
            "max_output_tokens": 1024, "max_retries": 0, **extra}


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, one a module (tests/support/browser.py)."""
    from support.browser import launch

    with launch() as b:
        yield b


@pytest.fixture(scope="module")
def fakes():
    """A fake OpenAI and a fake Anthropic upstream, shared by a module's tests."""
    from fakes import FakeAnthropic, FakeOpenAI

    with FakeOpenAI() as oai, FakeAnthropic() as ant:
        yield oai, ant


@pytest.fixture
def fresh_fakes(fakes):
    """The module's pair of fakes with no script or recorded request left from another test
    (``pytestmark = pytest.mark.usefixtures("fresh_fakes")``)."""
    for fake in fakes:
        fake.reset()
    return fakes
