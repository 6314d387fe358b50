"""Thin validation: nothing that fails it reaches the upstream."""

from __future__ import annotations

import socket

import httpx
import pytest


def post(proxy, path, content: bytes, secret, **headers):
    return httpx.post(
        proxy.url + path, content=content,
        headers={"authorization": f"Bearer {secret}", "content-type": "application/json", **headers},
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"model": "gpt-4o-mini", "messages": [', "invalid_json"),
        (b"", "invalid_json"),
        (b'["model"]', "invalid_json"),
        (b'{"messages": []}', "missing_model"),
        (b'{"model": 4, "messages": []}', "invalid_model"),
        (b'{"model": "gpt-4o-mini", "messages": [], "stream": "yes"}', "invalid_stream"),
        (b'{"model": "gpt-4o-mini", "messages": {"role": "user"}}', "invalid_messages"),
        (b'{"model": "gpt-4o-mini"}', "missing_messages"),
        (b'{"model": "gpt-4o-mini\xff\xfe", "messages": []}', "invalid_json"),
        (b'{"model": "gpt-4o-mini", "messages": [], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid_json"),
        (b'{"model": "gpt-4o-mini", "messages": [], "temperature": NaN}', "invalid_json"),
    ],
)
def test_malformed_openai_400_and_no_upstream_call(proxy, mock, key, body, code):
    secret, _ = key
    since = mock.last_seq()
    r = post(proxy, "/v1/chat/completions", body, secret)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["code"] == code
    assert mock.calls(since) == []


def test_malformed_anthropic_400_in_anthropic_shape(proxy, mock, key):
    secret, _ = key
    since = mock.last_seq()
    r = post(proxy, "/v1/messages", b'{"model": "claude-haiku-4-5-20251001", "messages": "hi"}', secret)
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert mock.calls(since) == []


def test_unknown_fields_pass_through_untouched(proxy, mock, key):
    secret, _ = key
    since = mock.last_seq()
    raw = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"future_param":{"a":[1,2.50,null]}, "n" : 1}'
    assert post(proxy, "/v1/chat/completions", raw, secret).status_code == 200
    (call,) = mock.calls(since)
    assert call["body"]["future_param"] == {"a": [1, 2.5, None]} and call["body"]["n"] == 1


def test_oversize_by_content_length_413(proxy, mock, key):
    secret, _ = key
    limit = proxy.settings.max_body_bytes
    since = mock.last_seq()
    big = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' + b"a" * limit + b'"}]}'
    r = post(proxy, "/v1/chat/completions", big, secret)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = post(proxy, "/v1/messages", big, secret)
    assert r.status_code == 413 and r.json()["error"]["type"] == "request_too_large"
    assert mock.calls(since) == []


def test_oversize_streamed_body_without_content_length_413(proxy, mock, key):
    """A chunked body is counted as it arrives: the proxy answers 413 without buffering it all."""
    secret, _ = key
    limit = proxy.settings.max_body_bytes
    since = mock.last_seq()
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {secret}\r\n".encode()
        + b"transfer-encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent <= limit + len(chunk):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sent += len(chunk)
    except OSError:
        pass  # the proxy may close the connection once it answered
    sock.settimeout(5)
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert mock.calls(since) == []
