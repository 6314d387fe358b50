"""``GET /v1/key/info``: what a key holder may know about their own key."""

from __future__ import annotations

import msgspec

from llmgw_proxy.domain.proxy import Ctx, ProxyService

_encode = msgspec.json.Encoder().encode


async def key_info(proxy: ProxyService, scope, receive, send) -> None:
    async def answer(ctx: Ctx):
        entry = ctx.entry
        record = entry.record
        budget = None
        if record.budget_usd is not None:
            period_key, state = await proxy.budgets.state(record, ctx.ts)
            spend = state.spend_usd if state is not None else 0.0
            reserved = state.reserved_usd if state is not None else 0.0
            budget = {
                "budget_usd": record.budget_usd,
                "period": record.budget_period,
                "period_key": period_key,
                "spend_usd": spend,
                "reserved_usd": reserved,
                "remaining_usd": max(0.0, record.budget_usd - spend - reserved),
            }
        window = proxy.limits.window(record.id)
        body = {
            "key_id": record.id,
            "name": record.name,
            "project": record.project,
            "status": record.status,
            "models": list(record.models),
            "allowed_models": await proxy.catalog.names(entry),
            "rpm_limit": record.rpm_limit,
            "tpm_limit": record.tpm_limit,
            "max_parallel_requests": record.max_parallel_requests,
            "expires_at": record.expires_at,
            "budget": budget,
            "usage": {
                "requests_this_minute": window.used_req if window is not None else 0,
                "tokens_this_minute": window.used_tok if window is not None else 0,
                "in_flight": proxy.limits.inflight.get(record.id, 0),
                "scope": "this proxy replica",
            },
            "tags": list(record.tags),
        }
        return 200, _encode(body)

    await proxy.local(scope, receive, send, "openai", "/v1/key/info", answer)


ROUTES = {("GET", "/v1/key/info"): key_info}
