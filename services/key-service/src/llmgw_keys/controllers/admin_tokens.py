"""``/v1/admin-tokens``: bearer tokens for admins and analysts."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath

from llmgw_keys.controllers.common import E401, E403, E404, E422, PrincipalDep, RuntimeDep
from llmgw_keys.schemas import AdminTokenCreate, AdminTokenList, AdminTokenWithSecret
from llmgw_keys.services import admin_tokens as service

_TOKEN = {
    "id": "0b7f3c52-9d0e-4f7a-8d0c-5e1a2b3c4d5e",
    "name": "grafana",
    "role": "analyst",
    "prefix": "llmgw-at-Ab3dE",
    "created_at": "2026-11-23T10:00:00Z",
    "created_by": "bootstrap",
    "revoked_at": None,
}


class AdminTokensController(Controller):
    path = "/v1/admin-tokens"
    tags = ["admin tokens"]

    @post(
        "/",
        status_code=201,
        summary="Create an admin or analyst token",
        description=(
            "Returns the token once in `token` (stored as a hash). `role`: `admin` (everything) or "
            "`analyst` (usage in metering; read-only keys here). Metering verifies these tokens over NATS."
        ),
        responses={
            201: ResponseSpec(
                data_container=AdminTokenWithSecret,
                description="The token (shown once)",
                generate_examples=False,
                examples=[
                    Example(
                        summary="example", value={**_TOKEN, "token": "llmgw-at-Ab3dEExampleOnly0000000000000000000"}
                    )
                ],
            ),
            **E401,
            **E403,
            **E422,
        },
    )
    async def create_token(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        data: Annotated[
            AdminTokenCreate,
            Body(
                title="New token", examples=[Example(summary="analyst", value={"name": "grafana", "role": "analyst"})]
            ),
        ],
    ) -> AdminTokenWithSecret:
        return await service.create_token(runtime, principal, data)

    @get(
        "/",
        summary="List admin tokens",
        description="Every API-created token (revoked ones with `revoked_at`); never the token itself.",
        responses={
            200: ResponseSpec(
                data_container=AdminTokenList,
                description="The tokens",
                generate_examples=False,
                examples=[Example(summary="example", value={"data": [_TOKEN]})],
            ),
            **E401,
            **E403,
        },
    )
    async def list_tokens(self, runtime: RuntimeDep) -> AdminTokenList:
        return await service.list_tokens(runtime)

    @delete(
        "/{token_id:str}",
        status_code=204,
        summary="Revoke an admin token",
        description="The token stops working at once here; metering may accept it for its short verification cache.",
        responses={**E401, **E403, **E404},
    )
    async def revoke_token(self, runtime: RuntimeDep, principal: PrincipalDep, token_id: FromPath[str]) -> None:
        await service.revoke_token(runtime, principal, token_id)
