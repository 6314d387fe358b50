"""LLMGW_PASSTHROUGH: which other /v1/* paths are forwarded (all | none | path prefixes), and the
per-key override in the key's metadata. Refused paths are a 404 in the caller's dialect, with no
upstream call and no usage event."""

from __future__ import annotations

import httpx
import pytest

from conftest import OPENAI_KEY, proxy_settings
from harness import ProxyServer
from llmgw_proxy.domain.passthrough import PassthroughGuard, PassthroughPolicy
from llmgw_proxy.settings import Settings


@pytest.fixture(scope="module")
def servers(tmp_path_factory, nats_url, keysvc):
    started = {
        mode: ProxyServer(proxy_settings(tmp_path_factory, nats_url, passthrough=mode)).start()
        for mode in ("all", "none", "/v1/moderations, /v1/audio/")
    }
    yield started
    for server in started.values():
        server.stop()


def _refused(r: httpx.Response, dialect: str = "openai") -> None:
    assert r.status_code == 404, r.text
    body = r.json()
    if dialect == "openai":
        error = body["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "unknown_url", body
        assert "Invalid URL" in error["message"]
    else:
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error", body
    assert r.headers["x-request-id"]


def test_all_forwards_every_path(servers, mock, keysvc, key):
    secret, _ = key
    server = servers["all"]
    since = mock.last_seq()
    r = httpx.delete(server.url + "/v1/files/file-abc", headers={"authorization": f"Bearer {secret}"})
    assert r.status_code == 404  # the mock's own answer: it was forwarded
    (call,) = mock.calls(since)
    assert call["path"] == "/v1/files/file-abc" and call["api_key"] == OPENAI_KEY


def test_none_forwards_nothing(servers, mock, keysvc, key):
    secret, record = key
    server = servers["none"]
    since = mock.last_seq()
    _refused(httpx.post(server.url + "/v1/moderations", json={"input": "hi"}, headers={"authorization": f"Bearer {secret}"}))
    _refused(httpx.get(server.url + "/v1/files", headers={"authorization": f"Bearer {secret}"}))
    _refused(httpx.get(server.url + "/v1/messages/batches", headers={"x-api-key": secret, "anthropic-version": "2023-06-01"}),
             "anthropic")
    # the proxy's own endpoints are not pass-through: they keep working
    r = httpx.post(server.url + "/v1/chat/completions", headers={"authorization": f"Bearer {secret}"},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert httpx.get(server.url + "/v1/models", headers={"authorization": f"Bearer {secret}"}).status_code == 200
    paths = [c["path"] for c in mock.calls(since)]
    # (/v1/models: the catalog asking the provider what a glob route serves)
    assert {p for p in paths if p != "/v1/models"} == {"/v1/chat/completions"}, paths
    # only the forwarded request has a usage event
    events = keysvc.wait_usage(record.id, 1)
    assert [e.endpoint for e in events] == ["/v1/chat/completions"]


def test_refused_before_authentication_is_still_a_401(servers, mock):
    r = httpx.get(servers["none"].url + "/v1/files", headers={"authorization": "Bearer sk-llmgw-nope"})
    assert r.status_code == 401  # the policy is not revealed to callers without a key


def test_prefixes_forward_only_what_they_name(servers, mock, key):
    secret, _ = key
    server = servers["/v1/moderations, /v1/audio/"]
    auth = {"authorization": f"Bearer {secret}"}
    since = mock.last_seq()
    r = httpx.post(server.url + "/v1/moderations", json={"input": "hi"}, headers=auth)
    assert r.status_code == 200, r.text
    r = httpx.post(server.url + "/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")}, data={"model": "whisper-1"},
                   headers=auth)
    assert r.status_code == 404  # the mock has no audio endpoint, but it was asked
    forwarded = [c["path"] for c in mock.calls(since)]
    assert forwarded == ["/v1/moderations", "/v1/audio/transcriptions"], forwarded
    since = mock.last_seq()
    for method, path in [("GET", "/v1/files"), ("POST", "/v1/batches"), ("DELETE", "/v1/files/file-abc"),
                         ("POST", "/v1/moderationsx"), ("GET", "/v1/fine_tuning/jobs")]:
        _refused(httpx.request(method, server.url + path, headers=auth, json={}))
    assert mock.calls(since) == []


def test_per_key_metadata_overrides_the_gateway_policy(servers, mock, keysvc):
    since = mock.last_seq()
    # the gateway forwards everything, this key nothing
    locked, _ = keysvc.add_key(metadata={"passthrough": "none"})
    _refused(httpx.post(servers["all"].url + "/v1/moderations", json={"input": "hi"},
                        headers={"authorization": f"Bearer {locked}"}))
    # the gateway forwards nothing, this key (a batch job's, say) its files and batches
    batch, _ = keysvc.add_key(metadata={"passthrough": ["/v1/files", "/v1/batches"]})
    assert httpx.get(servers["none"].url + "/v1/files", headers={"authorization": f"Bearer {batch}"}).status_code == 404
    _refused(httpx.post(servers["none"].url + "/v1/moderations", json={"input": "hi"},
                        headers={"authorization": f"Bearer {batch}"}))
    # an unreadable policy in the metadata forwards nothing (fail closed)
    broken, _ = keysvc.add_key(metadata={"passthrough": 42})
    _refused(httpx.get(servers["all"].url + "/v1/files", headers={"authorization": f"Bearer {broken}"}))
    assert [c["path"] for c in mock.calls(since)] == ["/v1/files"]


# --- the policy, without a server -----------------------------------------------------------------
def test_policy_parsing_and_matching():
    assert PassthroughPolicy.parse("all").allows("/v1/anything/at/all")
    assert PassthroughPolicy.parse("ALL").allow_all
    assert not PassthroughPolicy.parse("none").allows("/v1/moderations")
    policy = PassthroughPolicy.parse("/v1/moderations,/v1/audio/ , ")
    assert policy.allows("/v1/moderations") and policy.allows("/v1/moderations/abc")
    assert policy.allows("/v1/audio") and policy.allows("/v1/audio/speech")
    assert not policy.allows("/v1/moderationsx") and not policy.allows("/v1/audiox")
    assert not policy.allows("/v1/files") and not policy.allows("/v2/moderations")
    assert PassthroughPolicy.parse(["/v1/files"]).allows("/v1/files/f-1/content")
    assert PassthroughPolicy.parse(True).allow_all and not PassthroughPolicy.parse(False).allows("/v1/files")
    for bad in ["/v2/files", "files", "/v1/", "/v1/../x", "/v1/a%2f", 7, [3]]:
        with pytest.raises(ValueError):
            PassthroughPolicy.parse(bad)


def test_guard_caches_per_key_policies():
    guard = PassthroughGuard("none")
    assert guard.policy_for(None) is guard.default and guard.policy_for({}) is guard.default
    first = guard.policy_for({"passthrough": ["/v1/files"]})
    assert guard.policy_for({"passthrough": ["/v1/files"]}) is first
    assert not guard.policy_for({"passthrough": {"x": 1}}).allows("/v1/files")


def test_passthrough_setting_is_validated_at_start():
    assert Settings(passthrough="/v1/moderations,/v1/audio/").passthrough
    with pytest.raises(ValueError, match="must start with '/v1/'"):
        Settings(passthrough="/v2/foo")
