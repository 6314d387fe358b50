"""Pure units: SSE usage extraction at any chunking, usage normalisation, routing order, ids."""

from __future__ import annotations

import collections
import random
import uuid

import msgspec
import pytest

from llmgw_common import contract
from llmgw_proxy.domain import routing
from llmgw_proxy.domain.auth.key_cache import KeyEntry
from llmgw_proxy.domain.ids import new_id
from llmgw_proxy.domain.streaming import SSEUsage
from llmgw_proxy.domain.usage import tokens

CHUNK = '{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}]%s}'
USAGE = '"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":1}}'


def openai_stream(with_usage_null: bool) -> bytes:
    tail = ',"usage":null' if with_usage_null else ""
    events = [CHUNK % ("Hel", tail), CHUNK % ("lo", tail)]
    events.append('{"id":"c","object":"chat.completion.chunk","choices":[],' + USAGE + "}")
    return ("".join(f"data: {e}\n\n" for e in events) + "data: [DONE]\n\n").encode()


def feed_in_pieces(sse: SSEUsage, data: bytes, rng: random.Random) -> bytes:
    out = b""
    i = 0
    while i < len(data):
        step = rng.randint(1, 40)
        out += sse.feed(data[i : i + step])
        i += step
    return out + sse.finish()


@pytest.mark.parametrize("seed", range(20))
def test_openai_usage_chunk_stripped_at_any_chunking(seed):
    rng = random.Random(seed)
    sse = SSEUsage("openai", strip=True)
    out = feed_in_pieces(sse, openai_stream(True), rng)
    assert out == openai_stream(False).replace(("data: {" + '"id":"c","object":"chat.completion.chunk","choices":[],' + USAGE + "}\n\n").encode(), b"")
    t = sse.tokens
    assert (t.prompt, t.completion, t.total, t.cached, t.reasoning) == (9, 2, 11, 4, 1)


@pytest.mark.parametrize("seed", range(10))
def test_openai_passthrough_is_byte_identical(seed):
    rng = random.Random(seed)
    data = openai_stream(True)
    sse = SSEUsage("openai", strip=False)
    assert feed_in_pieces(sse, data, rng) == data
    assert sse.tokens.total == 11


def test_crlf_and_multiline_data():
    sse = SSEUsage("openai", strip=False)
    data = b'data: {"choices":[],\r\ndata: ' + USAGE.encode() + b"}\r\n\r\n"
    assert sse.feed(data) == data
    assert sse.tokens.total == 11


def test_anthropic_stream_usage_takes_last_cumulative_values():
    events = [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 3, "output_tokens": 1}}}),
        ("content_block_delta", {"type": "content_block_delta", "delta": {"text": "usage"}}),
        ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 7}}),
    ]
    data = b"".join(f"event: {n}\ndata: ".encode() + msgspec.json.encode(p) + b"\n\n" for n, p in events)
    sse = SSEUsage("anthropic")
    assert feed_in_pieces(sse, data, random.Random(1)) == data
    t = sse.tokens
    assert (t.prompt, t.cached, t.cache_write, t.completion, t.total) == (18, 5, 3, 7, 25)


