"""``/v1/cache``: stats and purge of the edge proxies' shared response cache (admin only)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from llmgw_keys.controllers.common import E401, E403, E422, E503, PrincipalDep, RuntimeDep, check_filter
from llmgw_keys.schemas import CachePurged, CacheStats
from llmgw_keys.services import response_cache as service

ProjectFilter = Annotated[str | None, Parameter(description="Limit to one project's entries (the key's `project`)")]


class CacheController(Controller):
    path = "/v1/cache"
    tags = ["response cache"]

    @get(
        "/",
        summary="Response cache stats",
        description=(
            "Entries and bytes in the edge proxies' shared response cache (JetStream KV bucket "
            "`llmgw_response_cache`), with the bucket's limits. `?project=` counts one project's "
            "entries (`bytes` is then null: NATS counts bytes per bucket). Entries past their TTL count "
            "until NATS drops them (at the latest after `max_age_seconds`)."
        ),
        responses={
            200: ResponseSpec(
                data_container=CacheStats,
                description="The cache's state",
                generate_examples=False,
                examples=[
                    Example(
                        summary="example",
                        value={
                            "bucket": "llmgw_response_cache",
                            "exists": True,
                            "project": None,
                            "entries": 1234,
                            "bytes": 5_678_901,
                            "max_bytes": 268_435_456,
                            "max_age_seconds": 3600.0,
                        },
                    )
                ],
            ),
            **E401,
            **E403,
            **E422,
            **E503,
        },
    )
    async def cache_stats(self, runtime: RuntimeDep, project: ProjectFilter = None) -> CacheStats:
        return await service.stats(runtime, check_filter(project, "project"))

    @delete(
        "/",
        status_code=200,
        summary="Purge the response cache",
        description=(
            "Removes every cached answer (or one project's with `?project=`) for all proxy replicas at "
            "once; the next identical requests go upstream again. Recorded in the audit log."
        ),
        responses={
            200: ResponseSpec(
                data_container=CachePurged,
                description="How many entries were removed",
                generate_examples=False,
                examples=[Example(summary="example", value={"bucket": "llmgw_response_cache", "project": None, "purged": 1234})],
            ),
            **E401,
            **E403,
            **E422,
            **E503,
        },
    )
    async def purge_cache(
        self, runtime: RuntimeDep, principal: PrincipalDep, project: ProjectFilter = None
    ) -> CachePurged:
        return await service.purge(runtime, principal, check_filter(project, "project"))
