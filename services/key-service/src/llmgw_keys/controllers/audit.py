"""``/v1/audit``: who changed what, when."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from llmgw_keys.controllers.common import E401, E403, E422, RuntimeDep, check_filter
from llmgw_keys.schemas import AuditList
from llmgw_keys.services import audit as service


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["audit"]

    @get(
        "/",
        summary="Read the audit log",
        description=(
            "Every mutation, newest first: `actor` (admin token id, `bootstrap`, or `system` for expiry and "
            "seeding), `action` (e.g. `key.created`, `key.rotated`, `provider.updated`, `routes.replaced`), "
            "target and details (never secrets). Paginated like the key list."
        ),
        responses={
            200: ResponseSpec(
                data_container=AuditList,
                description="A page of audit entries",
                generate_examples=False,
                examples=[
                    Example(
                        summary="example",
                        value={
                            "data": [
                                {
                                    "id": 42,
                                    "at": "2026-11-23T10:00:00Z",
                                    "actor": "bootstrap",
                                    "action": "key.rotated",
                                    "target_type": "key",
                                    "target_id": "6f1c2a9e-3b7d-4c1e-9a55-0d2f8e41b7c3",
                                    "details": {
                                        "old_prefix": "sk-llmgw-Xy3Zq",
                                        "new_prefix": "sk-llmgw-Pq8Rt",
                                        "grace_seconds": 0,
                                    },
                                }
                            ],
                            "next_cursor": None,
                        },
                    )
                ],
            ),
            **E401,
            **E403,
            **E422,
        },
    )
    async def list_audit(
        self,
        runtime: RuntimeDep,
        target_id: Annotated[str | None, Parameter(description="Only entries about this object")] = None,
        action: Annotated[str | None, Parameter(description="Only this action")] = None,
        actor: Annotated[str | None, Parameter(description="Only this actor")] = None,
        limit: Annotated[int, Parameter(ge=1, le=1000, description="Page size")] = 50,
        cursor: Annotated[str | None, Parameter(description="`next_cursor` of the previous page")] = None,
    ) -> AuditList:
        async with runtime.session_factory() as session:
            return await service.list_entries(
                session,
                limit=limit,
                cursor=check_filter(cursor, "cursor", 1000),
                target_id=check_filter(target_id, "target_id"),
                action=check_filter(action, "action"),
                actor=check_filter(actor, "actor"),
            )
