"""A faster, behaviour-identical NATS header parser for the consumer's connection.

nats-py parses every message's header block with ``Client._parse_header_lines``, which checks
each header name character by character in Python (``any(c.isspace() for c in key)``). Usage
messages carry two or three headers (``Nats-Msg-Id``, ``traceparent``, maybe ``tracestate``);
at 20k messages/s that check alone is ~15% of the ingest process's CPU. This module installs, on
one connection only, a drop-in replacement that makes the same decisions with a compiled regex.

It is verified against nats-py's own implementation on a corpus of header blocks (edge cases
included) before it is installed; if the library changed shape or the results differ, nothing is
installed and nats-py's parser stays in use.
"""

from __future__ import annotations

import dataclasses
import logging
import re

from nats.aio.msg import Msg
from nats.protocol import parser as _nats_parser

log = logging.getLogger(__name__)

_CRLF = b"\r\n"
# str.isspace() and the regex \s agree on every code point an ASCII-decoded name can hold
_WHITESPACE = re.compile(r"\s")

_CORPUS = [
    b"Nats-Msg-Id: 0b9c\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
    b"A:1\r\nB:\t2 \r\n\r\n",
    b"Bad Name: x\r\nOk: y\r\n",
    b"Tab\tName: x\r\nFs\x1cName: y\r\nUs\x1fName: z\r\n\r\n",
    b"NoColon\r\n: empty-name\r\nK: v: with: colons\r\n",
    "Caf\u00e9: x\r\nK: caf\u00e9 \u2603\r\n".encode(),
    b"K: \xff\xfe broken utf8\r\nK: second wins\r\n",
    b"",
    b"\r\n\r\n",
    b"  Spaced  :  value  \r\n",
]


