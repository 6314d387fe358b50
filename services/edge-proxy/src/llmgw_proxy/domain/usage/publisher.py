"""Background publisher of usage events: never on the response path, never drops an event.

Requests hand events to :meth:`UsagePublisher.submit` (a deque append). One task publishes them
to JetStream in batches (``publish_async`` for the whole batch, then the acks awaited together,
each message with ``Nats-Msg-Id: <event_id>`` so JetStream de-duplicates re-sends). Events whose
ack does not come (NATS down, timeout, JetStream error) go to the durable :class:`Spool`; while
the spool holds anything, new events are appended behind it so JetStream receives them in order,
and the spool is replayed (oldest first) whenever NATS is connected.

Memory is bounded by ``usage_queue_size``: past it, ``submit`` appends straight to the spool.
Shutdown publishes what is queued (within ``shutdown_flush_timeout``) and spools the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import msgspec

from llmgw_common import contract
from llmgw_proxy.domain.usage.spool import Spool

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
ADOPT_EVERY = 30.0
#: after a wake-up with a part-full batch, wait this long for more events
LINGER = 0.01


class _Batch:
    __slots__ = ("remaining", "failed", "done")

    def __init__(self, size: int, done: asyncio.Future) -> None:
        self.remaining = size
        self.failed: list = []
        self.done = done

    def ok(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.done.done():
            self.done.set_result(None)

    def fail(self, item) -> None:
        self.failed.append(item)
        self.ok()


class UsagePublisher:
    def __init__(self, settings, spool: Spool, metrics=None) -> None:
        self.spool = spool
        self.metrics = metrics
        self.max_queue = settings.usage_queue_size
        self.batch_size = settings.usage_batch_size
        self.ack_timeout = settings.usage_ack_timeout
        self.replay_interval = settings.usage_replay_interval
        self.flush_timeout = settings.shutdown_flush_timeout
        self.nc = None
        #: set once the usage stream exists (publishing waits for it)
        self.js = None
        self.queue: deque[tuple[contract.UsageEvent, dict | None]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        self._stopping = False
        self._batch: list[tuple[bytes, str, str, dict | None]] = []
        self._last_replay = 0.0
        self._pending: dict[str, tuple[_Batch, tuple]] = {}
        self._ack_prefix = ""
        self._ack_nc = None
        self._seq = 0
        self._last_adopt = time.monotonic()
        self.published = 0
        self.spooled = 0
        self.replayed = 0

    # --- producer side (hot path) -------------------------------------------------------------
    def submit(self, event: contract.UsageEvent, headers: dict | None = None) -> None:
        if len(self.queue) >= self.max_queue:
            # Overload or a long outage: memory stays bounded, the event goes to disk.
            self.spool.append([_encode(event)], sync=False)
            self.spooled += 1
            return
        self.queue.append((event, headers))
        if not self._wake.is_set():
            self._wake.set()

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-publisher")
        self._ticker = asyncio.create_task(self._tick(), name="usage-publisher-ticker")

    async def _tick(self) -> None:
        """Wakes the loop periodically so a spool gets replayed without new traffic."""
        while True:
            await asyncio.sleep(self.replay_interval)
            self._wake.set()

    async def stop(self) -> None:
        """Flush: JetStream if it acks in time, else the spool. Nothing is dropped."""
        self._stopping = True
        self._wake.set()
        if self._ticker is not None:
            self._ticker.cancel()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=self.flush_timeout)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                self._task.cancel()
                try:
                    await self._task
                except BaseException:  # noqa: BLE001
                    pass
        leftovers = [item[0] for item in self._batch]
        leftovers += [_encode(event) for event, _ in self.queue]
        self.queue.clear()
        self._batch = []
        if leftovers:
            await asyncio.to_thread(self.spool.append, leftovers)
            self.spooled += len(leftovers)
            log.warning("%d usage events left in the spool at shutdown (replayed on next start)", len(leftovers))

    @property
    def connected(self) -> bool:
        return self.js is not None and self.nc is not None and self.nc.is_connected

    # --- the loop -------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if not self.queue:
                if self._stopping:
                    if self.spool.depth and self.connected:
                        await self._replay()
                    return
                self._wake.clear()
                await self._wake.wait()  # set by submit(), stop() or the ticker
                if self.queue and len(self.queue) < self.batch_size and not self._stopping:
                    # Let a few more events arrive: fewer wake-ups, writes and ack rounds per event.
                    await asyncio.sleep(LINGER)
            try:
                if self.queue:
                    await self._drain_batch()
                now = time.monotonic()
                if self.spool.depth and self.connected and now - self._last_replay >= self.replay_interval:
                    self._last_replay = now
                    await self._replay()
                if now - self._last_adopt >= ADOPT_EVERY:
                    self._last_adopt = now
                    await asyncio.to_thread(self.spool.adopt_orphans)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("usage publisher iteration failed")
                await asyncio.sleep(0.5)

    async def _drain_batch(self) -> None:
        items = []
        queue = self.queue
        for _ in range(min(self.batch_size, len(queue))):
            event, headers = queue.popleft()
            items.append((_encode(event), contract.usage_subject(event.provider), event.event_id, headers))
        self._batch = items
        if self.spool.depth or not self.connected:
            await asyncio.to_thread(self.spool.append, [item[0] for item in items])
            self.spooled += len(items)
            self._count("spooled", len(items))
        else:
            failed = await self._publish(items)
            if failed:
                await asyncio.to_thread(self.spool.append, [item[0] for item in failed])
                self.spooled += len(failed)
                self._count("spooled", len(failed))
            ok = len(items) - len(failed)
            self.published += ok
            self._count("published", ok)
        self._batch = []

    async def _publish(self, items: list[tuple[bytes, str, str, dict | None]]) -> list:
        """Publish a batch and await its acks together; returns the items not acknowledged.

        Plain ``nc.publish`` with our own reply subjects on one inbox subscription: JetStream
        answers each message on its reply subject. (nats-py's ``publish_async`` makes a future, a
        random token (a syscall) and parses every ack as JSON; this path is the publisher's cost.)
        """
        nc = self.nc
        if self._ack_nc is not nc:
            await self._subscribe_acks(nc)
        batch = _Batch(len(items), asyncio.get_running_loop().create_future())
        pending = self._pending
        prefix = self._ack_prefix
        tokens = []
        for item in items:
            payload, subject, event_id, headers = item
            hdrs = {contract.HEADER_MSG_ID: event_id}
            if headers:
                hdrs.update(headers)
            self._seq += 1
            token = str(self._seq)
            pending[token] = (batch, item)
            tokens.append(token)
            try:
                await nc.publish(subject, payload, reply=prefix + token, headers=hdrs)
            except Exception:  # noqa: BLE001 - disconnected, buffer full
                if pending.pop(token, None) is not None:
                    batch.fail(item)
        if batch.remaining:
            try:
                await asyncio.wait_for(asyncio.shield(batch.done), self.ack_timeout)
            except asyncio.TimeoutError:
                pass
        for token in tokens:  # no answer in time: not acknowledged
            entry = pending.pop(token, None)
            if entry is not None:
                batch.failed.append(entry[1])
        if batch.failed:
            log.warning("%d usage events not acknowledged by JetStream; spooled", len(batch.failed))
        return batch.failed

    async def _subscribe_acks(self, nc) -> None:
        self._ack_prefix = nc.new_inbox() + "."
        await nc.subscribe(self._ack_prefix + "*", cb=self._on_ack)
        self._ack_nc = nc

    async def _on_ack(self, msg) -> None:
        entry = self._pending.pop(msg.subject[len(self._ack_prefix):], None)
        if entry is None:
            return
        batch, item = entry
        data = msg.data
        # {"stream":..,"seq":..[,"duplicate":true]} is an ack (a duplicate was stored before);
        # {"error":..} or an empty no-responders status (no stream) is not.
        if data and b'"error"' not in data:
            batch.ok()
        else:
            batch.fail(item)

    async def _replay(self) -> None:
        spool = self.spool
        await asyncio.to_thread(spool.seal)
        for segment in await asyncio.to_thread(spool.sealed_segments):
            offset = await asyncio.to_thread(spool.acked_offset, segment)
            while True:
                if not self.connected:
                    return
                lines, next_offset = await asyncio.to_thread(spool.read, segment, offset, self.batch_size)
                if not lines:
                    await asyncio.to_thread(spool.finished, segment)
                    break
                items = []
                for line in lines:
                    try:
                        event = contract.usage_event_decoder.decode(line)
                    except msgspec.MsgspecError:
                        await asyncio.to_thread(spool.quarantine, line)
                        continue
                    items.append((line, contract.usage_subject(event.provider), event.event_id, None))
                failed = await self._publish(items) if items else []
                if failed:
                    return  # keep the offset; the acked part is de-duplicated on the next try
                await asyncio.to_thread(spool.mark, segment, next_offset, len(lines))
                offset = next_offset
                self.replayed += len(items)
                self._count("replayed", len(items))

    def _count(self, outcome: str, n: int) -> None:
        if self.metrics is not None and n:
            self.metrics.usage_events(outcome, n)
