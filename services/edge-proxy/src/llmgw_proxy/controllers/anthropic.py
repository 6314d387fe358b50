"""Anthropic-dialect routes."""

from __future__ import annotations

from llmgw_proxy.domain.proxy import Endpoint, ProxyService

MESSAGES = Endpoint("/v1/messages", "anthropic", needs_messages=True, stream_mode="anthropic")
COUNT_TOKENS = Endpoint("/v1/messages/count_tokens", "anthropic", needs_messages=True, stream_mode=None, priced=False)


async def messages(proxy: ProxyService, scope, receive, send) -> None:
    await proxy.forward(scope, receive, send, MESSAGES)


async def count_tokens(proxy: ProxyService, scope, receive, send) -> None:
    await proxy.forward(scope, receive, send, COUNT_TOKENS)


ROUTES = {
    ("POST", "/v1/messages"): messages,
    ("POST", "/v1/messages/count_tokens"): count_tokens,
}
