"""Hostile and malformed input against every public route: always a 4xx in the right dialect,
never a 5xx, never a crash, never an upstream call."""

from __future__ import annotations

import json
import socket

import httpx
import pytest

HUGE = 11 * 1024 * 1024  # over the 10 MiB default body limit

PROXY_POST_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages",
                     "/v1/messages/count_tokens"]


def deep(n: int) -> str:
    return '{"model": "gpt-4o-mini", "messages": ' + "[" * n + "]" * n + "}"


BAD_BODIES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not json", b"hello"),
    ("truncated", b'{"model": "gpt-4o-mini", "messages": ['),
    ("array", b"[1,2,3]"),
    ("string", b'"model"'),
    ("null", b"null"),
    ("model number", b'{"model": 42, "messages": []}'),
    ("model missing", b'{"messages": [{"role": "user", "content": "x"}]}'),
    ("stream string", b'{"model": "gpt-4o-mini", "messages": [], "stream": "yes"}'),
    ("messages object", b'{"model": "gpt-4o-mini", "messages": {"role": "user"}}'),
    ("invalid utf8", b'{"model": "gpt-4o-mini\xff\xfe", "messages": []}'),
    ("deep nesting", deep(5000).encode()),
    ("nan", b'{"model": "gpt-4o-mini", "messages": [], "temperature": NaN}'),
    ("duplicate-ish huge key", b'{"' + b"a" * 100000 + b'": 1}'),
]


def dialect_ok(route: str, response: httpx.Response) -> bool:
    body = response.json()
    if route.startswith("/v1/messages"):
        return body.get("type") == "error" and {"type", "message"} <= set(body["error"])
    return {"message", "type"} <= set(body.get("error", {}))


@pytest.fixture(scope="module")
def proxy_key(stack):
    return stack.create_key(name="hostile", project="hostile")["key"]


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=30) as http:
        yield http


@pytest.mark.parametrize("route", PROXY_POST_ROUTES)
def test_malformed_bodies_get_4xx_in_dialect_and_never_reach_upstream(stack, mock_provider, proxy_key, client, route):
    before = len(mock_provider.calls())
    headers = {"Authorization": f"Bearer {proxy_key}", "Content-Type": "application/json",
               "anthropic-version": "2023-06-01"}
    for name, body in BAD_BODIES:
        if name == "messages object" and route not in ("/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens"):
            continue  # only these endpoints take `messages`
        response = client.post(stack.proxy_url() + route, content=body, headers=headers)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text[:300])
        assert dialect_ok(route, response), (name, response.text[:300])
    assert len(mock_provider.calls()) == before, "a malformed request reached the upstream"


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/messages"])
def test_oversize_body_413(stack, mock_provider, proxy_key, client, route):
    before = len(mock_provider.calls())
    payload = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + b"x" * HUGE + b'"}]}'
    response = client.post(stack.proxy_url() + route, content=payload,
                           headers={"Authorization": f"Bearer {proxy_key}", "Content-Type": "application/json"})
    assert response.status_code == 413
    assert dialect_ok(route, response)
    assert len(mock_provider.calls()) == before


def test_oversize_chunked_body_413(stack, mock_provider, proxy_key, client):
    """No Content-Length: the proxy must count the streamed bytes."""
    before = len(mock_provider.calls())

    def chunks():
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(12):
            yield b"x" * (1024 * 1024)
        yield b'"}]}'

    response = client.post(stack.proxy_url() + "/v1/chat/completions", content=chunks(),
                           headers={"Authorization": f"Bearer {proxy_key}", "Content-Type": "application/json"})
    assert response.status_code == 413
    assert len(mock_provider.calls()) == before


def test_header_injection_and_bad_auth_headers(stack, mock_provider, client):
    before = len(mock_provider.calls())
    for auth in ["Bearer", "Bearer ", "Basic abc", "Bearer sk-llmgw-\u00e9", "Bearer " + "a" * 10000, "sk-llmgw-x"]:
        try:
            response = client.post(stack.proxy_url() + "/v1/chat/completions", json={"model": "m", "messages": []},
                                   headers={"Authorization": auth})
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            continue  # the client itself refuses to send it
        assert response.status_code == 401, (auth[:30], response.status_code)
    # A raw CRLF injection attempt in a header value, sent on a raw socket.
    host, port = "127.0.0.1", int(stack.proxy_url().rsplit(":", 1)[1])
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nX-Request-Id: a\rInjected: 1\r\n"
           b"Content-Length: 2\r\n\r\n{}")
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(raw)
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 4"), head[:100]
    assert len(mock_provider.calls()) == before


def test_path_traversal_and_odd_ids(stack, client, proxy_key):
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    for key_id in ["../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%00", "a" * 5000, "' OR 1=1 --", "😀"]:
        response = client.get(f"{stack.keys_url}/v1/keys/{key_id}", headers=admin)
        assert 400 <= response.status_code < 500, ("key-service", key_id[:20], response.status_code)
        response = client.get(f"{stack.metering_url}/v1/usage/keys/{key_id}", headers=admin)
        assert response.status_code < 500, ("metering", key_id[:20], response.status_code)
    response = client.get(stack.proxy_url() + "/v1/models/..%2F..%2Fetc%2Fpasswd", headers={"Authorization": f"Bearer {proxy_key}"})
    assert 400 <= response.status_code < 500


