"""The mock provider as a child process (``MockProviderProcess`` / ``python -m llmgw_devstack.mock_provider``)."""

from __future__ import annotations

import anthropic
import openai
import pytest

from llmgw_devstack.mock_provider import DEFAULT_ANSWER, MockProviderProcess
from llmgw_devstack.mock_provider.__main__ import parse_args
from llmgw_devstack.ports import port_is_open

OPENAI_KEY = "sk-process-openai"
ANTHROPIC_KEY = "sk-ant-process"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    log = tmp_path_factory.mktemp("mock") / "mock.log"
    server = MockProviderProcess(openai_key=OPENAI_KEY, anthropic_key=ANTHROPIC_KEY, stream_chunks=3, log_file=log)
    server.start()
    yield server
    server.stop()
    assert not port_is_open(server.host, server.port)


def clients(proc):
    return (
        openai.OpenAI(base_url=proc.openai_base_url, api_key=OPENAI_KEY, max_retries=0, timeout=10),
        anthropic.Anthropic(base_url=proc.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, timeout=10),
    )


def test_serves_both_dialects_and_records_over_http(proc):
    proc.reset()
    assert proc.openai_base_url == f"http://127.0.0.1:{proc.port}/v1"
    assert proc.anthropic_base_url == f"http://127.0.0.1:{proc.port}"
    oai, ant = clients(proc)
    assert oai.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices[0].message.content == DEFAULT_ANSWER
    chunks = list(oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert len([c for c in chunks if c.choices[0].delta.content]) == 3  # --stream-chunks 3
    message = ant.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=MESSAGES)
    assert message.content[0].text == DEFAULT_ANSWER
    calls = proc.wait_for_calls(3)
    assert [(c["provider"], c["api_key"]) for c in calls] == [
        ("openai", OPENAI_KEY),
        ("openai", OPENAI_KEY),
        ("anthropic", ANTHROPIC_KEY),
    ]
    assert calls[2]["usage"]["prompt_tokens"] == message.usage.input_tokens
    assert proc.calls(since=calls[1]["seq"]) == calls[2:]


def test_auth_and_faults_over_http(proc):
    proc.reset()
    oai, _ = clients(proc)
    wrong = openai.OpenAI(base_url=proc.openai_base_url, api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    proc.set_fault("status", status=500, count=1)
    assert len(proc.faults()) == 1
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    proc.set_fault("reset", count=1)
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert proc.faults() == []
    assert [c["status"] for c in proc.calls()] == [401, 500, 0]
    proc.configure(latency_ms=0)


def test_kill_and_restart_on_same_port(proc):
    oai, _ = clients(proc)
    port, pid = proc.port, proc.pid
    proc.kill()
    assert not proc.running
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    proc.start()
    assert proc.port == port and proc.pid != pid
    assert oai.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices
    assert len(proc.calls()) == 1  # a new process: earlier calls are gone


def test_cli_flags():
    args = parse_args(
        [
            "--port", "9100",
            "--openai-key", "k1",
            "--anthropic-key", "k2",
            "--latency-ms", "5",
            "--stream-chunks", "4",
            "--chunk-delay-ms", "2",
            "--record-limit", "0",
        ]
    )  # fmt: skip
    assert (args.host, args.port, args.openai_key, args.anthropic_key) == ("127.0.0.1", 9100, "k1", "k2")
    assert (args.latency_ms, args.stream_chunks, args.chunk_delay_ms, args.record_limit) == (5.0, 4, 2.0, 0)