def parse_header_lines(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.split(_CRLF):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITESPACE.search(key):
            continue
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def install_fast_header_parser(nc) -> bool:
    """Use :func:`parse_header_lines` on this connection if it is provably equivalent."""
    original = getattr(type(nc), "_parse_header_lines", None)
    if original is None:
        return False
    try:
        for sample in _CORPUS:
            if original(sample) != parse_header_lines(sample):
                log.info("nats header parser differs from nats-py's on %r; not installed", sample)
                return False
    except Exception:  # noqa: BLE001 - a changed signature: keep the library's parser
        return False
    nc._parse_header_lines = parse_header_lines  # instance attribute: this connection only
    return True


# --- the pull inbox fast path ---------------------------------------------------------------------
#
# nats-py hands every delivered message through ``Client._process_msg`` -> ``_process_headers`` ->
# ``_build_message`` -> the subscription's pending queue -> its ``_wait_for_msgs`` task -> the
# callback: ~15 µs per message, a third of the ingest process's CPU. The puller's callback only
# appends to a buffer, so for its inbox (and only there) the message is built directly and handed to
# a synchronous sink from the read loop. Every other subscription of the connection goes through
# nats-py's own ``_process_msg`` unchanged.
#
# Headers: a delivered usage message carries a plain header block (``NATS/1.0\r\n`` + lines); its
# dict is built on first access of ``msg.headers`` (the ingest path reads it only for tracing and
# dead letters), with the same function nats-py would use, so every reader sees the same dict.
# Anything else (status lines: 404/408/409/100/5xx, no payload, a block that does not start with the
# plain version line) is parsed eagerly by nats-py's own ``_process_headers``.

_PLAIN_HDR = b"NATS/1.0\r\n"
_PLAIN_HDR_LEN = len(_PLAIN_HDR)
_UNPARSED = object()


class LazyHeadersMsg(Msg):
    """A nats-py ``Msg`` whose ``headers`` dict is parsed on first access (then cached)."""

    def __init__(self, client, subject: str, reply: str, data: bytes, raw_headers: bytes, sid: int, parse) -> None:
        self._client = client
        self.subject = subject
        self.reply = reply
        self.data = data
        self._sid = sid
        self._raw_headers = raw_headers
        self._parse = parse
        self._hdr = _UNPARSED

    @property
    def headers(self):  # type: ignore[override]
        hdr = self._hdr
        if hdr is _UNPARSED:
            hdr = self._hdr = self._parse(self._raw_headers)
        return hdr

    @headers.setter
    def headers(self, value) -> None:
        self._hdr = value


def _plain_header_parser(nc):
    """``_process_headers`` for a plain block (``NATS/1.0\\r\\n`` + lines), as a sync function."""
    parse_lines = nc._parse_header_lines

    def parse(raw: bytes):
        if len(raw) <= _PLAIN_HDR_LEN:
            return None
        try:
            return parse_lines(raw[_PLAIN_HDR_LEN:]) or None
        except Exception:  # noqa: BLE001 - nats-py reports it to error_cb and drops the headers
            return None

    return parse


_HEADER_CORPUS = [
    b"NATS/1.0\r\nNats-Msg-Id: 0b9c\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
    b"NATS/1.0\r\nA:1\r\nB:\t2 \r\n\r\n",
    b"NATS/1.0\r\nBad Name: x\r\nOk: y\r\n\r\n",
    b"NATS/1.0\r\nNoColon\r\n: empty\r\nK: v: w\r\n\r\n",
    b"NATS/1.0\r\n\r\n",
    b"NATS/1.0\r\n",
    b"NATS/1.0\r\nStatus: 404\r\nDescription: not a status line\r\n\r\n",
    "NATS/1.0\r\nK: caf\u00e9\r\nK: again\r\n\r\n".encode(),
]


class _FastInbox:
    """The replacement ``_process_msg`` of one connection: registered sids go to their sink."""

    def __init__(self, nc, original) -> None:
        self.nc = nc
        self.original = original
        self.sinks: dict[int, object] = {}
        self.parse = _plain_header_parser(nc)
        self.msg_class = nc.msg_class

    async def process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        sink = self.sinks.get(sid)
        if sink is None:
            return await self.original(sid, subject, reply, data, headers)
        nc = self.nc
        sub = nc._subs.get(sid)
        if sub is None or sub._jsi is not None or sub._future is not None:
            return await self.original(sid, subject, reply, data, headers)
        stats = nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        sub._received += 1
        if sub._max_msgs > 0 and sub._received >= sub._max_msgs:
            nc._subs.pop(sid, None)
        if headers and data and headers.startswith(_PLAIN_HDR):
            msg = LazyHeadersMsg(nc, subject.decode(), reply.decode(), data, headers, sid, self.parse)
        else:
            hdr = await nc._process_headers(headers)
            msg = nc._build_message(sid, subject, reply, data, hdr)
            if not msg:
                return
        sink(msg)


def same_message(a, b) -> bool:
    """Field by field (nats-py's dataclass ``==`` also requires the very same class)."""
    return all(getattr(a, f.name) == getattr(b, f.name) for f in dataclasses.fields(Msg))


async def _verified_fast_inbox(nc) -> _FastInbox | None:
    if nc.msg_class is not Msg:
        return None
    original = nc._process_msg
    if getattr(original, "__func__", None) is not getattr(type(nc), "_process_msg", None):
        return None  # replaced by someone else already
    for attr in ("_subs", "stats", "_process_headers", "_build_message"):
        if not hasattr(nc, attr):
            return None
    fast = _FastInbox(nc, original)
    reply = "$JS.ACK.S.C.1.2.3.4.0"
    for raw in _HEADER_CORPUS:
        expected = nc._build_message(7, b"s.x", reply.encode(), b"{}", await nc._process_headers(raw))
        got = LazyHeadersMsg(nc, "s.x", reply, b"{}", raw, 7, fast.parse)
        if type(expected) is not Msg or not same_message(got, expected):
            log.info("nats inbox fast path differs from nats-py on %r; not installed", raw)
            return None
    return fast


async def install_fast_inbox(nc, sub, sink) -> bool:
    """Deliver the messages of ``sub`` (a plain callback subscription of ``nc``) to ``sink(msg)``
    synchronously from the read loop, bypassing its pending queue and callback task.

    Verified before use: nats-py's ``_process_msg`` / ``_process_headers`` / ``_build_message`` must
    have the expected shape and the fast path must build the same message (fields and headers dict)
    on a corpus; if not, nothing is installed (False) and the subscription's callback keeps
    receiving the messages.
    """
    try:
        for attr in ("_id", "_jsi", "_future", "_received", "_max_msgs"):
            if not hasattr(sub, attr):
                return False
        if sub._jsi is not None or sub._future is not None or nc._subs.get(sub._id) is not sub:
            return False
        fast = getattr(nc, "_llmgw_fast_inbox", None)
        if fast is None:
            fast = await _verified_fast_inbox(nc)
            if fast is None:
                return False
            nc._llmgw_fast_inbox = fast
            nc._process_msg = fast.process_msg  # instance attribute: this connection only
        fast.sinks[sub._id] = sink
        return True
    except Exception as exc:  # noqa: BLE001 - a changed library: keep nats-py's path
        log.info("nats inbox fast path not installed: %s", exc)
        return False


def uninstall_fast_inbox(nc, sub) -> None:
    fast = getattr(nc, "_llmgw_fast_inbox", None)
    if fast is not None:
        fast.sinks.pop(getattr(sub, "_id", None), None)


# --- bulk acks --------------------------------------------------------------------------------------
#
# ``Msg.ack()`` is ``client.publish(msg.reply)``: an empty-payload ``PUB <reply>  0`` per message, each
# through publish()'s checks and a flusher kick (~5 µs). After a batch commits, its acks are written
# as one buffer instead: the same bytes nats-py would send, in one ``_send_command``. Verified at
# first use; whenever the conditions are not met the caller acks one by one with ``msg.ack()``.

_ACK_VERIFIED: dict[int, bool] = {}
_NO_WS = re.compile(r"[ \t\r\n]")
#: nats-py's own ``Msg.ack`` as imported (a replaced one -- e.g. a test's -- is always called as is)
_LIBRARY_ACK = Msg.ack


class _ProbeClient:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.sent: list[bytes] = []
        self.stats = {"out_msgs": 0, "out_bytes": 0}
        self._flush_queue = None

    async def publish(self, *args, **kwargs) -> None:
        self.calls.append((args, kwargs))

    async def _send_command(self, cmd: bytes, priority: bool = False) -> None:
        self.sent.append(cmd)


def _ack_line(reply: str) -> str:
    return f"PUB {reply}  0\r\n\r\n"


async def _verify_acks(nc) -> bool:
    cls = type(nc)
    key = id(cls)
    if key in _ACK_VERIFIED:
        return _ACK_VERIFIED[key]
    ok = False
    try:
        reply = "$JS.ACK.S.C.1.2.3.4.0"
        probe = _ProbeClient()
        ack = _LIBRARY_ACK
        if getattr(ack, "__module__", None) != "nats.aio.msg":
            raise TypeError("Msg.ack is not nats-py's")
        msg = Msg(_client=probe, subject="s", reply=reply, data=b"x")
        await ack(msg)
        # Msg.ack == publish(reply) with no payload, reply or headers, then marks the message
        if probe.calls == [((reply,), {})] and msg._ackd:
            await cls._send_publish(probe, reply, "", b"", 0, None)
            if probe.sent == [_ack_line(reply).encode()] and probe.stats == {"out_msgs": 1, "out_bytes": 0}:
                ok = all(hasattr(nc, a) for a in ("_send_command", "_flush_pending", "_flush_queue", "stats"))
    except Exception as exc:  # noqa: BLE001
        log.info("bulk acks not verified: %s", exc)
        ok = False
    if not ok:
        log.info("nats-py's ack is not as expected; acking message by message")
    _ACK_VERIFIED[key] = ok
    return ok


async def ack_many(nc, msgs) -> list:
    """Ack ``msgs`` (all delivered on ``nc``) with one write; returns those that must be acked one by
    one with ``msg.ack()`` (an unverified library, a patched ``Msg.ack``, not connected, ...)."""
    if not msgs:
        return []
    if not await _verify_acks(nc) or not nc.is_connected or nc.is_draining_pubs or nc.is_closed:
        return list(msgs)
    ack = _LIBRARY_ACK
    lines: list[str] = []
    bulk: list = []
    rest: list = []
    for msg in msgs:
        reply = msg.reply
        if type(msg).ack is not ack or msg._client is not nc or msg._ackd or not reply or _NO_WS.search(reply):
            rest.append(msg)
            continue
        lines.append(f"PUB {reply}  0\r\n\r\n")
        bulk.append(msg)
    if bulk:
        nc.stats["out_msgs"] += len(bulk)
        await nc._send_command("".join(lines).encode())
        for msg in bulk:
            msg._ackd = True
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()
    return rest


# --- the protocol parser ------------------------------------------------------------------------------
#
# nats-py's ``Parser`` matches every MSG/HMSG control line with a backtracking regex (~2 µs) and
# keeps the arguments in a dict. ``FastParser`` reads a control line that is exactly
# ``HMSG <subject> <sid> [<reply>] <hdr-len> <total-len>`` (or ``MSG ...``), single-space separated
# with no other whitespace -- which is what nats-server sends -- with a split, which yields the same
# fields the regex would. Anything else (PING, PONG, INFO, +OK, -ERR, a line shaped otherwise) is
# left to nats-py's ``Parser.parse`` on the same state, which then parses the rest of the buffer.
# Installed on the consumer's connection only, after checking it reproduces nats-py's calls on a
# corpus fed in every chunking.

_AWAITING_CONTROL_LINE = _nats_parser.AWAITING_CONTROL_LINE
_AWAITING_MSG_PAYLOAD = _nats_parser.AWAITING_MSG_PAYLOAD
_CRLF_SIZE = 2
#: whitespace other than the single spaces between fields (the regex's \s would split on it too)
_OTHER_WHITESPACE = re.compile(rb"[\t\n\x0b\x0c\r]")


class FastParser(_nats_parser.Parser):
    async def parse(self, data: bytes = b"") -> None:
        buf = self.buf
        buf.extend(data)
        nc = self.nc
        # Consumed bytes are cut off the buffer once per call (``pos``), not once per message: a
        # read brings ~100 messages, and every cut moves the rest of the buffer.
        pos = 0
        size = len(buf)
        try:
            while pos < size:
                if self.state == _AWAITING_CONTROL_LINE:
                    end = buf.find(b"\r\n", pos, pos + 1024)
                    to_library = True
                    if end >= 0:
                        line = bytes(buf[pos:end])
                        parts = line.split(b" ")
                        n = len(parts)
                        op = parts[0]
                        # exactly single-space separated, nothing else (what nats-server sends)
                        plain = b"" not in parts and _OTHER_WHITESPACE.search(line) is None
                        if op == b"HMSG" and (n == 5 or n == 6) and plain:
                            hsize, total = parts[-2], parts[-1]
                            if hsize.isdigit() and total.isdigit():
                                to_library = False
                                try:
                                    sid = int(parts[2])
                                    needed = int(total)
                                    header_needed = int(hsize)
                                except Exception:
                                    raise _nats_parser.ProtocolError("nats: malformed MSG") from None
                                reply = parts[3] if n == 6 else b""
                        elif op == b"MSG" and (n == 4 or n == 5) and plain:
                            total = parts[-1]
                            if total.isdigit():
                                to_library = False
                                try:
                                    sid = int(parts[2])
                                    needed = int(total)
                                except Exception:
                                    raise _nats_parser.ProtocolError("nats: malformed MSG") from None
                                header_needed = 0
                                reply = parts[3] if n == 5 else b""
                    if to_library:
                        del buf[:pos]
                        pos = size = 0
                        await super().parse()
                        return
                    subject = parts[1]
                    start = end + _CRLF_SIZE
                    if size < start + needed + _CRLF_SIZE:
                        # the payload is not all here yet: the library's state for it
                        msg_arg = self.msg_arg
                        msg_arg["subject"] = subject
                        msg_arg["sid"] = sid
                        msg_arg["reply"] = reply
                        self.needed = needed
                        self.header_needed = header_needed
                        pos = start
                        self.state = _AWAITING_MSG_PAYLOAD
                        break
                    if header_needed > 0:
                        hdr = bytes(buf[start : start + header_needed])
                        payload = bytes(buf[start + header_needed : start + needed])
                    else:
                        hdr = None
                        payload = bytes(buf[start : start + needed])
                    pos = start + needed + _CRLF_SIZE
                    await nc._process_msg(sid, subject, reply, payload, hdr)
                    if self.buf is not buf:  # reset (reconnect) meanwhile
                        return
                else:
                    needed = self.needed
                    if size - pos < needed + _CRLF_SIZE:
                        break
                    msg_arg = self.msg_arg
                    header_needed = self.header_needed
                    if header_needed > 0:
                        hdr = bytes(buf[pos : pos + header_needed])
                        payload = bytes(buf[pos + header_needed : pos + needed])
                        self.header_needed = 0
                    else:
                        hdr = None
                        payload = bytes(buf[pos : pos + needed])
                    pos += needed + _CRLF_SIZE
                    self.state = _AWAITING_CONTROL_LINE
                    await nc._process_msg(msg_arg["sid"], msg_arg["subject"], msg_arg["reply"], payload, hdr)
                    if self.buf is not buf:
                        return
        finally:
            if pos and self.buf is buf:
                del buf[:pos]


class _RecordingClient:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def _process_msg(self, *args) -> None:
        self.calls.append(("msg", *args))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info, *args) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err) -> None:
        self.calls.append(("err", err))


