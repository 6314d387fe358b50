"""Property-based run of the OpenAPI spec (schemathesis) against the real server: zero 5xx.

The service runs as ``python -m llmgw_keys serve`` (uvicorn, migrations on start) on a fresh
database; every operation is fed schema-conforming and schema-violating requests, authenticated
with the bootstrap token so they reach the handlers. Bounded: a few dozen examples per operation.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest
import schemathesis
from conftest import ADMIN_TOKEN, ENV_OPENAI_KEY, auth
from cryptography.fernet import Fernet
from llmgw_devstack.fuzzing import fuzz_operation, served
from llmgw_devstack.ports import free_port
from schemathesis import GenerationMode

#: `make fuzz` raises this (LLMGW_FUZZ_EXAMPLES=200); `make test` runs the short version.
EXAMPLES = int(os.environ.get("LLMGW_FUZZ_EXAMPLES", "10"))
MAX_EXAMPLES = {GenerationMode.POSITIVE: EXAMPLES, GenerationMode.NEGATIVE: max(5, EXAMPLES // 2)}


@pytest.fixture(scope="module")
def server(make_database, nats_url, tmp_path_factory, secret_registry):
    database_url = make_database("fuzz")
    port = free_port()
    env = dict(
        LLMGW_DATABASE_URL=database_url,
        LLMGW_NATS_URL=nats_url,
        LLMGW_KEYS_PORT=str(port),
        LLMGW_ADMIN_TOKEN=ADMIN_TOKEN,
        LLMGW_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        LLMGW_OPENAI_API_KEY=ENV_OPENAI_KEY,
        LLMGW_LOG_LEVEL="WARNING",
    )
    state = tmp_path_factory.mktemp("fuzz-state")
    env["LLMGW_STATE_DIR"] = str(state)
    with served("llmgw_keys", env, port, state, health="/readyz") as (base, log_path):
        secret_registry.add(database_url, ADMIN_TOKEN, ENV_OPENAI_KEY)
        yield base, database_url, log_path


def test_openapi_spec_has_no_5xx(server, secret_registry):
    base, database_url, log_path = server
    # a few real objects so generated ids and names sometimes hit something
    with httpx.Client(base_url=base, headers=auth(ADMIN_TOKEN)) as client:
        created = client.post("/v1/keys", json={"name": "fuzz-target"}).json()
        secret_registry.add(database_url, created["key"])
        client.put("/v1/providers/openai", json={"kind": "openai", "base_url": "https://api.openai.com/v1"})

    schema = schemathesis.openapi.from_url(f"{base}/schema/openapi.json")
    failures: list[str] = []
    counts = {"operations": 0, "requests": 0}

    def check(case, mode) -> None:
        t0 = time.monotonic()
        response = case.call(base_url=base, headers=auth(ADMIN_TOKEN), timeout=10)
        counts["call_time"] = counts.get("call_time", 0) + time.monotonic() - t0
        counts["requests"] += 1
        is_json = (response.headers.get("content-type") or [""])[0].startswith("application/json")
        body = response.json() if is_json and response.content else None
        if isinstance(body, dict):
            for field in ("key", "token"):
                if isinstance(body.get(field), str):
                    secret_registry.add(database_url, body[field])
        if response.status_code >= 500:
            failures.append(f"{mode} {case.method} {case.path}: {response.status_code}\n  {case.as_curl_command()}")
        elif response.status_code >= 400 and body is not None:
            assert set(body) == {"error"} and {"type", "message"} <= set(body["error"]), body

    def fuzz(operation, mode, examples, path_parameters=None) -> None:
        fuzz_operation(operation, mode, examples, lambda case: check(case, mode), path_parameters)

    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        counts["operations"] += 1
        for mode, examples in MAX_EXAMPLES.items():
            fuzz(operation, mode, examples)
        if "{key_id}" in operation.path:
            # random ids are all 404s: also fuzz the bodies against a real key (a fresh one each)
            with httpx.Client(base_url=base, headers=auth(ADMIN_TOKEN)) as client:
                real = client.post("/v1/keys", json={"name": "fuzz-real"}).json()
            secret_registry.add(database_url, real["key"])
            fuzz(operation, GenerationMode.POSITIVE, MAX_EXAMPLES[GenerationMode.POSITIVE], {"key_id": real["id"]})
    operations = counts["operations"]
    elapsed = time.monotonic() - started
    print(
        f"schemathesis: {operations} operations, {counts['requests']} requests in {elapsed:.1f}s "
        f"(HTTP calls {counts.get('call_time', 0):.1f}s)"
    )
    assert operations >= 15
    assert not failures, "\n".join(failures[:20]) + "\n--- server log ---\n" + log_path.read_text()[-3000:]
