"""Fault injection, the recorded calls and the HTTP control API of the mock provider."""

from __future__ import annotations

import time

import anthropic
import httpx
import httpx2
import openai
import pytest

from llmgw_devstack.mock_provider import DEFAULT_ANSWER
from llmgw_devstack.mock_provider.config import MOCK_OPENAI_KEY

MESSAGES = [{"role": "user", "content": "hi"}]
CLAUDE = "claude-sonnet-4-6"


def chat(client: openai.OpenAI, **kwargs):
    return client.chat.completions.create(model=kwargs.pop("model", "gpt-4o"), messages=MESSAGES, **kwargs)


def test_status_500_then_recovers(oai, mock_provider):
    mock_provider.set_fault("status", status=500, count=1)
    with pytest.raises(openai.InternalServerError) as exc:
        chat(oai)
    assert exc.value.status_code == 500
    assert exc.value.type == "server_error"
    assert chat(oai).choices[0].message.content == DEFAULT_ANSWER
    failed, ok = mock_provider.calls()
    assert (failed["status"], failed["fault"], failed["usage"]) == (500, "status", None)
    assert failed["api_key"] == MOCK_OPENAI_KEY
    assert ok["status"] == 200 and ok["usage"] is not None
    assert mock_provider.faults() == []


def test_rate_limit_429(oai, ant, mock_provider):
    mock_provider.set_fault("status", status=429, retry_after=2, count=2)
    with pytest.raises(openai.RateLimitError) as exc:
        chat(oai)
    headers = exc.value.response.headers
    assert headers["retry-after"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" in headers
    assert exc.value.code == "rate_limit_exceeded"
    with pytest.raises(anthropic.RateLimitError) as aexc:
        ant.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
    assert aexc.value.body["error"]["type"] == "rate_limit_error"
    assert aexc.value.response.headers["retry-after"] == "2"
    assert "anthropic-ratelimit-requests-remaining" in aexc.value.response.headers


def test_anthropic_overloaded_and_api_error(ant, mock_provider):
    mock_provider.set_fault("status", status=529, count=1)
    mock_provider.set_fault("status", status=500, count=1)
    with pytest.raises(anthropic.OverloadedError) as exc:
        ant.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
    assert exc.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": exc.value.response.headers["request-id"],
    }
    with pytest.raises(anthropic.InternalServerError) as exc:
        ant.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
    assert exc.value.body["error"]["type"] == "api_error"
    assert ant.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES).content


def test_fault_filters(oai, mock_provider):
    mock_provider.set_fault("status", status=503, path="/v1/embeddings")
    mock_provider.set_fault("status", status=502, model="gpt-4o-mini")
    mock_provider.set_fault("status", status=500, stream=True)
    assert chat(oai).choices  # neither path nor model nor stream match
    with pytest.raises(openai.InternalServerError) as exc:
        chat(oai, model="gpt-4o-mini")
    assert exc.value.status_code == 502
    with pytest.raises(openai.InternalServerError) as exc:
        oai.embeddings.create(model="text-embedding-3-small", input="x")
    assert exc.value.status_code == 503
    with pytest.raises(openai.InternalServerError) as exc:
        chat(oai, stream=True)
    assert exc.value.status_code == 500
    assert [f["hits"] for f in mock_provider.faults()] == [1, 1, 1]
    mock_provider.clear_faults()
    assert chat(oai, model="gpt-4o-mini").choices


def test_reset_is_a_connection_error(oai, ant, mock_provider):
    mock_provider.set_fault("reset", count=2)
    with pytest.raises(openai.APIConnectionError):
        chat(oai)
    with pytest.raises(anthropic.APIConnectionError):
        ant.messages.create(model=CLAUDE, max_tokens=10, messages=MESSAGES)
    assert chat(oai).choices
    calls = mock_provider.calls()
    assert [(c["status"], c["fault"]) for c in calls] == [(0, "reset"), (0, "reset"), (200, None)]
    assert calls[0]["usage"] is None


def test_reset_mid_stream_openai(oai, mock_provider):
    mock_provider.set_fault("reset_mid_stream", count=1, after_chunks=3)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in chat(oai, stream=True, stream_options={"include_usage": True}):
            received.append(chunk)
    assert len(received) == 3  # the role chunk and two content pieces arrived before the cut
    assert all(c.usage is None for c in received)
    (call,) = mock_provider.calls()
    assert call["cut"] is True and call["usage"] is None and call["fault"] == "reset_mid_stream"
    assert call["status"] == 200


