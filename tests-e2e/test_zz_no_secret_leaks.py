"""Runs last in the e2e session: after all the traffic above, no virtual key, provider key or admin
token appears in any Postgres row (only hashes and encrypted blobs), any service log line, any metric
of any replica, or any error body: the ones the earlier tests received (the load and fuzz tests record
them) and the answers to secrets presented where they do not belong (revoked key, admin token or
provider key as a virtual key, virtual key as an admin token, ...)."""

from __future__ import annotations

import subprocess
import urllib.request

import httpx
from conftest import ANTHROPIC_PROVIDER_KEY, ERROR_BODIES, OPENAI_PROVIDER_KEY

from llmgw_devstack.postgres import postgres_bin_dir


def probe_error_answers(stack) -> dict[str, str]:
    """Presents secrets in the wrong places on every service; returns each 4xx answer (headers + body)."""
    revoked = stack.create_key(name="leak-probe-revoked", project="leaks")
    assert stack.admin("DELETE", f"/v1/keys/{revoked['id']}")[0] == 204
    live = stack.create_key(name="leak-probe-live", project="leaks")["key"]
    not_virtual_keys = [stack.admin_token, OPENAI_PROVIDER_KEY, ANTHROPIC_PROVIDER_KEY,
                        stack.env["LLMGW_ENCRYPTION_KEY"], revoked["key"]]
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    messages = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    probes: list[tuple[str, str, dict, dict | None]] = []
    for replica in range(len(stack.proxy_ports)):
        proxy = stack.proxy_url(replica)
        for secret in not_virtual_keys:
            probes += [
                ("POST", proxy + "/v1/chat/completions", {"Authorization": f"Bearer {secret}"}, chat),
                ("POST", proxy + "/v1/messages", {"x-api-key": secret, "anthropic-version": "2023-06-01"}, messages),
                ("GET", proxy + "/v1/models", {"Authorization": f"Bearer {secret}"}, None),
                ("POST", proxy + "/v1/chat/completions", {"Authorization": secret}, chat),  # no scheme
            ]
    for url, path in [(stack.keys_url, "/v1/keys"), (stack.metering_url, "/v1/usage")]:
        for secret in [live, revoked["key"], OPENAI_PROVIDER_KEY, ANTHROPIC_PROVIDER_KEY]:
            probes.append(("GET", url + path, {"Authorization": f"Bearer {secret}"}, None))
        probes += [
            ("GET", url + path, {"x-api-key": stack.admin_token}, None),
            ("GET", url + path, {"Authorization": f"Basic {stack.admin_token}"}, None),
            ("GET", url + path, {"Authorization": f"Bearer {stack.admin_token}x"}, None),
        ]
    answers = {}
    with httpx.Client(timeout=10) as client:
        for number, (method, url, headers, body) in enumerate(probes):
            response = client.request(method, url, headers=headers, json=body)
            assert 400 <= response.status_code < 500, (method, url, response.status_code, response.text[:200])
            answers[f"probe #{number}: {response.status_code} from {method} {url}"] = (
                "\n".join(f"{k}: {v}" for k, v in response.headers.items()) + "\n" + response.text
            )
    return answers


def test_no_plaintext_secret_in_database_logs_metrics_or_error_bodies(stack):
    probes = probe_error_answers(stack)
    secrets = {s for s in stack.secrets if s and len(s) >= 16}
    assert len(secrets) >= 5, "the e2e session should have created keys and tokens"

    dump = subprocess.run(
        [str(postgres_bin_dir() / "pg_dump"), "--data-only", "--no-owner", stack.env["LLMGW_DATABASE_URL"]],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "virtual_keys" in dump or "COPY" in dump  # the dump really has data
    places = {"postgres": dump}
    for name in stack.children:
        places[f"{name} log"] = stack.log(name)
    proxies = [stack.proxy_url(replica) for replica in range(len(stack.proxy_ports))]
    for url in [*proxies, stack.keys_url, stack.metering_url]:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            places[f"{url}/metrics"] = response.read().decode()
    places.update(probes)
    # Error bodies the earlier tests received (empty when this file runs alone).
    for number, (body, where) in enumerate(ERROR_BODIES.items()):
        places[f"error body #{number} ({where})"] = body  # (the label must not quote the secret)

    print(f"MEASURED secret scan: {len(secrets)} secrets x {len(places)} places ({len(probes)} probe answers, "
          f"{len(ERROR_BODIES)} error bodies recorded by earlier tests, {len(proxies)} proxy replicas' /metrics)")
    leaks = [(where, secret[:12] + "…") for where, text in places.items() for secret in secrets if secret in text]
    assert not leaks, leaks[:20]
