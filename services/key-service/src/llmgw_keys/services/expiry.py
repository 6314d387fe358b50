"""Background task: keys whose ``expires_at`` passed are marked ``expired`` and announced.

Reads never depend on it (the API and the lookup compute the status from ``expires_at``); it
exists so proxies drop cached answers promptly and the audit log shows when a key expired.
"""

from __future__ import annotations

import asyncio
import logging

from llmgw_common.telemetry import untraced

from llmgw_keys.runtime import Runtime
from llmgw_keys.services.keys import expire_due

log = logging.getLogger(__name__)


async def run_once(runtime: Runtime) -> list[str]:
    async with runtime.transaction() as tx:
        expired = await expire_due(tx)
    if expired:
        log.info("marked %d key(s) expired", len(expired))
    return expired


async def expiry_loop(runtime: Runtime, interval: float) -> None:
    while True:
        try:
            with untraced():  # a query every few seconds is not worth a trace each
                await run_once(runtime)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - keep running through database outages
            log.warning("expiry pass failed (%s)", type(exc).__name__)
        await asyncio.sleep(interval)