def _hmsg(args: str, hdr: bytes, payload: bytes, sep: str = " ") -> bytes:
    line = sep.join([*args.split(" "), str(len(hdr)), str(len(hdr) + len(payload))])
    return line.encode() + b"\r\n" + hdr + payload + b"\r\n"


_PROTOCOL_CORPUS = b"".join(
    [
        b'INFO {"server_id":"x","max_payload":1048576}\r\n',
        b"MSG a.b 1 5\r\nhello\r\n",
        b"MSG a.b 12 _INBOX.r 0\r\n\r\n",
        _hmsg("HMSG $JS.x 3 $JS.ACK.S.C.1.2.3.4.0", b"NATS/1.0\r\nNats-Msg-Id: 0b9c\r\nA: b\r\n\r\n", b'{"a": 1}'),
        b"PING\r\n",
        _hmsg("HMSG _INBOX.x 3", b"NATS/1.0 408 Request Timeout\r\n\r\n", b""),
        b"+OK\r\n",
        b"MSG  a.b   1 3\r\nabc\r\n",
        b"MSG a.b\x0b1 r 3\r\nabc\r\n",
        _hmsg("HMSG a 7", b"NATS/1.0\r\nK: v\r\n\r\n", b"x y", sep="\t"),
        b"PONG\r\n",
        _hmsg("HMSG _INBOX.y 4 $JS.ACK.S.C.1.2.3.4.0", b"NATS/1.0 100 Idle Heartbeat\r\n\r\n", b""),
        b"MSG x 5 r 12\r\nab\r\ncd\r\nMSG \r\n",
        _hmsg("HMSG y 5", b"NATS/1.0\r\n\r\n", b"\r\nHMSG\r\n"),
        b"MSG x 9 0\r\n\r\n",
        b"-ERR 'Unknown Protocol Operation'\r\n",
        _hmsg("HMSG z 6 r", b"NATS/1.0 409 Consumer Deleted\r\n\r\n", b""),
    ]
)


