"""The ingest's NATS fast paths (natsfast.py) against real NATS: same messages as nats-py, acks that
really happen, pull status messages still honoured, nats-py's path kept when verification fails."""

from __future__ import annotations

import time
import uuid

import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from helpers import wait_for
from llmgw_common.messaging import connect
from llmgw_metering.ingest import natsfast
from llmgw_metering.ingest.natsfast import LazyHeadersMsg, ack_many, install_fast_header_parser, same_message
from llmgw_metering.ingest.puller import ConsumerGone, Puller

HEADER_SETS = [
    None,
    {"Nats-Msg-Id": "x", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    {"A": "1", "B": " spaced value ", "Caf": "caf\u00e9 \u2603"},
    {"K": "v: with: colons", "tracestate": "a=b,c=d"},
]


@pytest_asyncio.fixture
async def stream(nats_url):
    """A throw-away stream with two pull consumers on the same messages."""
    nc = await connect(nats_url, name="natsfast-tests")
    js = nc.jetstream()
    name = "FASTTEST_" + uuid.uuid4().hex[:8].upper()
    subject = f"fasttest.{name.lower()}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"{subject}.>"]))
    for durable in ("fast", "plain"):
        await js.add_consumer(
            name, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_deliver=-1)
        )
    try:
        yield nc, js, name, subject
    finally:
        try:
            await js.delete_stream(name)
        finally:
            await nc.close()


async def _publish(nc, subject: str, n: int) -> list[bytes]:
    bodies = []
    for i in range(n):
        body = f'{{"n": {i}, "id": "{uuid.uuid4().hex}"}}'.encode()
        headers = HEADER_SETS[i % len(HEADER_SETS)]
        if headers and "Nats-Msg-Id" in headers:
            headers = {**headers, "Nats-Msg-Id": uuid.uuid4().hex}  # (JetStream deduplicates by it)
        await nc.publish(f"{subject}.s{i % 3}", body, headers=headers)
        bodies.append(body)
    await nc.flush()
    return bodies


async def _fetch_all(puller: Puller, n: int, deadline: float = 10.0) -> list[Msg]:
    got: list[Msg] = []
    stop = time.monotonic() + deadline
    while len(got) < n and time.monotonic() < stop:
        got.extend(await puller.fetch(n - len(got), 0.5))
    return got


async def _pending(js, stream_name: str, durable: str) -> tuple[int, int]:
    info = await js.consumer_info(stream_name, durable)
    return info.num_pending, info.num_ack_pending


async def test_fast_inbox_builds_the_messages_nats_py_builds(stream, nats_url):
    nc, js, name, subject = stream
    bodies = await _publish(nc, subject, 40)

    consumer_nc = await connect(nats_url, name="natsfast-consumer")
    try:
        install_fast_header_parser(consumer_nc)
        puller = Puller(consumer_nc, name, "fast")
        await puller.start()
        assert puller.fast, "the fast path was not installed"
        fast = await _fetch_all(puller, len(bodies))
        plain_sub = await consumer_nc.jetstream().pull_subscribe_bind("plain", stream=name)
        plain: list[Msg] = []
        while len(plain) < len(bodies):
            plain.extend(await plain_sub.fetch(len(bodies) - len(plain), timeout=5))

        assert [m.data for m in fast] == bodies
        assert [m.data for m in plain] == bodies
        for f, p in zip(fast, plain, strict=True):
            assert isinstance(f, Msg)
            assert f.subject == p.subject
            assert f.headers == p.headers
            assert f.header == p.headers
            assert f.metadata.sequence.stream == p.metadata.sequence.stream
            assert f.metadata.num_delivered == p.metadata.num_delivered == 1
            assert f.sid == puller._sub._id
            assert f.reply.startswith(f"$JS.ACK.{name}.fast.")
        # the stats nats-py keeps are kept (in_msgs counts every delivered message)
        assert consumer_nc.stats["in_msgs"] >= 2 * len(bodies)
        for m in [*fast, *plain]:
            await m.ack()
        await puller.close()
    finally:
        await consumer_nc.close()


