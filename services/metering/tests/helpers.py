"""Test helpers: event factory, publishing, polling."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from llmgw_common.contract import UsageEvent, encode, usage_subject

ADMIN_TOKEN = "test-bootstrap-admin-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def new_key() -> str:
    return "key_" + uuid.uuid4().hex[:12]


def event(**fields) -> UsageEvent:
    values = dict(
        event_id=uuid.uuid4().hex,
        request_id="req_" + uuid.uuid4().hex[:8],
        ts=datetime.now(UTC),
        key_id="key_default",
        project="proj",
        provider="openai",
        model="gpt-4o",
        endpoint="/v1/chat/completions",
        prompt_tokens=100,
        completion_tokens=20,
        total_tokens=120,
        latency_ms=100.0,
        ttfb_ms=20.0,
    )
    values.update(fields)
    if "total_tokens" not in fields:
        values["total_tokens"] = values["prompt_tokens"] + values["completion_tokens"]
    return UsageEvent(**values)


async def publish(nc, events, *, msg_id: bool = True, headers: dict | None = None) -> None:
    """Publish like the proxy does: one message per event, event id as the JetStream message id."""
    for ev in events:
        hdrs = dict(headers or {})
        if msg_id:
            hdrs["Nats-Msg-Id"] = ev.event_id
        await nc.publish(usage_subject(ev.provider), encode(ev), headers=hdrs or None)
    await nc.flush()


async def publish_raw(nc, subject: str, body: bytes, headers: dict | None = None) -> None:
    await nc.publish(subject, body, headers=headers)
    await nc.flush()


async def wait_for(check: Callable[[], Awaitable], timeout: float = 20.0, interval: float = 0.05, what: str = ""):
    """Poll ``check`` until it returns a truthy value; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}: last={last!r}")
        await asyncio.sleep(interval)


async def usage(client, **params) -> list[dict]:
    response = await client.get("/v1/usage", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def requests_for(client, key_id: str) -> int:
    rows = await usage(client, key_id=key_id)
    return rows[0]["requests"] if rows else 0


async def wait_requests(client, key_id: str, expected: int, timeout: float = 20.0) -> None:
    async def check():
        got = await requests_for(client, key_id)
        assert got <= expected, f"over-counted: {got} > {expected}"
        return got == expected

    await wait_for(check, timeout, what=f"{expected} requests for {key_id}")
