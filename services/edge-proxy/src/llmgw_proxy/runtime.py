"""Everything one proxy process holds: created in the Litestar lifespan, kept on ``app.state.proxy``."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.client import Client as NATS

from llmgw_common import contract, messaging
from llmgw_common.telemetry import setup_tracing
from llmgw_proxy.domain.auth.key_cache import KeyCache
from llmgw_proxy.domain.budgets import BudgetGuard
from llmgw_proxy.domain.kv import KV_BUCKET_RATELIMIT, ensure_bucket
from llmgw_proxy.domain.limits import RateLimiter
from llmgw_proxy.domain.models import ModelCatalog
from llmgw_proxy.domain.proxy import ProxyService
from llmgw_proxy.domain.response_cache import ResponseCache
from llmgw_proxy.domain.routing import Breakers
from llmgw_proxy.domain.upstream.client import UpstreamPool
from llmgw_proxy.domain.usage.publisher import UsagePublisher
from llmgw_proxy.domain.usage.spool import Spool
from llmgw_proxy.metrics import CONTENT_TYPE, Metrics
from llmgw_proxy.settings import Settings

log = logging.getLogger(__name__)

#: rate-limit windows are one minute; their KV entries expire on their own after this
RATELIMIT_TTL = 180.0
#: how long start-up waits for the first NATS connection before serving anyway (503s until then)
FIRST_CONNECT_WAIT = 5.0


class ProxyRuntime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = metrics = Metrics()
        self.keys = KeyCache(settings, metrics)
        self.limits = RateLimiter(metrics)
        self.budgets = BudgetGuard(metrics)
        self.pool = UpstreamPool(settings)
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown, metrics)
        self.spool = Spool(settings.state_dir / "spool", settings.proxy_instance, settings.spool_segment_bytes)
        self.publisher = UsagePublisher(settings, self.spool, metrics)
        self.tracer = None
        self.service = ProxyService(
            settings, self.keys, self.limits, self.budgets, self.pool, self.breakers, self.publisher, metrics
        )
        self.catalog = self.service.catalog = ModelCatalog(self.pool)
        self.response_cache = self.service.cache = ResponseCache(settings, metrics)
        self.nc: NATS | None = None
        self._connect_task: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._metrics_server: asyncio.AbstractServer | None = None
        metrics.gauge(
            "llmgw_proxy_spool_depth", "Usage events in the local spool, not yet acknowledged by JetStream.",
            lambda: self.spool.depth,
        )
        metrics.gauge(
            "llmgw_proxy_usage_queue_depth", "Usage events waiting in memory for the publisher.",
            lambda: len(self.publisher.queue),
        )

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._connected = asyncio.Event()
        await asyncio.to_thread(self.spool.open)
        # The list-price table (genai-prices) loads on first use; load it now, off the event loop,
        # so the first priced request of this worker does not stall every other one (~100 ms).
        await asyncio.to_thread(_warm_pricing)
        if self.spool.depth:
            log.info("usage spool holds %d events from earlier runs; replaying when NATS is up", self.spool.depth)
        provider = setup_tracing(self.settings.service_name)
        if provider is not None:
            from opentelemetry import trace

            self.tracer = self.service.tracer = self.keys.tracer = trace.get_tracer("llmgw_proxy")
        self.publisher.start()
        if self.metrics.snapshot_dir is not None:  # several workers: see metrics.py
            self._snapshots = asyncio.create_task(self._write_snapshots(), name="metrics-snapshots")
        self._connect_task = asyncio.create_task(self._connect(), name="nats-connect")
        if self.settings.proxy_metrics_port:
            self._metrics_server = await asyncio.start_server(
                self._serve_metrics, self.settings.bind_host, self.settings.proxy_metrics_port, reuse_port=True
            )
        try:
            await asyncio.wait_for(self._connected.wait(), FIRST_CONNECT_WAIT)
        except asyncio.TimeoutError:
            log.warning("NATS not reachable at start-up; serving (503 for unknown keys) and retrying")

    _snapshots: asyncio.Task | None = None

    async def _write_snapshots(self) -> None:
        from llmgw_proxy.metrics import SNAPSHOT_INTERVAL

        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL)
            try:
                self.metrics.write_snapshot()
            except OSError as exc:
                log.warning("cannot write the metrics snapshot (%s)", type(exc).__name__)

    async def stop(self) -> None:
        """Runs after uvicorn stopped accepting and in-flight requests finished."""
        if self._snapshots is not None:
            self._snapshots.cancel()
        if self._metrics_server is not None:
            self._metrics_server.close()
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        await self.service.close()
        await self.publisher.stop()
        await self.keys.close()
        await self.pool.close()
        if self.nc is not None:
            try:
                await asyncio.wait_for(self.nc.drain(), 5)
            except Exception:  # noqa: BLE001
                await self.nc.close()
        await asyncio.to_thread(self.spool.close)

    async def _connect(self) -> None:
        settings = self.settings
        while True:
            try:
                nc = await messaging.connect(
                    settings.nats_url, f"{settings.service_name}-{self.spool.instance}", on_reconnect=self._on_reconnect
                )
                break
            except Exception as exc:  # noqa: BLE001 - keep trying; requests 503 meanwhile
                log.warning("cannot connect to NATS at %s (%s); retrying", settings.nats_url, type(exc).__name__)
                await asyncio.sleep(1.0)
        self.nc = nc
        await nc.subscribe(contract.SUBJECT_KEY_CHANGED, cb=self._on_key_changed)
        await nc.flush()
        self.keys.nc = nc
        self.limits.nc = self.budgets.nc = nc
        js = nc.jetstream()
        self._connected.set()
        while True:
            try:
                await messaging.ensure_streams(js, contract.STREAM_USAGE)
                self.publisher.nc, self.publisher.js = nc, js
                self.limits.kv = await ensure_bucket(js, KV_BUCKET_RATELIMIT, ttl=RATELIMIT_TTL)
                self.budgets.kv = await ensure_bucket(js, contract.KV_BUCKET_BUDGET)
                await self.response_cache.bind(js, nc.max_payload)
                return
            except Exception as exc:  # noqa: BLE001 - JetStream not ready yet
                log.warning("JetStream set-up failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _on_reconnect(self) -> None:
        # A KeyChanged published while we were away is lost to a core subscription: forget everything.
        self.keys.clear()

    async def _on_key_changed(self, msg) -> None:
        try:
            change = contract.key_changed_decoder.decode(msg.data)
        except msgspec.MsgspecError:
            log.warning("undecodable KeyChanged message; dropping the whole key cache")
            self.keys.clear()
            return
        self.keys.on_changed(change)

    async def _serve_metrics(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A minimal HTTP/1.0 listener for ``/metrics`` on its own port."""
        try:
            request_line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.split()
            if len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics":
                body, status, ctype = self.metrics.render(), b"200 OK", CONTENT_TYPE
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(
                b"HTTP/1.0 " + status + b"\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
                + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
            )
            await writer.drain()
        except Exception:  # noqa: BLE001
            pass
        finally:
            writer.close()


def _warm_pricing() -> None:
    try:
        from llmgw_common import pricing

        pricing.preload()
    except Exception:  # noqa: BLE001 - a warm-up only; the request path handles pricing errors
        log.debug("price table warm-up failed", exc_info=True)
