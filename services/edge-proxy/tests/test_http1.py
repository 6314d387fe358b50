"""The upstream HTTP/1.1 client against raw sockets that misbehave on purpose."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from llmgw_proxy.domain.upstream.http1 import (
    ConnectError,
    HostPool,
    ReadTimeout,
    RemoteDisconnected,
    build_request,
    parse_base_url,
)


async def serve(handler):
    """A raw TCP server: ``handler(reader, writer)`` per connection; returns (server, base url)."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def read_request(reader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length) if length else b""
    return head + body


def pool_for(url: str, **kw) -> tuple[HostPool, bytes]:
    origin, _ = parse_base_url(url)
    options = dict(limit=10, connect_timeout=1.0, read_timeout=1.0, keepalive=15.0)
    options.update(kw)
    return HostPool(origin, **options), origin.host_header


async def test_keep_alive_chunked_and_content_length():
    connections = 0

    async def handler(reader, writer):
        nonlocal connections
        connections += 1
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            if b"/chunked" in request:
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n"
                             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\nx-ratelimit-remaining-requests: 9\r\n\r\nok")
            await writer.drain()

    server, url = await serve(handler)
    pool, host = pool_for(url)
    try:
        r = await pool.request(build_request("POST", "/a", host, [], b"{}"))
        assert r.status == 201 and await r.read() == b"ok" and r.header(b"x-ratelimit-remaining-requests") == b"9"
        r.release()
        r = await pool.request(build_request("GET", "/chunked", host, [], None))
        chunks = [c async for c in r.iter_chunks()]
        assert b"".join(chunks) == b"hello world" and r.content_type == "text/event-stream"
        r.release()
        assert connections == 1  # both on one kept-alive connection
    finally:
        pool.close()
        server.close()


async def test_read_until_close_and_gzip():
    async def handler(reader, writer):
        request = await read_request(reader)
        if b"/gz" in request:
            body = gzip.compress(b'{"usage":{}}')
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
            await writer.drain()
            writer.close()

    server, url = await serve(handler)
    pool, host = pool_for(url)
    try:
        r = await pool.request(build_request("GET", "/close", host, [], None))
        assert await r.read() == b"until the end"
        r.release()
        r = await pool.request(build_request("GET", "/gz", host, [], None))
        assert await r.read() == b'{"usage":{}}' and r.header(b"content-encoding") is None
        r.release()
    finally:
        pool.close()
        server.close()


async def test_stale_keep_alive_connection_is_replaced_transparently():
    served = 0

    async def handler(reader, writer):
        nonlocal served
        await read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive advertised (HTTP/1.1 default) but closed right after

    server, url = await serve(handler)
    pool, host = pool_for(url)
    try:
        for _ in range(3):
            r = await pool.request(build_request("POST", "/", host, [], b"x"))
            assert await r.read() == b"ok"
            r.release()
            await asyncio.sleep(0.05)
        assert served == 3
    finally:
        pool.close()
        server.close()


async def test_read_timeout_and_mid_body_disconnect():
    async def handler(reader, writer):
        request = await read_request(reader)
        if b"/hang" in request:
            await asyncio.sleep(5)
        elif b"/cut" in request:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            await writer.drain()
            writer.transport.abort()

    server, url = await serve(handler)
    pool, host = pool_for(url, read_timeout=0.3)
    try:
        with pytest.raises(ReadTimeout):
            await pool.request(build_request("GET", "/hang", host, [], None))
        r = await pool.request(build_request("GET", "/cut", host, [], None))
        with pytest.raises(RemoteDisconnected):
            await r.read()
        r.close()
        assert pool.open == 0
    finally:
        pool.close()
        server.close()


async def test_connect_refused():
    server, url = await serve(lambda r, w: None)
    server.close()
    await server.wait_closed()
    pool, host = pool_for(url)
    with pytest.raises(ConnectError):
        await pool.request(build_request("GET", "/", host, [], None))
    assert pool.open == 0


async def test_head_and_connection_limit():
    async def handler(reader, writer):
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n" + (b"" if request.startswith(b"HEAD") else b"hello"))
            await writer.drain()

    server, url = await serve(handler)
    pool, host = pool_for(url, limit=2)
    try:
        r = await pool.request(build_request("HEAD", "/", host, [], None), head=True)
        assert r.status == 200 and await r.read() == b""
        r.release()

        async def one():
            response = await pool.request(build_request("GET", "/", host, [], None))
            body = await response.read()
            response.release()
            return body

        assert await asyncio.gather(*[one() for _ in range(6)]) == [b"hello"] * 6
        assert pool.open <= 2
    finally:
        pool.close()
        server.close()