def test_lazy_headers_parse_once_and_match_nats_py():
    raw = b"NATS/1.0\r\nNats-Msg-Id: abc\r\nBad Name: x\r\nK:v\r\n\r\n"
    calls = []
    client = type("Client", (), {"_parse_header_lines": staticmethod(natsfast.parse_header_lines)})
    library_like = natsfast._plain_header_parser(client)

    def parse(block):
        calls.append(block)
        return library_like(block)

    msg = LazyHeadersMsg(None, "s", "r", b"{}", raw, 3, parse)
    first = msg.headers
    assert first == {"Nats-Msg-Id": "abc", "K": "v"}
    assert msg.headers is first and msg.header is first  # one dict, parsed once
    assert len(calls) == 1
    msg.headers = {"replaced": "1"}
    assert msg.headers == {"replaced": "1"}
    plain = Msg(_client=None, subject="s", reply="r", data=b"{}", headers={"replaced": "1"}, _sid=3)
    assert same_message(msg, plain)
    # a block with nothing after the version line gives None, like nats-py
    assert LazyHeadersMsg(None, "s", "r", b"x", b"NATS/1.0\r\n\r\n", 1, library_like).headers is None


async def test_bulk_acks_really_ack(stream, nats_url):
    nc, js, name, subject = stream
    bodies = await _publish(nc, subject, 25)
    consumer_nc = await connect(nats_url, name="natsfast-acks")
    try:
        puller = Puller(consumer_nc, name, "fast")
        await puller.start()
        msgs = await _fetch_all(puller, len(bodies))
        assert len(msgs) == len(bodies)
        assert await _pending(js, name, "fast") == (0, len(bodies))
        out_before = consumer_nc.stats["out_msgs"]
        rest = await ack_many(consumer_nc, msgs)
        assert rest == []  # every ack went in the one write
        assert all(m.is_acked for m in msgs)
        assert consumer_nc.stats["out_msgs"] == out_before + len(bodies)
        await wait_for(lambda: _acked(js, name, "fast"), what="acks processed by the server")
        await puller.close()
    finally:
        await consumer_nc.close()

    # a restarted consumer does not get the acked messages again
    again_nc = await connect(nats_url, name="natsfast-acks-again")
    try:
        puller = Puller(again_nc, name, "fast")
        await puller.start()
        assert await puller.fetch(10, 0.3) == []
        await puller.close()
    finally:
        await again_nc.close()


async def _acked(js, name, durable):
    return await _pending(js, name, durable) == (0, 0)


async def test_bulk_acks_leave_what_they_cannot_do_to_msg_ack(stream, nats_url, monkeypatch):
    nc, js, name, subject = stream
    await _publish(nc, subject, 6)
    consumer_nc = await connect(nats_url, name="natsfast-acks-fallback")
    try:
        puller = Puller(consumer_nc, name, "fast")
        await puller.start()
        msgs = await _fetch_all(puller, 6)
        await msgs[0].ack()  # already acked: left to msg.ack(), which refuses it as nats-py does
        foreign = Msg(_client=nc, subject="x", reply=msgs[1].reply, data=b"x")  # another connection's message
        rest = await ack_many(consumer_nc, [msgs[0], foreign, *msgs[2:4]])
        assert rest == [msgs[0], foreign]
        assert msgs[2].is_acked and msgs[3].is_acked

        # a replaced Msg.ack (instrumentation, a test's lossy ack) is always called as is
        seen = []

        async def patched(self):
            seen.append(self)

        monkeypatch.setattr(Msg, "ack", patched)
        rest = await ack_many(consumer_nc, msgs[4:])
        assert rest == msgs[4:] and not seen and not msgs[4].is_acked
        monkeypatch.undo()
        for m in [msgs[1], *msgs[4:]]:
            await m.ack()
        await wait_for(lambda: _acked(js, name, "fast"), what="all acked")
        await puller.close()
    finally:
        await consumer_nc.close()


async def test_pull_status_messages_still_end_a_request(stream, nats_url):
    nc, js, name, subject = stream
    consumer_nc = await connect(nats_url, name="natsfast-status")
    try:
        puller = Puller(consumer_nc, name, "fast")
        await puller.start()
        assert puller.fast
        # nothing to deliver: the server ends the request (408) after `expires`, well before the
        # client-side margin (expires + 2 s)
        started = time.monotonic()
        assert await puller.fetch(10, 0.3) == []
        assert time.monotonic() - started < 1.5
        # a few messages, fewer than asked: the request ends at expiry with what arrived
        await _publish(nc, subject, 3)
        started = time.monotonic()
        got = await puller.fetch(10, 0.5)
        while len(got) < 3 and time.monotonic() - started < 5:
            got.extend(await puller.fetch(10 - len(got), 0.5))
        assert len(got) == 3
        await ack_many(consumer_nc, got)
        # the consumer is deleted while a request is pending: 409 "Consumer Deleted" -> ConsumerGone
        await puller.prefetch(10, 5.0)
        await wait_for(lambda: _waiting(js, name, "fast"), what="the pull request registered")
        await js.delete_consumer(name, "fast")
        started = time.monotonic()
        with pytest.raises(ConsumerGone):
            # the 409 ends the pending request at once ([]), the next fetch reports it (or this
            # one, if the 409 was in before it)
            for _ in range(2):
                assert await puller.fetch(10, 5.0) == []
        assert time.monotonic() - started < 3
        await puller.close()
    finally:
        await consumer_nc.close()