def test_reset_mid_stream_anthropic(ant, mock_provider):
    mock_provider.set_fault("reset_mid_stream", count=1)
    seen = []
    # the anthropic SDK lets the transport error of a broken stream through unwrapped
    with pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)):
        with ant.messages.stream(model=CLAUDE, max_tokens=100, messages=MESSAGES) as stream:
            for event in stream:
                seen.append(event.type)
    assert seen[0] == "message_start"
    assert "message_stop" not in seen
    assert mock_provider.calls()[-1]["cut"] is True


def test_reset_mid_body_non_streaming(oai, mock_provider):
    mock_provider.set_fault("reset_mid_stream", count=1)
    with pytest.raises(openai.APIConnectionError):
        chat(oai)
    assert mock_provider.calls()[-1]["cut"] is True


def test_hang_until_client_gives_up(mock_provider):
    client = openai.OpenAI(base_url=mock_provider.openai_base_url, api_key=MOCK_OPENAI_KEY, max_retries=0, timeout=0.5)
    mock_provider.set_fault("hang", count=1)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        chat(client)
    assert 0.4 < time.monotonic() - started < 5
    (call,) = mock_provider.calls()
    assert (call["status"], call["fault"]) == (0, "hang")
    assert chat(client).choices  # the server keeps serving


def test_latency_fault_and_config(oai, mock_provider):
    mock_provider.set_fault("latency", latency_ms=300, count=1)
    started = time.monotonic()
    chat(oai)
    assert time.monotonic() - started >= 0.3
    mock_provider.configure(latency_ms=200)
    try:
        started = time.monotonic()
        chat(oai)
        assert time.monotonic() - started >= 0.2
    finally:
        mock_provider.configure(latency_ms=0)


def test_chunk_delay_and_stream_chunks(oai, mock_provider):
    mock_provider.configure(stream_chunks=2, chunk_delay_ms=50)
    try:
        started = time.monotonic()
        chunks = list(chat(oai, stream=True))
        elapsed = time.monotonic() - started
    finally:
        mock_provider.configure(stream_chunks=None, chunk_delay_ms=0)
    content = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(content) == 2 and "".join(content) == DEFAULT_ANSWER
    assert elapsed >= 0.2  # 5 events, 4 pauses of 50 ms


def test_http_control_api(oai, mock_provider):
    base = mock_provider.url
    assert httpx.get(f"{base}/_mock/health").json() == {"status": "ok"}
    rules = [{"mode": "status", "status": 500, "count": 1}, {"mode": "status", "status": 503, "count": 1}]
    response = httpx.post(f"{base}/_mock/faults", json=rules)
    assert response.status_code == 200 and len(response.json()["data"]) == 2
    for status in (500, 503):
        with pytest.raises(openai.InternalServerError) as exc:
            chat(oai)
        assert exc.value.status_code == status
    chat(oai)
    assert httpx.get(f"{base}/_mock/faults").json() == {"data": []}

    calls = httpx.get(f"{base}/_mock/calls").json()["data"]
    assert [c["status"] for c in calls] == [500, 503, 200]
    since = httpx.get(f"{base}/_mock/calls", params={"since": calls[1]["seq"]}).json()["data"]
    assert [c["seq"] for c in since] == [calls[2]["seq"]]
    assert since[0]["usage"]["prompt_tokens"] == 9

    assert httpx.post(f"{base}/_mock/faults", json={"mode": "explode"}).status_code == 400
    assert httpx.post(f"{base}/_mock/faults", json={"mode": "status", "bogus": 1}).status_code == 400
    assert httpx.get(f"{base}/_mock/nothing").status_code == 404
    httpx.post(f"{base}/_mock/faults", json={"mode": "reset"})
    assert httpx.delete(f"{base}/_mock/faults").json() == {"data": []}
    assert httpx.delete(f"{base}/_mock/calls").json() == {"deleted": 3}
    assert mock_provider.calls() == []


def test_wait_for_calls(oai, mock_provider):
    seq = mock_provider.last_seq()
    chat(oai)
    (call,) = mock_provider.wait_for_calls(1, since=seq, timeout=2)
    assert call["status"] == 200
    with pytest.raises(TimeoutError):
        mock_provider.wait_for_calls(2, since=seq, timeout=0.1)


def test_stop_ends_hanging_requests_and_record_limit():
    import threading

    from llmgw_devstack.mock_provider import MockProviderServer

    server = MockProviderServer(record_limit=2).start()
    client = openai.OpenAI(base_url=server.openai_base_url, api_key="any", max_retries=0, timeout=30)
    for _ in range(3):
        chat(client)
    assert [c["seq"] for c in server.calls()] == [2, 3]  # only the newest 2 are kept
    server.set_fault("hang")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            chat(client)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    server.wait_for_calls(predicate=lambda c: c["fault"] == "hang", timeout=5)
    started = time.monotonic()
    server.stop()
    thread.join(10)
    assert time.monotonic() - started < 5
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)