async def _parser_calls(cls, chunk: int, corpus: bytes = _PROTOCOL_CORPUS) -> list[tuple]:
    client = _RecordingClient()
    parser = cls(client)
    for i in range(0, len(corpus), chunk):
        try:
            await parser.parse(corpus[i : i + chunk])
        except Exception as exc:  # noqa: BLE001 - compared too
            client.calls.append(("raised", type(exc)))
            break
    client.calls.append(("left", bytes(parser.buf), parser.state))
    return client.calls


async def install_fast_parser(nc) -> bool:
    """Parse this connection's protocol with :class:`FastParser` if it provably matches nats-py's."""
    try:
        library = type(nc._ps)
        if library is not _nats_parser.Parser:
            return False
        for chunk in (1, 2, 3, 7, 16, 61, 200, len(_PROTOCOL_CORPUS)):
            expected = await _parser_calls(library, chunk)
            if await _parser_calls(FastParser, chunk) != expected or len(expected) < 10:
                log.info("nats protocol fast parser differs from nats-py's (chunk %d); not installed", chunk)
                return False
        current = nc._ps
        if current.buf or current.state != _AWAITING_CONTROL_LINE:
            return False  # only between operations
        nc._ps = FastParser(nc)
        return True
    except Exception as exc:  # noqa: BLE001 - a changed library: keep nats-py's parser
        log.info("nats protocol fast parser not installed: %s", exc)
        return False
