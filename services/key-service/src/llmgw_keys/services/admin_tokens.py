"""Admin/analyst bearer tokens created through the API (stored hashed), and caller authentication."""

from __future__ import annotations

import hmac
import logging
import secrets

import msgspec
from llmgw_common.contract import SUBJECT_AUTH_CHANGED, AuthTokenRevoked, encode, hash_secret
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from llmgw_keys.errors import NotFound
from llmgw_keys.models import AdminToken
from llmgw_keys.runtime import Principal, Runtime
from llmgw_keys.schemas import AdminTokenCreate, AdminTokenList, AdminTokenOut, AdminTokenWithSecret
from llmgw_keys.services import audit
from llmgw_keys.util import check_path_id, new_id, utcnow

log = logging.getLogger(__name__)

TOKEN_PREFIX = "llmgw-at-"
PREFIX_LENGTH = 14


def _out(row: AdminToken) -> AdminTokenOut:
    return AdminTokenOut(
        id=row.id,
        name=row.name,
        role=row.role,
        prefix=row.prefix,
        created_at=row.created_at,
        created_by=row.created_by,
        revoked_at=row.revoked_at,
    )


async def create_token(runtime: Runtime, principal: Principal, data: AdminTokenCreate) -> AdminTokenWithSecret:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = AdminToken(
        id=new_id(),
        name=data.name,
        role=data.role,
        token_hash=hash_secret(token),
        prefix=token[:PREFIX_LENGTH],
        created_at=utcnow(),
        created_by=principal.id,
    )
    async with runtime.transaction() as tx:
        tx.session.add(row)
        await tx.session.flush()
        audit.record(
            tx.session,
            principal.id,
            "admin_token.created",
            "admin_token",
            row.id,
            {"name": row.name, "role": row.role, "prefix": row.prefix},
        )
    return AdminTokenWithSecret(**msgspec.structs.asdict(_out(row)), token=token)


async def list_tokens(runtime: Runtime) -> AdminTokenList:
    async with runtime.session_factory() as session:
        rows = (
            (await session.execute(select(AdminToken).order_by(AdminToken.created_at, AdminToken.id))).scalars().all()
        )
    return AdminTokenList(data=[_out(row) for row in rows])


async def revoke_token(runtime: Runtime, principal: Principal, token_id: str) -> None:
    check_path_id(token_id, "admin token")
    async with runtime.transaction() as tx:
        row = (
            await tx.session.execute(select(AdminToken).where(AdminToken.id == token_id).with_for_update())
        ).scalar_one_or_none()
        if row is None:
            raise NotFound("admin token not found")
        if row.revoked_at is not None:
            return
        row.revoked_at = utcnow()
        token_hash = row.token_hash
        audit.record(tx.session, principal.id, "admin_token.revoked", "admin_token", row.id, {"prefix": row.prefix})
    # Committed: tell the services that cache verifications (metering) to forget this token now.
    # Best effort — a service that misses it (disconnected) drops its whole cache on reconnect, and
    # its cache entries expire anyway.
    nc = runtime.nc
    if nc is not None and nc.is_connected:
        try:
            await nc.publish(SUBJECT_AUTH_CHANGED, encode(AuthTokenRevoked(token_hash=token_hash)))
        except Exception as exc:  # noqa: BLE001 - the revocation itself is committed
            log.warning("could not announce an admin token revocation: %s", type(exc).__name__)


async def find_active(session: AsyncSession, token_hash: str) -> AdminToken | None:
    return (
        await session.execute(
            select(AdminToken).where(AdminToken.token_hash == token_hash, AdminToken.revoked_at.is_(None))
        )
    ).scalar_one_or_none()


async def authenticate(runtime: Runtime, token: str) -> Principal | None:
    """The bootstrap token (constant-time compare) or an active API token (by hash)."""
    if not token:
        return None
    if runtime.bootstrap_token and hmac.compare_digest(token.encode(), runtime.bootstrap_token.encode()):
        return Principal(id="bootstrap", role="admin")
    async with runtime.session_factory() as session:
        row = await find_active(session, hash_secret(token))
    if row is None:
        return None
    return Principal(id=row.id, role=row.role)
