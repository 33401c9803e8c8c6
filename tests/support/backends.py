"""The real databases and Redis of this machine, for the metering and limits tests.

``postgres_url()`` makes a fresh database (dropped by ``drop_database``) so runs never
collide; Redis state is per key id, and key ids are random, so tests share Redis db 15.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Any

import psycopg

PG_ADMIN = os.environ.get("SPACEAI_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SPACEAI_TEST_REDIS", "redis://127.0.0.1:6379/15")


def postgres_url() -> str:
    """A new empty PostgreSQL database's URL."""
    name = "spaceai_t_" + secrets.token_hex(6)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def priced_model(fake: Any, id: str = "gpt-4o", **extra: Any) -> dict[str, Any]:
    """A catalog entry routing ``id`` to a fake OpenAI upstream, at gpt-4o's seed prices."""
    return {"id": id, "provider": "openai", "upstream_model": id, "base_url": fake.base_url,
            "api_key": fake.api_key, "capabilities": ["chat", "completions"],
            "pricing": {"input": 0.00003, "output": 0.00006}, "max_retries": 0, **extra}


def routed_models(fake: Any, retries: int) -> list[dict[str, Any]]:
    """``gpt-4o``; ``primary``, whose upstream is down, falling back to it; and ``flaky``,
    retried ``retries`` times: a catalog whose requests show fallbacks and retries."""
    from fakes.upstream import unused_port

    dead = f"http://127.0.0.1:{unused_port()}/v1"
    return [priced_model(fake), {**priced_model(fake, "primary"), "base_url": dead,
                                 "fallbacks": ["gpt-4o"]},
            priced_model(fake, "flaky", max_retries=retries)]


@contextlib.contextmanager
def gateways(tmp_path, fake: Any, backend: str, pg_url: str | None):  # noqa: ANN001, ANN201
    """One gateway on SQLite, or two sharing PostgreSQL and Redis, serving ``priced_model``."""
    from support.server import GatewayServer

    models = [priced_model(fake)]
    if backend == "sqlite":
        with GatewayServer(tmp_path, models=models) as gw:
            yield [gw]
        return
    with GatewayServer(tmp_path, models=models, database_url=pg_url, redis_url=REDIS_URL) as a, \
            GatewayServer(tmp_path, models=models, database_url=pg_url, redis_url=REDIS_URL) as b:
        yield [a, b]


def chat_models(openai_fake: Any, anthropic_fake: Any) -> list[dict[str, Any]]:
    """``gpt-test`` and ``claude-test``: one chat model behind each fake upstream."""
    return [
        {"id": "gpt-test", "provider": "openai", "upstream_model": "gpt-4o-mini",
         "base_url": openai_fake.base_url, "api_key": openai_fake.api_key,
         "capabilities": ["chat"], "pricing": {"input": 0.00001, "output": 0.00003},
         "max_retries": 0},
        {"id": "claude-test", "provider": "anthropic",
         "upstream_model": "claude-sonnet-4-20250514", "base_url": anthropic_fake.base_url,
         "api_key": anthropic_fake.api_key, "capabilities": ["chat"],
         "pricing": {"input": 0.00002, "output": 0.00005}, "max_retries": 0},
    ]