def test_cut_stream_keeps_what_was_seen():
    sse = SSEUsage("anthropic")
    sse.feed(b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1}}}\n\nevent: content_block_delta\ndata: {"type":"conte')
    assert sse.tokens.prompt == 12 and sse.tokens.completion == 1


def test_responses_and_body_usage():
    sse = SSEUsage("responses")
    sse.feed(b'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":5,"input_tokens_details":{"cached_tokens":2},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":4},"total_tokens":14}}}\n\n')
    t = sse.tokens
    assert (t.prompt, t.cached, t.completion, t.reasoning, t.total) == (5, 2, 9, 4, 14)
    assert tokens.from_body(b'{"usage":{"input_tokens":3,"output_tokens":4}}', anthropic=True).total == 7
    assert tokens.from_body(b"<html>oops</html>", anthropic=False).total == 0
    assert tokens.from_body(b'{"usage": "weird"}', anthropic=False).total == 0


def _entry(routes, providers) -> KeyEntry:
    reply = contract.KeyLookupReply(
        found=True, key=contract.KeyRecord(id="k", name="n", project="p", status="active"), providers=providers, routes=routes
    )
    return KeyEntry("h", reply, 0.0)


def test_weighted_order_and_priorities():
    providers = [contract.ProviderCredential(name=n, kind="openai", base_url="http://x/v1") for n in ("a", "b", "c")]
    D = contract.Deployment
    entry = _entry(
        [contract.Route(model="m", deployments=[D(provider="a", model="m", weight=3), D(provider="b", model="m", weight=1), D(provider="c", model="m", priority=1)])],
        providers,
    )
    resolution = routing.resolve(entry, "m", "openai")
    firsts = collections.Counter(resolution.ordered()[0].provider.name for _ in range(4000))
    assert set(firsts) == {"a", "b"} and 2.4 < firsts["a"] / firsts["b"] < 3.8
    assert all(resolution.ordered()[-1].provider.name == "c" for _ in range(50))


def test_route_resolution_rules():
    providers = [
        contract.ProviderCredential(name="openai", kind="openai", base_url="http://x/v1"),
        contract.ProviderCredential(name="anthropic", kind="anthropic", base_url="http://y"),
    ]
    D = contract.Deployment
    entry = _entry(
        [
            contract.Route(model="claude-*", deployments=[D(provider="anthropic", model="*")]),
            contract.Route(model="alias", deployments=[D(provider="openai", model="gpt-4o")]),
            contract.Route(model="ghost", deployments=[D(provider="missing", model="*")]),
            contract.Route(model="*", deployments=[D(provider="openai", model="*")]),
        ],
        providers,
    )
    assert routing.resolve(entry, "claude-x", "anthropic").ordered()[0].upstream_model == "claude-x"
    assert routing.resolve(entry, "alias", "openai").ordered()[0].upstream_model == "gpt-4o"
    assert routing.resolve(entry, "anything", "openai").ordered()[0].provider.name == "openai"
    # a deployment of the other API format: translated on the dialect's chat endpoint only
    (translated,) = routing.resolve(entry, "claude-x", "openai", "/v1/chat/completions").ordered()
    assert translated.translator is routing.TRANSLATORS[("openai", "anthropic")]
    assert routing.resolve(entry, "alias", "anthropic", "/v1/messages").ordered()[0].translator.upstream == "openai"
    with pytest.raises(Exception) as exc:
        routing.resolve(entry, "claude-x", "openai", "/v1/embeddings")
    assert exc.value.status == 400 and exc.value.code == "translation_not_supported"
    with pytest.raises(Exception) as exc:
        routing.resolve(entry, "ghost", "openai")
    assert exc.value.status == 404


def test_breaker_opens_half_opens_and_closes(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(routing.time, "monotonic", lambda: now[0])
    breakers = routing.Breakers(threshold=2, cooldown=10)
    breakers.failure("d")
    assert breakers.allow("d")
    breakers.failure("d")
    assert not breakers.allow("d")
    now[0] += 10.5
    assert breakers.allow("d")  # the one half-open probe
    assert not breakers.allow("d")  # nobody else while it is out
    breakers.failure("d")  # probe failed: open again
    assert not breakers.allow("d")
    now[0] += 11
    assert breakers.allow("d")
    breakers.success("d")
    assert breakers.allow("d") and breakers.allow("d")


def test_ids_are_uuid7_unique_and_ordered():
    ids = [new_id() for _ in range(10000)]
    assert len(set(ids)) == 10000
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert ids == sorted(ids) or ids[0][:12] <= ids[-1][:12]


def test_generation_over_is_seen_only_on_a_real_finish_reason():
    sse = SSEUsage("openai", strip=True)
    sse.feed(b'data: {"choices":[{"index":0,"delta":{"content":"say \\"finish_reason\\":\\"stop\\""},"finish_reason":null}],"usage":null}\n\n')
    assert not sse.over  # only a JSON key can match, never generated text
    sse.feed(b'data: {"choices":[{"index":0,"delta":{},"finish_reason": "stop"}],"usage":null}\n')
    assert not sse.over  # the event is not complete yet
    sse.feed(b"\n")
    assert sse.over
    responses = SSEUsage("responses")
    responses.feed(b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"x"}\n\n')
    assert not responses.over
    responses.feed(b'event: response.output_text.done\ndata: {"type":"response.output_text.done","text":"x"}\n\n')
    assert responses.over
    anthropic = SSEUsage("anthropic")  # usage comes with the stop_reason: never waits
    anthropic.feed(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n')
    assert not anthropic.over
