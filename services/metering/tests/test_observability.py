"""Metering's /metrics after ingest and API traffic: batch sizes, database latency, ledger cost,
consumer lag and pending acks, dead letters, HTTP request metrics; and its JSON log lines."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from helpers import event, new_key, publish, publish_raw, wait_for, wait_requests


def samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client) -> dict:
    response = await client.get("/metrics")
    assert response.status_code == 200
    # exactly prometheus-client's type: its "charset=utf-8" once, not once more by Litestar
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return samples(response.text)


async def test_ingest_and_api_metrics(client, nc, settings):
    before = await scrape(client)
    key = new_key()
    await publish(nc, [event(key_id=key, model="gpt-4o", provider="openai") for _ in range(3)])
    await wait_requests(client, key, 3)
    after = await scrape(client)

    def delta(name: str, **labels) -> float:
        k = (name, tuple(sorted(labels.items())))
        return after.get(k, 0.0) - before.get(k, 0.0)

    assert delta("llmgw_metering_events_inserted_total") == 3
    assert delta("llmgw_metering_cost_usd_total", model="gpt-4o", provider="openai") > 0
    assert delta("llmgw_metering_batch_size_count") >= 1 and delta("llmgw_metering_batch_size_sum") == 3
    assert delta("llmgw_metering_db_duration_seconds_count", operation="ingest") >= 1
    assert ("llmgw_metering_consumer_lag", ()) in after and ("llmgw_metering_consumer_ack_pending", ()) in after
    assert after[("llmgw_metering_consumer_running", ())] == 1
    # the usage query above went through the HTTP metrics, under its route template
    assert delta("llmgw_metering_http_requests_total", method="GET", route="/v1/usage", status="200") >= 1
    assert delta("llmgw_metering_http_request_duration_seconds_count", method="GET", route="/v1/usage") >= 1

    # a duplicate (same event id) stores nothing and costs nothing
    again = event(key_id=key, model="gpt-4o", provider="openai")
    await publish(nc, [again, again])
    await wait_requests(client, key, 4)
    later = await scrape(client)
    assert later[("llmgw_metering_events_inserted_total", ())] - after[("llmgw_metering_events_inserted_total", ())] == 1


async def test_dead_letter_metric(client, nc):
    before = await scrape(client)
    await publish_raw(nc, "llmgw.v1.usage.openai", b"definitely not json", headers={"Nats-Msg-Id": new_key()})

    async def counted():
        now = await scrape(client)
        k = ("llmgw_metering_dead_letter_total", (("reason", "invalid_json"),))
        return now.get(k, 0.0) > before.get(k, 0.0)

    await wait_for(counted, what="dead letter counted")
