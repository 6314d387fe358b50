"""``GET /v1/models`` and ``/v1/models/{id}``: only the models the caller's key may use.

Concrete names come from the route table (routes without glob characters) and from the key's
allow-list entries that have a route. Glob routes (``gpt-*``, ``*``) cannot be listed from the
table, so for them the proxy asks the route's providers for their own ``/v1/models`` (cached for
five minutes, failures for 30 s) and keeps the ids that route through that glob and that the key
may use. ``/v1/models/{id}`` answers 404 unless the key may use the id and a route serves it (for
a glob route: the provider lists it, or the provider's list is unavailable).
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from llmgw_common.contract import ProviderCredential
from llmgw_proxy.domain.auth.key_cache import KeyEntry
from llmgw_proxy.domain.routing import find_route
from llmgw_proxy.domain.upstream.client import UpstreamPool, upstream_headers

log = logging.getLogger(__name__)

TTL = 300.0
FAILURE_TTL = 30.0


class _Item(msgspec.Struct):
    id: str


class _List(msgspec.Struct):
    data: list[_Item] = []


_list_decoder = msgspec.json.Decoder(_List)


def _is_glob(name: str) -> bool:
    return any(ch in name for ch in "*?[")


class ModelCatalog:
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self._cache: dict[tuple[str, str], tuple[float, frozenset[str] | None]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def _provider_ids(self, provider: ProviderCredential) -> frozenset[str] | None:
        key = (provider.name, provider.base_url)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            ids: frozenset[str] | None = None
            try:
                headers = upstream_headers([], provider, "models-listing", None)
                resp = await asyncio.wait_for(self.pool.request(provider, "GET", "/v1/models", b"", headers, None), 5)
                try:
                    body = await asyncio.wait_for(resp.read(), 5)
                finally:
                    resp.close()
                if resp.status == 200:
                    ids = frozenset(item.id for item in _list_decoder.decode(body).data)
            except Exception as exc:  # noqa: BLE001 - listing is best effort
                log.info("could not list models of provider %s: %s", provider.name, type(exc).__name__)
            self._cache[key] = (time.monotonic() + (TTL if ids is not None else FAILURE_TTL), ids)
            return ids

    async def names(self, entry: KeyEntry) -> list[str]:
        names: set[str] = set()
        glob_routes = []
        for route in entry.routes:
            if _is_glob(route.model):
                glob_routes.append(route)
            elif any(d.provider in entry.providers for d in route.deployments):
                names.add(route.model)
        names.update(m for m in entry.allow_exact if find_route(entry, m) is not None)
        for route in glob_routes:
            for dep in route.deployments:
                provider = entry.providers.get(dep.provider)
                if provider is None or dep.model not in ("*", ""):
                    continue
                for model_id in await self._provider_ids(provider) or ():
                    if find_route(entry, model_id) is route:
                        names.add(model_id)
        return sorted(m for m in names if entry.model_allowed(m))

    async def owner(self, entry: KeyEntry, model_id: str) -> str | None:
        """The provider name serving ``model_id`` for this key, or None (→ 404)."""
        if not entry.model_allowed(model_id):
            return None
        route = find_route(entry, model_id)
        if route is None:
            return None
        for dep in route.deployments:
            provider = entry.providers.get(dep.provider)
            if provider is None:
                continue
            if not _is_glob(route.model) or dep.model not in ("*", ""):
                return provider.name
            ids = await self._provider_ids(provider)
            if ids is None or model_id in ids:
                return provider.name
        return None

    def provider_of(self, entry: KeyEntry, model_id: str) -> str:
        route = find_route(entry, model_id)
        if route is not None:
            for dep in route.deployments:
                if dep.provider in entry.providers:
                    return dep.provider
        return "llmgw"
