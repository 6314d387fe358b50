"""Cut streams: a client that leaves after the generation finished is still metered with the
provider-reported usage (the proxy reads on, bounded, for the usage report); a client that leaves
earlier cancels the upstream at once; a mid-stream upstream timeout is told as a timeout. Plus the
answer headers per dialect (``request-id`` for Anthropic SDKs, no other API's headers on a
translation path) and Anthropic's required ``max_tokens`` on the translation path."""

from __future__ import annotations

import json
import socket

import anthropic
import httpx
import pytest
from conftest import proxy_settings
from harness import ProxyServer

MSG = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def short(tmp_path_factory, nats_url, keysvc):
    """A proxy with a short upstream read timeout and a short usage drain."""
    server = ProxyServer(
        proxy_settings(tmp_path_factory, nats_url, upstream_read_timeout=1.0, upstream_max_attempts=1,
                       stream_usage_drain_seconds=0.2)
    ).start()
    yield server
    server.stop()


@pytest.fixture
def slow_chunks(mock):
    def configure(ms: int) -> None:
        mock.configure(chunk_delay_ms=ms)

    yield configure
    mock.configure(chunk_delay_ms=0)


def stream_until(proxy, path: str, body: dict, secret: str, marker: bytes, extra: bytes = b"") -> bytes:
    """POST a streaming request on a raw socket, read until ``marker`` arrived, then hang up."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", proxy.port))
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n".encode()
            + f"authorization: Bearer {secret}\r\ncontent-length: {len(data)}\r\n".encode() + extra + b"\r\n" + data
        )
        sock.settimeout(10)
        received = b""
        while marker not in received:
            chunk = sock.recv(65536)
            assert chunk, f"stream ended before {marker!r}: {received[-500:]!r}"
            received += chunk
        return received
    finally:
        sock.close()


def assert_metered_as_reported(event, call) -> None:
    """The event's tokens are exactly what the provider reported for that call (mock's record)."""
    usage = call["usage"] or {}
    assert (event.prompt_tokens, event.completion_tokens, event.total_tokens) == (
        usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), usage.get("total_tokens", 0)
    )


# --- a client gone after the generation finished --------------------------------------------------


def test_openai_client_gone_after_finish_reason_is_metered(proxy, mock, keysvc, key, slow_chunks):
    secret, record = key
    slow_chunks(150)  # the usage chunk comes 150 ms after the finish_reason chunk
    since = mock.last_seq()
    got = stream_until(proxy, "/v1/chat/completions",
                       {"model": "gpt-4o-mini", "messages": MSG, "stream": True, "max_tokens": 3}, secret,
                       b'"finish_reason":"length"')
    assert b'"usage"' not in got  # the client did not ask for usage: it never sees any
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.status, event.error_type, event.status_code) == ("incomplete", "client_disconnect", 499)
    (call,) = mock.wait_for_calls(1, since=since)
    assert not call["cut"] and call["usage"]  # read to its end: the provider reported (and bills) it
    assert event.completion_tokens == 3 and event.prompt_tokens > 0
    assert_metered_as_reported(event, call)


def test_responses_client_gone_after_output_done_is_metered(proxy, mock, keysvc, key, slow_chunks):
    secret, record = key
    slow_chunks(100)
    since = mock.last_seq()
    stream_until(proxy, "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "stream": True}, secret,
                 b"response.output_text.done")
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.status, event.error_type) == ("incomplete", "client_disconnect")
    (call,) = mock.wait_for_calls(1, since=since)
    assert not call["cut"] and event.completion_tokens > 0
    assert_metered_as_reported(event, call)


def test_translated_anthropic_caller_gone_after_last_block_is_metered(proxy, mock, keysvc, key, slow_chunks):
    """/v1/messages served by an OpenAI model: the Anthropic usage (message_delta) needs the OpenAI
    usage chunk that follows the finish_reason."""
    secret, record = key
    slow_chunks(150)
    since = mock.last_seq()
    got = stream_until(proxy, "/v1/messages",
                       {"model": "gpt-4o-mini", "max_tokens": 3, "messages": MSG, "stream": True}, secret,
                       b"event: content_block_stop")
    assert b"message_delta" not in got
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.status, event.error_type) == ("incomplete", "client_disconnect")
    (call,) = mock.wait_for_calls(1, since=since)
    assert call["path"] == "/v1/chat/completions" and not call["cut"]
    assert event.completion_tokens == 3
    assert_metered_as_reported(event, call)


def test_usage_drain_is_bounded(short, mock, keysvc, key, slow_chunks):
    """An upstream slower than LLMGW_STREAM_USAGE_DRAIN_SECONDS after the finish_reason is cancelled;
    nothing is invented: the provider reported nothing for that call and neither does the event."""
    secret, record = key
    slow_chunks(600)  # finish_reason at ~1.2 s, usage chunk at ~1.8 s; drain 0.2 s
    since = mock.last_seq()
    stream_until(short, "/v1/chat/completions",
                 {"model": "gpt-4o-mini", "messages": MSG, "stream": True, "max_tokens": 1}, secret,
                 b'"finish_reason":"length"')
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.status, event.error_type, event.status_code) == ("incomplete", "client_disconnect", 499)
    (call,) = mock.wait_for_calls(1, since=since)
    assert call["cut"] and call["usage"] is None  # aborted before the usage chunk
    assert event.total_tokens == 0
    assert_metered_as_reported(event, call)


def test_client_gone_before_finish_reason_still_cancels_at_once(proxy, mock, keysvc, key, slow_chunks):
    secret, record = key
    slow_chunks(300)
    since = mock.last_seq()
    stream_until(proxy, "/v1/chat/completions", {"model": "gpt-4o-mini", "messages": MSG, "stream": True}, secret,
                 b'"role":"assistant"')
    (event,) = keysvc.wait_usage(record.id, 1)
    assert (event.status, event.error_type) == ("incomplete", "client_disconnect")
    (call,) = mock.wait_for_calls(1, since=since)
    assert call["cut"]
    assert event.latency_ms < 3000  # not drained: 13 words at 300 ms would take ~4.5 s
    assert_metered_as_reported(event, call)


# --- a mid-stream upstream timeout is told as a timeout -------------------------------------------


def test_mid_stream_timeout_is_told_as_timeout(short, mock, keysvc, key, slow_chunks):
    secret, record = key
    slow_chunks(1500)  # first event at once, the next after the 1 s read timeout
    r = httpx.post(short.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                   json={"model": "gpt-4o-mini", "messages": MSG, "stream": True}, timeout=30)
    error = json.loads(r.text.strip().split("\n\n")[-1].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_timeout" and "in time" in error["message"]
    r = httpx.post(short.url + "/v1/messages", headers={"x-api-key": secret},
                   json={"model": "claude-sonnet-4-5", "max_tokens": 20, "messages": MSG, "stream": True},
                   timeout=30)
    assert r.text.rstrip().split("\n\n")[-1].startswith("event: error")
    assert '"type":"timeout_error"' in r.text
    # translated (OpenAI caller, Anthropic model): the caller's dialect, still a timeout
    r = httpx.post(short.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                   json={"model": "claude-sonnet-4-5", "messages": MSG, "stream": True}, timeout=30)
    assert '"code":"upstream_timeout"' in r.text.strip().split("\n\n")[-1]
    events = keysvc.wait_usage(record.id, 3)
    assert {(e.status, e.error_type) for e in events} == {("incomplete", "upstream_timeout")}


# --- headers ---------------------------------------------------------------------------------------


def test_anthropic_answers_carry_request_id(proxy, mock, keysvc, key):
    secret, _ = key
    client = anthropic.Anthropic(base_url=proxy.url, api_key=secret, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=20, messages=MSG, extra_headers={"x-request-id": "req-ant-1"}
    )
    assert raw.headers["request-id"] == raw.headers["x-request-id"] == "req-ant-1"
    assert raw.parse()._request_id == "req-ant-1"  # what the anthropic SDK reads
    assert len(raw.headers.get_list("x-upstream-request-id")) == 1  # the mock sends x-request-id and request-id
    # the proxy's own Anthropic-shaped errors too
    with pytest.raises(anthropic.AuthenticationError) as caught:
        anthropic.Anthropic(base_url=proxy.url, api_key="sk-llmgw-nope", max_retries=0).messages.create(
            model="claude-sonnet-4-5", max_tokens=20, messages=MSG
        )
    assert caught.value.request_id and caught.value.request_id == caught.value.response.headers["x-request-id"]
    # OpenAI-dialect answers keep only x-request-id
    r = httpx.post(proxy.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                   json={"model": "gpt-4o-mini", "messages": MSG})
    assert r.status_code == 200 and "request-id" not in r.headers and r.headers["x-request-id"]


def test_translated_answers_carry_no_headers_of_the_other_api(proxy, mock, keysvc, key):
    secret, _ = key
    r = httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": secret, "anthropic-version": "2023-06-01"},
                   json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": MSG})
    assert r.status_code == 200 and r.json()["type"] == "message"
    assert not [h for h in r.headers if h.startswith("openai-")], dict(r.headers)
    assert r.headers["request-id"] == r.headers["x-request-id"]
    r = httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": secret},
                   json={"model": "gpt-4o-mini", "max_tokens": 20, "messages": MSG, "stream": True})
    assert "message_stop" in r.text and not [h for h in r.headers if h.startswith("openai-")]
    # the reverse: an OpenAI caller served by Anthropic gets no anthropic-* headers (here on a 429)
    mock.set_fault("status", status=429, model="claude-ratelimited", count=3, retry_after=0)
    r = httpx.post(proxy.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                   json={"model": "claude-ratelimited", "messages": MSG}, timeout=30)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert "retry-after" in r.headers and not [h for h in r.headers if h.startswith("anthropic-")], dict(r.headers)
    # same-provider answers keep them
    r = httpx.post(proxy.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                   json={"model": "gpt-4o-mini", "messages": MSG})
    assert r.headers["openai-version"]


# --- Anthropic's required max_tokens on the translation path ---------------------------------------


def test_messages_without_max_tokens_for_an_openai_model_is_400(proxy, mock, keysvc, key):
    secret, _ = key
    since = mock.last_seq()
    for stream in (False, True):
        r = httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": secret},
                       json={"model": "gpt-4o-mini", "messages": MSG, "stream": stream})
        assert r.status_code == 400
        assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}
        assert r.headers["request-id"]
    r = httpx.post(proxy.url + "/v1/messages", headers={"x-api-key": secret},
                   json={"model": "gpt-4o-mini", "messages": MSG, "max_tokens": None})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert mock.calls(since) == []  # never reached the upstream
