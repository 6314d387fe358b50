"""The CLI against the real key-service (in-process, real NATS and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pytest

pytest.importorskip("llmgw_keys.app", reason="key-service (llmgw_keys) is not installed")

from conftest import ADMIN_TOKEN  # noqa: E402


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def as_json(cli, args, env, **kwargs) -> dict:
    result = cli(["-o", "json", *args], env=env, **kwargs)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_prints_the_secret_once_with_a_warning(cli, admin_env):
    project = unique("proj")
    result = cli(
        [
            "keys", "create", "--name", "search", "--project", project, "--model", "gpt-4o*,claude-*",
            "--rpm", "60", "--tpm", "10000", "--max-parallel", "4", "--budget", "25.5", "--budget-period", "monthly",
            "--expires-at", "30d", "--tag", "team:search", "--tag", "prod", "--metadata", '{"owner": "ana"}',
        ],
        env=admin_env,
    )
    assert result.exit_code == 0, result.output
    secret_lines = [line for line in result.stdout.splitlines() if line.startswith("key: ")]
    assert len(secret_lines) == 1
    secret = secret_lines[0].removeprefix("key: ").strip()
    assert secret.startswith("sk-")
    assert result.stdout.count(secret) == 1  # shown once, in one unbroken piece
    assert "only time the secret is shown" in result.stderr
    assert ADMIN_TOKEN not in result.output

    (record,) = as_json(cli, ["keys", "list", "--project", project], admin_env)["data"]
    assert secret not in json.dumps(record)  # the list never carries the secret
    assert secret.startswith(record["prefix"])
    assert record["models"] == ["gpt-4o*", "claude-*"]
    assert record["tags"] == ["team:search", "prod"]
    assert (record["rpm_limit"], record["tpm_limit"], record["max_parallel_requests"]) == (60, 10000, 4)
    assert (record["budget_usd"], record["budget_period"]) == (25.5, "monthly")
    assert record["metadata"] == {"owner": "ana"}
    assert record["expires_at"] is not None


def test_json_create_show_update_rotate_revoke(cli, admin_env):
    created = as_json(cli, ["keys", "create", "-n", "k", "-p", unique("p"), "--budget", "5"], admin_env)
    key_id, first_secret = created["id"], created["key"]

    shown = as_json(cli, ["keys", "show", key_id], admin_env)
    assert shown["id"] == key_id and shown["status"] == "active" and "key" not in shown

    table = cli(["keys", "show", key_id], env=admin_env)
    assert table.exit_code == 0 and key_id in table.stdout and "active" in table.stdout

    updated = as_json(
        cli, ["keys", "update", key_id, "--rpm", "120", "--clear-budget", "--name", "renamed", "--tag", "x"], admin_env
    )
    assert (updated["rpm_limit"], updated["budget_usd"], updated["budget_period"]) == (120, None, None)
    assert updated["name"] == "renamed" and updated["tags"] == ["x"]
    cleared = as_json(cli, ["keys", "update", key_id, "--clear-rpm", "--clear-tags"], admin_env)
    assert cleared["rpm_limit"] is None and cleared["tags"] == []
    assert as_json(cli, ["keys", "show", key_id], admin_env)["name"] == "renamed"

    rotated = cli(["keys", "rotate", key_id, "--grace-seconds", "60"], env=admin_env)
    assert rotated.exit_code == 0, rotated.output
    new_secret = next(line for line in rotated.stdout.splitlines() if line.startswith("key: ")).split(": ", 1)[1]
    assert new_secret != first_secret and new_secret.startswith("sk-")
    assert "60 s" in rotated.stderr

    declined = cli(["keys", "revoke", key_id], env=admin_env, input="n\n")
    assert declined.exit_code == 1
    assert as_json(cli, ["keys", "show", key_id], admin_env)["status"] == "active"

    confirmed = cli(["keys", "revoke", key_id], env=admin_env, input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    assert f"revoked key {key_id}" in confirmed.stdout
    assert as_json(cli, ["keys", "show", key_id], admin_env)["status"] == "revoked"
    assert key_id in [k["id"] for k in as_json(cli, ["keys", "list", "--status", "revoked"], admin_env)["data"]]


def test_list_pages_filters_and_csv(cli, admin_env):
    project = unique("paged")
    ids = [as_json(cli, ["keys", "create", "-n", f"k{i}", "-p", project, "-t", "paged"], admin_env)["id"] for i in range(3)]
    as_json(cli, ["keys", "create", "-n", "other", "-p", unique("other")], admin_env)

    first_page = as_json(cli, ["keys", "list", "--project", project, "--limit", "2"], admin_env)
    assert len(first_page["data"]) == 2 and first_page["next_cursor"]
    table = cli(["keys", "list", "--project", project, "--limit", "2"], env=admin_env)
    assert "more keys" in table.stderr and first_page["next_cursor"] in table.stderr

    everything = as_json(cli, ["keys", "list", "--project", project, "--limit", "1", "--all"], admin_env)
    assert sorted(k["id"] for k in everything["data"]) == sorted(ids)
    assert everything["next_cursor"] is None

    result = cli(["keys", "list", "--project", project, "--all", "--output", "csv"], env=admin_env)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(row["id"] for row in rows) == sorted(ids)
    assert {json.loads(row["tags"])[0] for row in rows} == {"paged"}
    assert all(row["project"] == project for row in rows)

    table = cli(["keys", "list", "--project", project], env=admin_env)
    assert all(key_id in table.stdout for key_id in ids)
    assert "* (all)" in table.stdout  # no model list = every model
    empty = cli(["keys", "list", "--project", unique("none")], env=admin_env)
    assert empty.exit_code == 0 and "no keys" in empty.stderr


def test_api_errors_show_the_service_message(cli, admin_env):
    missing = cli(["keys", "show", str(uuid.uuid4())], env=admin_env)
    assert missing.exit_code == 1
    assert missing.stderr.startswith("error: 404")
    assert "Traceback" not in missing.output

    invalid = cli(["keys", "create", "-n", "x", "-p", "p", "--model", "has space"], env=admin_env)
    assert invalid.exit_code == 1
    assert invalid.stderr.startswith("error: 422")

    wrong = cli(["keys", "list"], env={**admin_env, "LLMGW_ADMIN_TOKEN": "llmgw-admin-wrong-token-xyz"})
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith("error: 401")
    assert "LLMGW_ADMIN_TOKEN" in wrong.stderr  # says where the token came from
    assert "llmgw-admin-wrong-token-xyz" not in wrong.output


def test_state_dir_token_just_works(cli, key_service, isolated_cli_env):
    """After `make run` the token sits in .llmgw/admin_token: no env needed."""
    state = isolated_cli_env / ".llmgw"
    state.mkdir()
    (state / "admin_token").write_text(ADMIN_TOKEN + "\n")
    result = cli(["keys", "list", "--limit", "1"], env={"LLMGW_KEY_SERVICE_URL": key_service.url})
    assert result.exit_code == 0, result.output


def test_providers_set_list_remove(cli, admin_env):
    name = unique("vllm")
    provider_key = "sk-provider-" + uuid.uuid4().hex
    result = cli(
        ["providers", "set", name, "--kind", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1/", "--api-key-stdin"],
        env=admin_env,
        input=provider_key + "\n",
    )
    assert result.exit_code == 0, result.output
    assert provider_key not in result.output

    listed = as_json(cli, ["providers", "list"], admin_env)
    (mine,) = [p for p in listed["data"] if p["name"] == name]
    assert mine["kind"] == "openai-compatible"
    assert mine["base_url"] == "http://127.0.0.1:9/v1"
    assert provider_key not in json.dumps(listed)  # masked
    table = cli(["providers", "list"], env=admin_env)
    assert name in table.stdout and provider_key not in table.stdout

    # change the base URL, keep the stored key
    kept = as_json(
        cli, ["providers", "set", name, "--kind", "openai-compatible", "--base-url", "http://127.0.0.1:10/v1", "--keep-api-key"], admin_env
    )
    assert kept["base_url"] == "http://127.0.0.1:10/v1" and kept["api_key"] == mine["api_key"]

    removed = cli(["providers", "remove", name, "--yes"], env=admin_env)
    assert removed.exit_code == 0, removed.output
    assert name not in [p["name"] for p in as_json(cli, ["providers", "list"], admin_env)["data"]]
    again = cli(["providers", "remove", name, "--yes"], env=admin_env)
    assert again.exit_code == 1 and "404" in again.stderr


def test_models_set_list_remove(cli, admin_env):
    primary, fallback = unique("prim"), unique("fall")
    for name in (primary, fallback):
        result = cli(
            ["providers", "set", name, "--kind", "openai-compatible", "--base-url", "http://127.0.0.1:9/v1", "--no-api-key"],
            env=admin_env,
        )
        assert result.exit_code == 0, result.output
    model = unique("gpt")
    result = cli(
        ["models", "set", model, "-d", f"{primary}:llama3:8b:3:0", "-d", f"{fallback}:gpt-4o-mini:1:1"], env=admin_env
    )
    assert result.exit_code == 0, result.output
    assert f"{primary}:llama3:8b" in result.stdout

    routes = as_json(cli, ["models", "list"], admin_env)
    (route,) = [r for r in routes["data"] if r["model"] == model]
    assert route["deployments"] == [
        {"provider": primary, "model": "llama3:8b", "weight": 3, "priority": 0},
        {"provider": fallback, "model": "gpt-4o-mini", "weight": 1, "priority": 1},
    ]

    other = unique("other")
    assert cli(["models", "set", other, "-d", f"{fallback}:*"], env=admin_env).exit_code == 0
    appended = cli(["models", "set", model, "--append", "-d", f"{fallback}:gpt-4o:1:2"], env=admin_env)
    assert appended.exit_code == 0, appended.output
    rows = list(csv.DictReader(io.StringIO(cli(["models", "list", "-o", "csv"], env=admin_env).stdout)))
    mine = [(r["provider"], r["upstream_model"], r["weight"], r["priority"]) for r in rows if r["model"] == model]
    assert mine == [(primary, "llama3:8b", "3", "0"), (fallback, "gpt-4o-mini", "1", "1"), (fallback, "gpt-4o", "1", "2")]
    assert any(r["model"] == other for r in rows)  # the other route survived

    removed = cli(["models", "remove", model, "--yes"], env=admin_env)
    assert removed.exit_code == 0, removed.output
    models = [r["model"] for r in as_json(cli, ["models", "list"], admin_env)["data"]]
    assert model not in models and other in models
    missing = cli(["models", "remove", model, "--yes"], env=admin_env)
    assert missing.exit_code == 1 and "no route for model" in missing.stderr

    unknown = cli(["models", "set", unique("m"), "-d", "no-such-provider:x"], env=admin_env)
    assert unknown.exit_code == 1 and "422" in unknown.stderr and "unknown provider" in unknown.stderr


def test_admin_tokens_and_roles(cli, admin_env, key_service):
    result = cli(["tokens", "create", "--name", "finance", "--role", "analyst"], env=admin_env)
    assert result.exit_code == 0, result.output
    token = next(line for line in result.stdout.splitlines() if line.startswith("token: ")).split(": ", 1)[1]
    assert "only time the token is shown" in result.stderr

    listed = as_json(cli, ["tokens", "list"], admin_env)
    (mine,) = [t for t in listed["data"] if t["name"] == "finance" and t["revoked_at"] is None]
    assert mine["role"] == "analyst"
    assert token not in json.dumps(listed)

    analyst_env = {"LLMGW_KEY_SERVICE_URL": key_service.url, "LLMGW_ADMIN_TOKEN": token}
    denied = cli(["keys", "create", "-n", "x", "-p", "y"], env=analyst_env)
    assert denied.exit_code == 1
    assert denied.stderr.startswith("error: 403")
    assert token not in denied.output

    denied = cli(["keys", "list"], env=analyst_env)  # analysts read usage only
    assert denied.exit_code == 1 and denied.stderr.startswith("error: 403")

    revoked = cli(["tokens", "revoke", mine["id"], "--yes"], env=admin_env)
    assert revoked.exit_code == 0, revoked.output
    after = cli(["keys", "list"], env=analyst_env)
    assert after.exit_code == 1 and after.stderr.startswith("error: 401")


def test_cache_stats_and_purge(cli, admin_env, nats_url):
    """``llmgw cache stats|purge`` against the real bucket the proxies share (entries keyed the way
    the proxies key them)."""
    import asyncio

    import nats

    from llmgw_common import contract

    project = unique("cached")

    async def fill() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            kv = await js.create_key_value(bucket=contract.KV_BUCKET_RESPONSE_CACHE, history=1, ttl=600)
            for n in range(3):
                await kv.put(f"{contract.response_cache_project_token(project)}.{n:064x}", b"x" * 50)
        finally:
            await nc.close()

    asyncio.run(fill())
    stats = as_json(cli, ["cache", "stats", "--project", project], admin_env)
    assert stats["exists"] is True and stats["project"] == project and stats["entries"] == 3
    table = cli(["cache", "stats"], env=admin_env)
    assert table.exit_code == 0 and "entries" in table.stdout and contract.KV_BUCKET_RESPONSE_CACHE in table.stdout

    refused = cli(["cache", "purge", "--project", project], env=admin_env, input="n\n")
    assert refused.exit_code != 0  # asks first; "no" purges nothing
    assert as_json(cli, ["cache", "stats", "--project", project], admin_env)["entries"] == 3

    purged = cli(["cache", "purge", "--project", project, "--yes"], env=admin_env)
    assert purged.exit_code == 0, purged.output
    assert f"purged 3 cached answer(s) of project {project}" in purged.stdout
    assert as_json(cli, ["cache", "stats", "--project", project], admin_env)["entries"] == 0