async def _waiting(js, name, durable):
    return (await js.consumer_info(name, durable)).num_waiting >= 1


async def test_unverifiable_client_keeps_nats_py_path(stream, nats_url):
    nc, js, name, subject = stream
    bodies = await _publish(nc, subject, 8)

    class OtherMsg(Msg):
        pass

    consumer_nc = await connect(nats_url, name="natsfast-fallback")
    consumer_nc.msg_class = OtherMsg  # not the class the fast path was verified against
    try:
        puller = Puller(consumer_nc, name, "fast")
        await puller.start()
        assert not puller.fast
        assert not hasattr(consumer_nc, "_llmgw_fast_inbox")
        msgs = await _fetch_all(puller, len(bodies))
        assert [m.data for m in msgs] == bodies
        assert all(type(m) is OtherMsg for m in msgs)
        for m in msgs:
            await m.ack()
        await wait_for(lambda: _acked(js, name, "fast"), what="all acked")
        await puller.close()
    finally:
        await consumer_nc.close()


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 10_000])
async def test_fast_parser_makes_the_library_parsers_calls(chunk):
    from nats.protocol.parser import Parser

    expected = await natsfast._parser_calls(Parser, chunk)
    assert len(expected) > 10
    assert await natsfast._parser_calls(natsfast.FastParser, chunk) == expected


@pytest.mark.parametrize(
    "corpus",
    [
        b"HMSG a 1 x 2\r\nNATS/1.0\r\n\r\n",
        b"MSG a 1 -3\r\nabc\r\n",
        b"BOGUS\r\n",
        b"MSG a x 1\r\na\r\n",
        b"PING\r\nMSG",
    ],
)
async def test_fast_parser_fails_like_the_library(corpus):
    from nats.protocol.parser import Parser

    for chunk in (1, 4, 100):
        expected = await natsfast._parser_calls(Parser, chunk, corpus)
        assert await natsfast._parser_calls(natsfast.FastParser, chunk, corpus) == expected


async def test_fast_parser_on_a_live_connection(nats_url):
    fast_nc = await connect(nats_url, name="natsfast-parser")
    plain_nc = await connect(nats_url, name="natsfast-parser-plain")
    try:
        assert await natsfast.install_fast_parser(fast_nc)
        assert type(fast_nc._ps) is natsfast.FastParser
        subject = "fastparser." + uuid.uuid4().hex
        got: dict[str, list[Msg]] = {"fast": [], "plain": []}

        async def collect(into):
            async def cb(msg):
                got[into].append(msg)

            return cb

        await fast_nc.subscribe(subject, cb=await collect("fast"))
        await plain_nc.subscribe(subject, cb=await collect("plain"))
        await fast_nc.flush()
        await plain_nc.flush()
        sender = await connect(nats_url, name="natsfast-parser-sender")
        try:
            for i in range(300):  # large enough to split messages across socket reads
                body = (f"{i}:" + "x" * (i * 37 % 3000)).encode()
                await sender.publish(subject, body, headers=HEADER_SETS[i % len(HEADER_SETS)], reply=f"r.{i}")
            await sender.flush()
        finally:
            await sender.close()

        async def both():
            return len(got["fast"]) == len(got["plain"]) == 300

        await wait_for(both, what="all messages on both connections")
        for f, p in zip(got["fast"], got["plain"], strict=True):
            assert (f.subject, f.reply, f.data, f.headers) == (p.subject, p.reply, p.data, p.headers)
        # request/reply (PING/PONG, +OK etc. go through the library's parser) still works
        await fast_nc.flush(timeout=2)
    finally:
        await fast_nc.close()
        await plain_nc.close()
