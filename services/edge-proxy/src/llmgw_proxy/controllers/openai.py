"""OpenAI-dialect routes (thin: each names its endpoint and hands the request to the pipeline)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import msgspec

from llmgw_proxy.domain import errors
from llmgw_proxy.domain.proxy import Ctx, Endpoint, ProxyService

CHAT_COMPLETIONS = Endpoint("/v1/chat/completions", "openai", needs_messages=True, inject_usage=True)
COMPLETIONS = Endpoint("/v1/completions", "openai", inject_usage=True)
EMBEDDINGS = Endpoint("/v1/embeddings", "openai", stream_mode=None, completion=False)
RESPONSES = Endpoint("/v1/responses", "openai", stream_mode="responses")

_encode = msgspec.json.Encoder().encode


async def chat_completions(proxy: ProxyService, scope, receive, send) -> None:
    await proxy.forward(scope, receive, send, CHAT_COMPLETIONS)


async def completions(proxy: ProxyService, scope, receive, send) -> None:
    await proxy.forward(scope, receive, send, COMPLETIONS)


async def embeddings(proxy: ProxyService, scope, receive, send) -> None:
    await proxy.forward(scope, receive, send, EMBEDDINGS)


async def responses(proxy: ProxyService, scope, receive, send) -> None:
    await proxy.forward(scope, receive, send, RESPONSES)


def _wants_anthropic(scope) -> bool:
    return any(name == b"anthropic-version" for name, _ in scope["headers"])


def _openai_model(model_id: str, owner: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owner}


def _anthropic_model(model_id: str) -> dict:
    return {"type": "model", "id": model_id, "display_name": model_id, "created_at": "1970-01-01T00:00:00Z"}


def anthropic_page(names: list[str], query: bytes) -> dict:
    """Anthropic's paginated listing: ``limit`` (1–1000, default 20), ``after_id`` / ``before_id``
    cursors, ``has_more``, ``first_id`` / ``last_id`` — what the anthropic SDK's auto-pagination walks."""
    params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    raw_limit = params.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise errors.bad_request("limit: must be an integer between 1 and 1000")
    limit = int(raw_limit)
    start, stop = 0, len(names)
    if params.get("after_id"):
        start = names.index(params["after_id"]) + 1 if params["after_id"] in names else len(names)
    if params.get("before_id"):
        stop = names.index(params["before_id"]) if params["before_id"] in names else 0
        start = max(start, stop - limit)
    page = names[start:min(stop, start + limit)]
    has_more = start + len(page) < stop if not params.get("before_id") else start > 0
    return {
        "data": [_anthropic_model(n) for n in page],
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


async def list_models(proxy: ProxyService, scope, receive, send) -> None:
    """Both dialects: Anthropic's shape when the request carries ``anthropic-version``."""
    anthropic = _wants_anthropic(scope)

    async def answer(ctx: Ctx):
        names = await proxy.catalog.names(ctx.entry)
        if anthropic:
            return 200, _encode(anthropic_page(names, scope.get("query_string") or b""))
        data = [_openai_model(n, proxy.catalog.provider_of(ctx.entry, n)) for n in names]
        return 200, _encode({"object": "list", "data": data})

    await proxy.local(scope, receive, send, "anthropic" if anthropic else "openai", "/v1/models", answer)


async def retrieve_model(proxy: ProxyService, scope, receive, send) -> None:
    anthropic = _wants_anthropic(scope)
    model_id = scope["path"][len("/v1/models/"):]

    async def answer(ctx: Ctx):
        owner = await proxy.catalog.owner(ctx.entry, model_id) if model_id else None
        if owner is None:
            raise errors.model_not_found(model_id)
        return 200, _encode(_anthropic_model(model_id) if anthropic else _openai_model(model_id, owner))

    await proxy.local(scope, receive, send, "anthropic" if anthropic else "openai", "/v1/models/{id}", answer)


async def passthrough(proxy: ProxyService, scope, receive, send) -> None:
    """Any other ``/v1/*`` path, forwarded as-is to the key's OpenAI provider (or its Anthropic one
    for ``/v1/messages/*`` and requests carrying ``anthropic-version``)."""
    path = scope["path"]
    dialect = "anthropic" if path.startswith("/v1/messages/") or _wants_anthropic(scope) else "openai"
    await proxy.forward(scope, receive, send, None, dialect)


ROUTES = {
    ("POST", "/v1/chat/completions"): chat_completions,
    ("POST", "/v1/completions"): completions,
    ("POST", "/v1/embeddings"): embeddings,
    ("POST", "/v1/responses"): responses,
    ("GET", "/v1/models"): list_models,
}

#: (method, path prefix) -> handler, tried after the exact routes
PREFIX_ROUTES = [(("GET", "/v1/models/"), retrieve_model)]
