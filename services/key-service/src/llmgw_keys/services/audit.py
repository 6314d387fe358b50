"""The audit log: one row per mutation, written in the mutation's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from llmgw_keys.models import AuditLog
from llmgw_keys.schemas import AuditEntry, AuditList
from llmgw_keys.util import decode_cursor, encode_cursor


def record(
    session: AsyncSession,
    actor: str,
    action: str,
    target_type: str,
    target_id: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Never put a secret in ``details``: they are read back by admins and exported."""
    session.add(
        AuditLog(actor=actor, action=action, target_type=target_type, target_id=target_id, details=details or {})
    )


async def list_entries(
    session: AsyncSession,
    *,
    limit: int,
    cursor: str | None,
    target_id: str | None = None,
    action: str | None = None,
    actor: str | None = None,
) -> AuditList:
    """Newest first; the cursor is the last id seen."""
    query = select(AuditLog)
    if target_id is not None:
        query = query.where(AuditLog.target_id == target_id)
    if action is not None:
        query = query.where(AuditLog.action == action)
    if actor is not None:
        query = query.where(AuditLog.actor == actor)
    if cursor:
        (last_id,) = decode_cursor(cursor, (int,))
        query = query.where(AuditLog.id < last_id)
    rows = (await session.execute(query.order_by(AuditLog.id.desc()).limit(limit + 1))).scalars().all()
    page = rows[:limit]
    next_cursor = encode_cursor([page[-1].id]) if len(rows) > limit else None
    return AuditList(
        data=[
            AuditEntry(
                id=row.id,
                at=row.at,
                actor=row.actor,
                action=row.action,
                target_type=row.target_type,
                target_id=row.target_id,
                details=row.details,
            )
            for row in page
        ],
        next_cursor=next_cursor,
    )
