"""A lean JetStream pull loop for one durable consumer.

nats-py's ``PullSubscription.fetch`` waits for every message with its own ``asyncio.wait_for``
(a task per message), which caps a consumer at ~15k messages/s on this class of machine. This
puller speaks the same documented pull protocol (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``
with ``batch`` + ``expires``) over one inbox subscription whose callback only appends to a buffer:
the messages are ordinary nats-py ``Msg`` objects (``ack()``, ``nak()``, ``term()``,
``in_progress()``, ``metadata``), and a request ends on the server's 404/408/409 status.

Nothing is lost when a request times out on the client side: anything the server still delivers
lands in the buffer and is returned by the next fetch (or nak'ed on close).
"""

from __future__ import annotations

import asyncio
import json
import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from llmgw_metering.ingest.natsfast import install_fast_inbox, uninstall_fast_inbox

log = logging.getLogger(__name__)

_END_STATUSES = {"404", "408", "409"}


class ConsumerGone(Exception):
    """The durable consumer (or its stream) was deleted: the caller re-creates it."""


class Puller:
    def __init__(self, nc: NATS, stream: str, consumer: str) -> None:
        self._nc = nc
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._buffer: list[Msg] = []
        self._want = 0
        self._done = asyncio.Event()
        #: messages the pending pull request may still deliver (0: no request pending)
        self._remaining = 0
        self._gone = False
        self._inbox = ""
        self._sub: Subscription | None = None
        self._expires = 0.0
        self.fast = False

    async def start(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(
            self._inbox, cb=self._on_message, pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30
        )
        #: delivered straight from the read loop (natsfast), else through the callback above
        self.fast = await install_fast_inbox(self._nc, self._sub, self._deliver)

    async def _on_message(self, msg: Msg) -> None:
        self._deliver(msg)

    def _deliver(self, msg: Msg) -> None:
        headers = msg.headers if not msg.data else None  # a status message has no payload
        if headers and "Status" in headers:
            status = headers.get("Status", "")
            if status in _END_STATUSES or status.startswith("5"):
                description = headers.get("Description", "")
                if status == "409" and "Deleted" in description:
                    self._gone = True
                if status == "409" or status.startswith("5"):
                    log.debug("pull request ended: %s %s", status, description)
                self._remaining = 0
                self._done.set()
            return  # 100 = idle heartbeat
        self._buffer.append(msg)
        if self._remaining > 0:
            self._remaining -= 1
        if len(self._buffer) >= self._want or self._remaining == 0:
            self._done.set()

    async def _request(self, batch: int, expires: float) -> None:
        self._expires = expires
        self._remaining = batch
        self._done.clear()
        body = {"batch": batch, "expires": int(expires * 1_000_000_000)}
        await self._nc.publish(self._subject, json.dumps(body).encode(), reply=self._inbox)

    async def fetch(self, batch: int, expires: float) -> list[Msg]:
        """Up to ``batch`` messages: as soon as that many arrived, else when the pull request ends."""
        if self._gone:
            self._gone = False
            raise ConsumerGone
        if len(self._buffer) < batch:
            self._want = batch
            if self._remaining == 0:
                await self._request(batch - len(self._buffer), expires)
            else:
                self._done.clear()
            if len(self._buffer) < batch and self._remaining > 0:
                try:
                    # The server ends the request after ``expires``; the margin covers a request lost in a reconnect.
                    async with asyncio.timeout(expires + 2.0):
                        await self._done.wait()
                except TimeoutError:
                    self._remaining = 0
        out = self._buffer[:batch]
        del self._buffer[:batch]
        return out

    async def prefetch(self, batch: int, expires: float) -> None:
        """Ask for the next batch now (while the caller works on this one), unless a request is pending."""
        if self._remaining == 0 and len(self._buffer) < batch:
            self._want = batch
            await self._request(batch - len(self._buffer), expires)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def close(self) -> list[Msg]:
        """Stop receiving; returns what was delivered but never fetched (the caller naks it).

        A pull request still open on the server is let run out first (it expires within
        ``expires``), so nothing is delivered to an inbox nobody listens to any more.
        """
        if self._remaining > 0:
            self._done.clear()
            try:
                async with asyncio.timeout(self._expires + 0.5):
                    while self._remaining > 0:
                        await self._done.wait()
                        self._done.clear()
            except TimeoutError:
                pass
        if self._sub is not None:
            uninstall_fast_inbox(self._nc, self._sub)
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - connection already closed
                pass
            self._sub = None
        left, self._buffer = self._buffer, []
        return left