def test_absurd_query_params(stack, client):
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    for query in ["limit=-1", "limit=99999999999999999999", "limit=abc", "cursor=%%%", "cursor=" + "A" * 5000,
                  "status=bogus", "project=" + "p" * 10000]:
        response = client.get(f"{stack.keys_url}/v1/keys?{query}", headers=admin)
        assert 400 <= response.status_code < 500 or response.status_code == 200, (query[:30], response.status_code)
    for query in ["group_by=nonsense", "group_by=" + ",".join(["key"] * 1000), "from=yesterday", "to=2026-13-45",
                  "format=xml", "from=9999-12-31T00:00:00&to=0001-01-01T00:00:00", "limit=-5"]:
        response = client.get(f"{stack.metering_url}/v1/usage?{query}", headers=admin)
        assert response.status_code < 500, (query[:30], response.status_code, response.text[:200])
    response = client.get(f"{stack.metering_url}/v1/usage/events?limit=-1&cursor=zzz", headers=admin)
    assert 400 <= response.status_code < 500


def test_admin_routes_reject_bad_tokens_and_virtual_keys(stack, client, proxy_key):
    routes = [("GET", stack.keys_url + "/v1/keys"), ("POST", stack.keys_url + "/v1/keys"),
              ("GET", stack.keys_url + "/v1/providers"), ("GET", stack.keys_url + "/v1/routes"),
              ("GET", stack.keys_url + "/v1/admin-tokens"), ("GET", stack.metering_url + "/v1/usage"),
              ("GET", stack.metering_url + "/v1/usage/events")]
    for method, url in routes:
        for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YWRtaW46YWRtaW4="},
                        {"Authorization": f"Bearer {proxy_key}"}, {"x-api-key": stack.admin_token}]:
            response = client.request(method, url, headers=headers, json={} if method == "POST" else None)
            assert response.status_code == 401, (method, url, headers.keys(), response.status_code)
            assert response.json()["error"]["type"]


def test_analyst_cannot_mutate(stack, client):
    status, created = stack.admin("POST", "/v1/admin-tokens", {"name": "analyst-e2e", "role": "analyst"})
    assert status == 201, created
    analyst = {"Authorization": f"Bearer {created['token']}"}
    assert client.post(stack.keys_url + "/v1/keys", json={"name": "x", "project": "y"}, headers=analyst).status_code == 403
    assert client.put(stack.keys_url + "/v1/routes", json={"data": []}, headers=analyst).status_code == 403
    assert client.get(stack.metering_url + "/v1/usage?group_by=key", headers=analyst).status_code == 200
    # Revoked analyst token stops working everywhere (metering caches verifications briefly).
    assert stack.admin("DELETE", f"/v1/admin-tokens/{created['id']}")[0] == 204
    from conftest import eventually

    eventually(lambda: client.get(stack.metering_url + "/v1/usage", headers=analyst).status_code == 401,
               timeout=40, interval=1, what="revoked analyst token rejected by metering")


UNDECODABLE_BODIES = [(name, body) for name, body in BAD_BODIES
                      if name in ("not json", "truncated", "invalid utf8", "deep nesting", "nan")]


def test_admin_and_analyst_json_routes_refuse_undecodable_bodies_with_4xx(stack, client):
    """Every key-service/metering route that reads a JSON body: 400 in the admin error shape, never a 500."""
    status, created = stack.admin("POST", "/v1/keys", {"name": "hostile-admin-body", "project": "hostile"})
    assert status == 201, created
    key_id = created["id"]
    routes = [("POST", stack.keys_url + "/v1/keys"), ("PATCH", f"{stack.keys_url}/v1/keys/{key_id}"),
              ("POST", f"{stack.keys_url}/v1/keys/{key_id}/rotate"), ("PUT", stack.keys_url + "/v1/providers/hostile"),
              ("PUT", stack.keys_url + "/v1/routes"), ("POST", stack.keys_url + "/v1/admin-tokens"),
              ("PUT", stack.metering_url + "/v1/prices/overrides/hostile-model")]
    headers = {"Authorization": f"Bearer {stack.admin_token}", "Content-Type": "application/json"}
    for method, url in routes:
        for name, body in UNDECODABLE_BODIES:
            response = client.request(method, url, content=body, headers=headers)
            assert response.status_code == 400, (method, url, name, response.status_code, response.text[:200])
            assert response.json()["error"]["type"] == "invalid_request_error", (method, url, name)
    # Nothing was changed by any of them: the key still has its first secret's record.
    status, record = stack.admin("GET", f"/v1/keys/{key_id}")
    assert status == 200 and record["prefix"] == created["prefix"] and record["status"] == "active"


@pytest.mark.parametrize("path", ["/v1/files/..%2F..%2F_mock%2Fcalls", "/v1/..%2f_mock/calls", "/v1/files/%2e%2e/x",
                                  "/v1/files/../../_mock/calls", "/v1/files/a%5C..%5Cb", "/v1/files/a%00b"])
def test_passthrough_path_traversal_is_refused_before_the_upstream(stack, mock_provider, proxy_key, path):
    before = len(mock_provider.calls())
    host, port = "127.0.0.1", int(stack.proxy_url().rsplit(":", 1)[1])
    # Raw socket: HTTP clients normalise `..` away before sending, an attacker's client does not.
    raw = (f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {proxy_key}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") or head.startswith(b"HTTP/1.1 404"), head[:200]
    assert json.loads(body)["error"]["type"] == "invalid_request_error", body[:200]
    assert len(mock_provider.calls()) == before, "a traversal path reached the upstream"
