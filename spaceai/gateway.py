"""The gateway's parts, built once at start-up and shared by every request."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

from spaceai.auth import KeyCache
from spaceai.catalog import Catalog
from spaceai.config import Settings
from spaceai.keys import KeyStore
from spaceai.limits import Control, build_control
from spaceai.metering.ledger import Ledger
from spaceai.providers.base import Provider
from spaceai.providers.http import HttpClient
from spaceai.router import Router
from spaceai.storage.db import create_engine, migrate
from spaceai.storage.responses import ResponseStore

log = logging.getLogger("spaceai")


def build_providers(http: HttpClient, settings: Settings) -> dict[str, Provider]:
    from spaceai.providers.anthropic.provider import AnthropicProvider
    from spaceai.providers.local import LocalProvider
    from spaceai.providers.openai import OpenAIProvider

    return {
        "openai": OpenAIProvider(http),
        "anthropic": AnthropicProvider(http),
        "local": LocalProvider(n_parallel=settings.local_parallel,
                               n_threads=settings.local_threads),
    }


class Gateway:
    """Settings, catalog, storage, caches, providers and the router of one process."""

    def __init__(self, settings: Settings, catalog: Catalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog.load(settings.config_path)
        self.engine = create_engine(settings.database_url)
        self.keys = KeyStore(self.engine)
        self.key_cache = KeyCache(self.keys)
        self.responses = ResponseStore(self.engine, settings.responses_retention_days)
        from spaceai.bodies import BodyLog

        self.bodies = BodyLog(self.engine, settings.log_bodies, settings.log_bodies_days)
        self.ledger = Ledger(self.engine, settings.ledger_flush_interval_s,
                             settings.ledger_batch_size, settings.ledger_dir,
                             settings.ledger_fsync_s)
        self.http = HttpClient(max_idle=settings.upstream_max_idle,
                               idle_s=settings.upstream_idle_s,
                               max_per_host=settings.upstream_max_per_host,
                               ca_bundle=settings.ca_bundle)
        self.providers = build_providers(self.http, settings)
        self.router = Router(self.catalog, self.providers)
        self.control: Control = build_control(settings, self.engine, self.ledger)
        from spaceai import telemetry

        self.telemetry = telemetry.from_env()
        if self.telemetry is not None:
            self.ledger.on_record = self.telemetry.note_usage
        self.alerts = None
        if settings.alert_webhook:
            from spaceai.alerts import BudgetAlerts

            self.alerts = BudgetAlerts(self, settings.alert_webhook, settings.alert_thresholds,
                                       settings.alert_poll_s, settings.alert_daily_report)
        self.ready = False

    async def start(self) -> None:
        await asyncio.to_thread(migrate, self.settings.database_url)
        await self.http.start()
        await self.control.start()
        # rows that dead processes left in their spools reach the database (and the budget
        # counters) before this process admits anything, so every spend it reads is whole
        recovered = await asyncio.to_thread(self.ledger.recover)
        await self.control.recover(recovered)
        self.ledger.start()
        await self.key_cache.start()
        await self.responses.start()  # purges expired stored responses, then periodically
        await self.bodies.start()  # writes logged bodies off the request path; purges them
        if self.telemetry is not None:
            self.telemetry.start()
        if self.alerts is not None:
            await self.alerts.start()
        used = {m.provider for m in self.catalog}
        for name in used:
            if name == "local" and not self.settings.local_model_preload:
                continue
            try:
                await self.providers[name].start()
            except Exception:  # noqa: BLE001 - one broken provider must not stop the others
                log.exception("provider %s failed to start", name)
        # Background threads (ledger writer, key refresh, local engine) hand the GIL back to
        # the event loop within half a millisecond instead of the default five: a request
        # never waits behind a batch write. Objects built at start-up are left out of GC scans.
        # A young-generation scan runs once 10,000 more objects are alive instead of 700:
        # a few dozen requests in flight hold more than 700 between them, so at the default
        # the collector ran every few dozen requests (3 µs a request) and found no garbage.
        sys.setswitchinterval(0.0005)
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        if self.alerts is not None:
            await self.alerts.close()
        await self.key_cache.close()
        await self.responses.close()
        await self.bodies.close()
        await self.control.close()
        for provider in self.providers.values():
            try:
                await provider.close()
            except Exception:  # noqa: BLE001
                log.exception("provider %s failed to close", provider.name)
        await self.http.close()
        await asyncio.to_thread(self.ledger.close)
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.close)
        self.engine.dispose()
