"""``llmgw usage`` against the real metering service: usage events go through real JetStream into
PostgreSQL, the CLI reads them back."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, datetime

import pytest

pytest.importorskip("llmgw_metering.app", reason="metering (llmgw_metering) is not installed")

import nats  # noqa: E402

from conftest import ADMIN_TOKEN, wait_until  # noqa: E402
from llmgw_common import contract  # noqa: E402
from llmgw_common.messaging import ensure_streams  # noqa: E402


def make_event(key_id: str, project: str, model: str, prompt: int, completion: int, provider: str = "openai"):
    return contract.UsageEvent(
        event_id=uuid.uuid4().hex,
        request_id=uuid.uuid4().hex,
        ts=datetime.now(UTC),
        key_id=key_id,
        project=project,
        provider=provider,
        model=model,
        upstream_model=model,
        deployment=f"{provider}/{model}",
        endpoint="/v1/chat/completions",
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        latency_ms=120.0,
        ttfb_ms=40.0,
    )


def publish(nats_url: str, events: list) -> None:
    async def go() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await ensure_streams(js, contract.STREAM_USAGE)
            for event in events:
                await js.publish(
                    contract.usage_subject(event.provider),
                    contract.encode(event),
                    headers={contract.HEADER_MSG_ID: event.event_id},
                )
        finally:
            await nc.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def ledger(metering, nats_url):
    """Two keys' usage, published once and waited for (as metering reports it over HTTP)."""
    project = f"cli-{uuid.uuid4().hex[:8]}"
    key_a, key_b = str(uuid.uuid4()), str(uuid.uuid4())
    events = [
        *(make_event(key_a, project, "gpt-4o-mini", 100, 10) for _ in range(3)),
        *(make_event(key_a, project, "local-model", 50, 5, provider="vllm") for _ in range(2)),
        make_event(key_b, project, "gpt-4o-mini", 7, 3),
    ]
    publish(nats_url, events)
    return {"project": project, "key_a": key_a, "key_b": key_b, "events": events}


@pytest.fixture
def env(metering) -> dict[str, str]:
    return {"LLMGW_METERING_URL": metering.url, "LLMGW_ADMIN_TOKEN": ADMIN_TOKEN}


def report(cli, env, *args) -> dict:
    result = cli(["usage", "-o", "json", *args], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_usage_report_grouped_by_model(cli, env, ledger):
    def all_in():
        rows = report(cli, env, "--project", ledger["project"], "--group-by", "key")["data"]
        return sum(row["requests"] for row in rows) == len(ledger["events"]) and rows

    wait_until(all_in, what="metering to ingest the published events")

    rows = report(cli, env, "--key-id", ledger["key_a"], "-g", "model")["data"]
    by_model = {row["model"]: row for row in rows}
    assert by_model["gpt-4o-mini"]["requests"] == 3
    assert by_model["gpt-4o-mini"]["prompt_tokens"] == 300
    assert by_model["gpt-4o-mini"]["completion_tokens"] == 30
    assert by_model["local-model"]["requests"] == 2
    assert by_model["local-model"]["total_tokens"] == 110

    table = cli(["usage", "--key-id", ledger["key_a"], "--group-by", "model"], env=env)
    assert table.exit_code == 0, table.output
    assert "gpt-4o-mini" in table.stdout and "local-model" in table.stdout
    assert "total" in table.stdout  # footer row over several rows


def test_usage_csv_is_the_services_csv(cli, env, ledger):
    wait_until(
        lambda: sum(r["requests"] for r in report(cli, env, "--project", ledger["project"])["data"]) == len(ledger["events"]),
        what="ingest",
    )
    result = cli(["usage", "--project", ledger["project"], "--group-by", "key,model", "--output", "csv"], env=env)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    counts = {(row["key_id"], row["model"]): int(row["requests"]) for row in rows}
    assert counts == {
        (ledger["key_a"], "gpt-4o-mini"): 3,
        (ledger["key_a"], "local-model"): 2,
        (ledger["key_b"], "gpt-4o-mini"): 1,
    }


def test_usage_events_and_key_totals(cli, env, ledger):
    def events():
        result = cli(["usage", "events", "--key-id", ledger["key_a"], "--limit", "2", "--all", "-o", "json"], env=env)
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)["data"]
        return data if len(data) == 5 else None

    data = wait_until(events, what="5 events for key A")
    assert {e.get("event_id") for e in data} == {e.event_id for e in ledger["events"][:5]}

    table = cli(["usage", "events", "--key-id", ledger["key_a"], "--limit", "2"], env=env)
    assert table.exit_code == 0 and "more events" in table.stderr

    totals = cli(["usage", "key", ledger["key_a"], "-o", "json"], env=env)
    assert totals.exit_code == 0, totals.output
    assert isinstance(json.loads(totals.stdout), dict)
    assert cli(["usage", "key", ledger["key_a"]], env=env).exit_code == 0


def test_usage_with_a_wrong_token(cli, metering, key_service):
    # key-service runs too: metering asks it over NATS about tokens it does not know itself
    result = cli(["usage"], env={"LLMGW_METERING_URL": metering.url, "LLMGW_ADMIN_TOKEN": "llmgw-admin-nope"})
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 401")
    assert "llmgw-admin-nope" not in result.output
