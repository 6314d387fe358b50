"""``/v1/routes``: the model routing table."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body

from llmgw_keys.controllers.common import E401, E403, E422, PrincipalDep, RuntimeDep
from llmgw_keys.schemas import RouteIn, RouteList, RoutesPut
from llmgw_keys.services import routes as service

_TABLE = {
    "data": [
        {
            "model": "gpt-4o",
            "deployments": [
                {"provider": "azure-east", "model": "gpt-4o", "weight": 3, "priority": 0},
                {"provider": "openai", "model": "gpt-4o", "weight": 1, "priority": 0},
                {"provider": "openai", "model": "gpt-4o-mini", "weight": 1, "priority": 1},
            ],
        },
        {"model": "claude-*", "deployments": [{"provider": "anthropic", "model": "*", "weight": 1, "priority": 0}]},
    ]
}
_DEFAULT = {
    "data": [
        {"model": "claude-*", "deployments": [{"provider": "anthropic", "model": "*", "weight": 1, "priority": 0}]},
        {"model": "*", "deployments": [{"provider": "openai", "model": "*", "weight": 1, "priority": 0}]},
    ],
    "source": "default",
}


class RoutesController(Controller):
    path = "/v1/routes"
    tags = ["routes"]

    @get(
        "/",
        summary="Get the routing table",
        description=(
            "The effective routing table: public model name (or glob) → deployments (provider, upstream "
            "model — `*` keeps the name the client asked for —, weight, priority: lower priority is tried "
            "first, weights balance within one priority). `source: default` when none is configured: "
            "`claude-*` → `anthropic`, everything else → `openai`."
        ),
        responses={
            200: ResponseSpec(
                data_container=RouteList,
                description="The routing table",
                generate_examples=False,
                examples=[
                    Example(summary="configured", value={**_TABLE, "source": "configured"}),
                    Example(summary="defaults", value=_DEFAULT),
                ],
            ),
            **E401,
            **E403,
        },
    )
    async def get_routes(self, runtime: RuntimeDep) -> RouteList:
        return await service.get_routes(runtime)

    @put(
        "/",
        summary="Replace the routing table",
        description=(
            'Replaces the whole table (body `{"data": [...]}`, or the bare list). Every deployment\'s '
            "provider must exist (422 otherwise); a model may appear once. An empty list restores the "
            "defaults. Publishes `KeyChanged(routes)`: proxies drop every cached answer."
        ),
        responses={
            200: ResponseSpec(
                data_container=RouteList,
                description="The stored table",
                generate_examples=False,
                examples=[Example(summary="configured", value={**_TABLE, "source": "configured"})],
            ),
            **E401,
            **E403,
            **E422,
        },
    )
    async def put_routes(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        data: Annotated[
            RoutesPut | list[RouteIn],
            Body(title="Routing table", examples=[Example(summary="load-balanced gpt-4o with fallback", value=_TABLE)]),
        ],
    ) -> RouteList:
        routes = data.data if isinstance(data, RoutesPut) else data
        return await service.put_routes(runtime, principal, routes)
