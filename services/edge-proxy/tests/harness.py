"""Test harness: the proxy under uvicorn in a thread, a stand-in key-service answering the real NATS
lookup contract, and a JetStream reader for the usage events the proxy published."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import nats
import uvicorn
from nats.js.api import ConsumerConfig, DeliverPolicy

from llmgw_common import contract, messaging
from llmgw_proxy.app import create_app
from llmgw_proxy.settings import Settings


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class LoopThread:
    """An asyncio loop in a daemon thread; ``run(coro)`` executes there and returns the result."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class ProxyServer:
    """The real app (create_app) under uvicorn in a background thread, on a free port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self):
        return self.app.state.proxy

    def start(self) -> ProxyServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, loop="uvloop", http="httptools", lifespan="on", access_log=False, log_level="warning",
            timeout_graceful_shutdown=5,
            # as `python -m llmgw_proxy serve`: uvicorn must not rewrite the peer from X-Forwarded-For
            # (the proxy does that itself, only for LLMGW_TRUSTED_PROXIES)
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True, name="proxy")
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 20, what="proxy start")
        assert self.server.started, "proxy failed to start"
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
            self.thread.join(30)
            self.server = None


class FakeKeyService:
    """Stands in for key-service on the real NATS contract: answers ``SUBJECT_KEY_LOOKUP`` with
    ``KeyLookupReply`` from an in-memory table and publishes ``KeyChanged`` through JetStream."""

    def __init__(self, nats_url: str, providers: list[contract.ProviderCredential], routes: list[contract.Route]):
        self.nats_url = nats_url
        self.providers = providers
        self.routes = routes
        self.keys: dict[str, contract.KeyRecord] = {}
        self.lookups = 0
        self.answering = True
        self.lt = LoopThread("fake-key-service")
        self.nc = None
        self.js = None
        self._sub = None
        self.lt.run(self._start())

    async def _start(self) -> None:
        self.nc = await messaging.connect(self.nats_url, "fake-key-service")
        self.js = self.nc.jetstream()
        await messaging.ensure_streams(self.js, contract.STREAM_USAGE, contract.STREAM_KEY_EVENTS)
        await self._subscribe()

    async def _subscribe(self) -> None:
        self._sub = await self.nc.subscribe(
            contract.SUBJECT_KEY_LOOKUP, queue=contract.QUEUE_GROUP_KEY_SERVICE, cb=self._on_lookup
        )
        await self.nc.flush()

    async def _on_lookup(self, msg) -> None:
        self.lookups += 1
        request = contract.key_lookup_request_decoder.decode(msg.data)
        record = self.keys.get(request.key_hash)
        if record is None:
            reply = contract.KeyLookupReply(found=False)
        else:
            reply = contract.KeyLookupReply(found=True, key=record, providers=self.providers, routes=self.routes)
        await msg.respond(contract.encode(reply))

    # --- test API (blocking, any thread) -----------------------------------------------------
    def add_key(self, **fields: Any) -> tuple[str, contract.KeyRecord]:
        secret = "sk-llmgw-" + secrets.token_urlsafe(24)
        record = contract.KeyRecord(
            id=fields.pop("id", "key_" + uuid.uuid4().hex[:12]),
            name=fields.pop("name", "test"),
            project=fields.pop("project", "proj"),
            status=fields.pop("status", "active"),
            **fields,
        )
        self.keys[contract.hash_secret(secret)] = record
        return secret, record

    def update_key(self, secret: str, **changes: Any) -> None:
        import msgspec

        key_hash = contract.hash_secret(secret)
        self.keys[key_hash] = msgspec.structs.replace(self.keys[key_hash], **changes)
        self.publish_change(contract.KeyChanged(action="updated", key_id=self.keys[key_hash].id, key_hashes=[key_hash]))

    def publish_change(self, change: contract.KeyChanged) -> None:
        async def go():
            await self.js.publish(contract.SUBJECT_KEY_CHANGED, contract.encode(change))

        self.lt.run(go())

    def stop_answering(self) -> None:
        async def go():
            await self._sub.unsubscribe()
            await self.nc.flush()

        self.lt.run(go())

    def start_answering(self) -> None:
        self.lt.run(self._subscribe())

    # --- usage events --------------------------------------------------------------------------
    def usage_events(self, key_id: str) -> list[contract.UsageEvent]:
        """Every usage event in the JetStream stream for ``key_id`` (raw messages, duplicates kept)."""
        return self.lt.run(self._read_usage(key_id))

    async def _read_usage(self, key_id: str) -> list[contract.UsageEvent]:
        info = await self.js.stream_info(contract.STREAM_USAGE)
        last = info.state.last_seq
        if info.state.messages == 0:
            return []
        sub = await self.js.pull_subscribe(
            contract.SUBJECT_USAGE_WILDCARD,
            stream=contract.STREAM_USAGE,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, inactive_threshold=5.0),
        )
        events = []
        seen = 0
        try:
            while seen < last:
                try:
                    msgs = await sub.fetch(1000, timeout=0.5)
                except nats.errors.TimeoutError:
                    break
                for msg in msgs:
                    seen = msg.metadata.sequence.stream
                    event = contract.usage_event_decoder.decode(msg.data)
                    if event.key_id == key_id:
                        assert msg.headers.get(contract.HEADER_MSG_ID) == event.event_id
                        events.append(event)
                    await msg.ack()
        finally:
            await sub.unsubscribe()
        return events

    def wait_usage(self, key_id: str, count: int, timeout: float = 5.0) -> list[contract.UsageEvent]:
        box: dict[str, list] = {}

        def enough():
            box["events"] = self.usage_events(key_id)
            return len(box["events"]) >= count

        wait_until(enough, timeout, 0.05, f"{count} usage event(s) for {key_id}")
        return box["events"]

    def kv_get(self, bucket: str, key: str):
        async def go():
            kv = await self.js.key_value(bucket)
            try:
                return await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None

        return self.lt.run(go())

    def close(self) -> None:
        try:
            self.lt.run(self.nc.close(), 10)
        finally:
            self.lt.stop()


def parse_ts(value: datetime) -> float:
    return value.timestamp()
