"""``/v1/keys``: virtual keys."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, delete, get, patch, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, FromPath, Parameter

from llmgw_keys.controllers.common import E401, E403, E404, E409, E422, PrincipalDep, RuntimeDep, check_filter
from llmgw_keys.schemas import KeyCreate, KeyList, KeyOut, KeyRotate, KeyUpdate, KeyWithSecret
from llmgw_keys.services import keys as service

_RECORD = {
    "id": "6f1c2a9e-3b7d-4c1e-9a55-0d2f8e41b7c3",
    "name": "search-backend",
    "project": "search",
    "prefix": "sk-llmgw-Xy3Zq",
    "status": "active",
    "metadata": {"owner": "alice@example.com"},
    "tags": ["team:search", "prod"],
    "models": ["gpt-4o*", "claude-3-5-sonnet-latest"],
    "rpm_limit": 600,
    "tpm_limit": 200000,
    "max_parallel_requests": 20,
    "budget_usd": 250.0,
    "budget_period": "monthly",
    "expires_at": "2027-01-01T00:00:00Z",
    "created_at": "2026-11-23T10:00:00Z",
    "updated_at": "2026-11-23T10:00:00Z",
    "revoked_at": None,
}
_SECRET = "sk-llmgw-Xy3ZqExampleOnlyNotARealSecretValue000"


def _ok(container, value, description: str) -> dict:
    return ResponseSpec(
        data_container=container,
        description=description,
        generate_examples=False,
        examples=[Example(summary="example", value=value)],
    )


class KeysController(Controller):
    path = "/v1/keys"
    tags = ["keys"]

    @post(
        "/",
        status_code=201,
        summary="Create a virtual key",
        description=(
            "Creates a key and returns its record plus the secret in `key`: it is shown this once and "
            "stored only as a hash. `models` entries are exact names or globs (`gpt-4o*`); absent or empty "
            "means every model. `expires_at` without an offset is UTC and must be in the future. "
            "Publishes a `KeyChanged(created)` event and writes an audit row."
        ),
        responses={
            201: _ok(KeyWithSecret, {**_RECORD, "key": _SECRET}, "The key, with its secret (shown once)"),
            **E401,
            **E403,
            **E422,
        },
    )
    async def create_key(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        data: Annotated[
            KeyCreate,
            Body(
                title="New key",
                examples=[
                    Example(summary="minimal", value={"name": "demo", "project": "default"}),
                    Example(
                        summary="everything",
                        value={
                            "name": "search-backend",
                            "project": "search",
                            "metadata": {"owner": "alice@example.com"},
                            "tags": ["team:search", "prod"],
                            "models": ["gpt-4o*", "claude-3-5-sonnet-latest"],
                            "rpm_limit": 600,
                            "tpm_limit": 200000,
                            "max_parallel_requests": 20,
                            "budget_usd": 250,
                            "budget_period": "monthly",
                            "expires_at": "2027-01-01T00:00:00Z",
                        },
                    ),
                ],
            ),
        ],
    ) -> KeyWithSecret:
        return await service.create_key(runtime, principal, data)

    @get(
        "/",
        summary="List virtual keys",
        description=(
            "Keys in a stable order (creation time, then id), `limit` per page (1–1000, default 50). "
            "Pass the returned `next_cursor` as `cursor` for the next page; it is null on the last page. "
            "Filters: `project`, `status` (`active|revoked|expired`, computed now), `tag`. "
            "Secrets are never returned, only their `prefix`. Admins and analysts."
        ),
        responses={
            200: _ok(
                KeyList,
                {"data": [_RECORD], "next_cursor": "WyIyMDI2LTExLTIzVDEwOjAwOjAwKzAwOjAwIiwiNmYxYyJd"},
                "A page of keys",
            ),
            **E401,
            **E422,
        },
    )
    async def list_keys(
        self,
        runtime: RuntimeDep,
        project: Annotated[str | None, Parameter(description="Only keys of this project")] = None,
        status: Annotated[
            Literal["active", "revoked", "expired"] | None, Parameter(description="Only keys in this status")
        ] = None,
        tag: Annotated[str | None, Parameter(description="Only keys carrying this tag")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size")] = 50,
        cursor: Annotated[str | None, Parameter(description="`next_cursor` of the previous page")] = None,
    ) -> KeyList:
        return await service.list_keys(
            runtime,
            project=check_filter(project, "project"),
            status=status,
            tag=check_filter(tag, "tag"),
            limit=limit,
            cursor=check_filter(cursor, "cursor", 1000),
        )

    @get(
        "/{key_id:str}",
        summary="Get a virtual key",
        description='One key by id. A revoked key still reads back, with `status: "revoked"`. Admins and analysts.',
        responses={200: _ok(KeyOut, _RECORD, "The key"), **E401, **E404},
    )
    async def get_key(self, runtime: RuntimeDep, key_id: FromPath[str]) -> KeyOut:
        return await service.get_key(runtime, key_id)

    @patch(
        "/{key_id:str}",
        summary="Update a virtual key",
        description=(
            "Partial update: only the fields present change; `null` clears an optional field "
            "(`rpm_limit`, `tpm_limit`, `max_parallel_requests`, `budget_usd`, `budget_period`, `expires_at`). "
            "Moving `expires_at` into the future re-activates an expired key. A revoked key cannot be "
            "changed (409). Publishes `KeyChanged(updated)` with every hash of the key."
        ),
        responses={
            200: _ok(KeyOut, {**_RECORD, "rpm_limit": None, "updated_at": "2026-11-23T11:00:00Z"}, "The updated key"),
            **E401,
            **E403,
            **E404,
            **E409,
            **E422,
        },
    )
    async def update_key(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        key_id: FromPath[str],
        data: Annotated[
            KeyUpdate,
            Body(
                title="Changes",
                examples=[
                    Example(summary="raise a limit, clear another", value={"rpm_limit": 1200, "tpm_limit": None}),
                    Example(summary="narrow the models", value={"models": ["gpt-4o-mini"]}),
                ],
            ),
        ],
    ) -> KeyOut:
        return await service.update_key(runtime, principal, key_id, data)

    @post(
        "/{key_id:str}/rotate",
        status_code=200,
        summary="Rotate a virtual key's secret",
        description=(
            "Issues a new secret (returned once in `key`). The old secret stops working at once, or after "
            "`grace_seconds` (0–2592000) if given; the body is optional. Concurrent rotations of one key are "
            "serialised (row lock): each returns a distinct secret and only the last one stays current. "
            "A revoked key cannot be rotated (409). Publishes `KeyChanged(rotated)`."
        ),
        responses={
            200: _ok(
                KeyWithSecret,
                {**_RECORD, "prefix": "sk-llmgw-Pq8Rt", "key": "sk-llmgw-Pq8RtExampleOnly000000000000000000000"},
                "The key with its new secret (shown once)",
            ),
            **E401,
            **E403,
            **E404,
            **E409,
            **E422,
        },
    )
    async def rotate_key(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        key_id: FromPath[str],
        data: Annotated[
            KeyRotate | None,
            Body(
                title="Rotation options",
                examples=[
                    Example(summary="old secret stops at once", value={}),
                    Example(summary="old secret works one more hour", value={"grace_seconds": 3600}),
                ],
            ),
        ] = None,
    ) -> KeyWithSecret:
        return await service.rotate_key(runtime, principal, key_id, data or KeyRotate())

    @delete(
        "/{key_id:str}",
        status_code=204,
        summary="Revoke a virtual key",
        description=(
            "Soft delete: sets `revoked_at`; the key reads back as `revoked` and none of its secrets ever "
            "authenticates again (it cannot be re-activated). Idempotent. Publishes `KeyChanged(revoked)`."
        ),
        responses={**E401, **E403, **E404},
    )
    async def revoke_key(self, runtime: RuntimeDep, principal: PrincipalDep, key_id: FromPath[str]) -> None:
        await service.revoke_key(runtime, principal, key_id)
