"""Runs last in the e2e session: after all the traffic above, no virtual key, provider key or admin
token appears in any Postgres row (only hashes and encrypted blobs), any service log line, or any
metric label."""

from __future__ import annotations

import subprocess
import urllib.request

from llmgw_devstack.postgres import postgres_bin_dir


def test_no_plaintext_secret_in_database_logs_or_metrics(stack):
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
    for url in [stack.proxy_url(), stack.keys_url, stack.metering_url]:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            places[f"{url}/metrics"] = response.read().decode()

    leaks = [(where, secret[:12] + "…") for where, text in places.items() for secret in secrets if secret in text]
    assert not leaks, leaks
