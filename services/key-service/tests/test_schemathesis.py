"""Property-based run of the OpenAPI spec (schemathesis) against the real server: zero 5xx.

The service runs as ``python -m llmgw_keys serve`` (uvicorn, migrations on start) on a fresh
database; every operation is fed schema-conforming and schema-violating requests, authenticated
with the bootstrap token so they reach the handlers. Bounded: a few dozen examples per operation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
import schemathesis
from conftest import ADMIN_TOKEN, ENV_OPENAI_KEY, auth
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from llmgw_devstack.ports import free_port
from schemathesis import GenerationMode

MAX_EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 5}


@pytest.fixture(scope="module")
def server(make_database, nats_url, tmp_path_factory, secret_registry):
    database_url = make_database("fuzz")
    port = free_port()
    state = tmp_path_factory.mktemp("fuzz-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env.update(
        LLMGW_DATABASE_URL=database_url,
        LLMGW_NATS_URL=nats_url,
        LLMGW_KEYS_PORT=str(port),
        LLMGW_ADMIN_TOKEN=ADMIN_TOKEN,
        LLMGW_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        LLMGW_STATE_DIR=str(state),
        LLMGW_OPENAI_API_KEY=ENV_OPENAI_KEY,
        LLMGW_LOG_LEVEL="WARNING",
    )
    log_path = state / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "llmgw_keys", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    print(f"server ready in {time.monotonic() - started:.1f}s")
    secret_registry.add(database_url, ADMIN_TOKEN, ENV_OPENAI_KEY)
    yield base, database_url, log_path
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        def run(case):
            check(case, mode)

        try:
            run()
        except Unsatisfiable:
            # e.g. no way to violate the schema of an operation without parameters or body
            assert mode == GenerationMode.NEGATIVE

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
