"""Background work of the gateway's long-lived parts, started and stopped the same way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("spaceai")


async def stop(*tasks: asyncio.Task | None) -> None:
    """Cancel ``tasks`` and wait until each has ended."""
    for task in tasks:
        if task is not None:
            task.cancel()
    for task in tasks:
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass


async def purge_forever(purge: Callable[[], Awaitable[int]], interval_s: float, what: str,
                        retention_days: float) -> None:
    """Run ``purge`` (it deletes ``what`` past its retention, returning how many) every
    ``interval_s``; a failure is logged and tried again next round."""
    while True:
        try:
            n = await purge()
            if n:
                log.info("purged %d %s older than %g days", n, what, retention_days)
        except Exception:  # noqa: BLE001 - a failed purge is retried next round
            log.exception("purging %s failed", what)
        await asyncio.sleep(interval_s)
