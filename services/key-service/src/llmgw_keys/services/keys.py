"""Virtual keys: create, list, read, update, rotate, revoke (and the data the lookup answers)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from llmgw_common import contract
from llmgw_common.contract import hash_secret
from sqlalchemy import and_, bindparam, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from llmgw_keys.errors import Conflict, Invalid, NotFound
from llmgw_keys.models import PreviousKeyHash, VirtualKey
from llmgw_keys.runtime import Principal, Runtime, Tx
from llmgw_keys.schemas import KeyCreate, KeyList, KeyOut, KeyRotate, KeyUpdate, KeyWithSecret
from llmgw_keys.services import audit
from llmgw_keys.util import (
    as_utc,
    check_json_value,
    check_path_id,
    decode_cursor,
    dedupe,
    encode_cursor,
    new_id,
    utcnow,
)

SECRET_PREFIX = "sk-llmgw-"
#: "sk-llmgw-" plus 5 random characters: recognisable, useless to an attacker
PREFIX_LENGTH = 14


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def key_status(row: VirtualKey, now: datetime | None = None) -> str:
    if row.revoked_at is not None:
        return "revoked"
    now = now or utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def to_out(row: VirtualKey, now: datetime | None = None) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        project=row.project,
        prefix=row.prefix,
        status=key_status(row, now),
        metadata=row.meta or {},
        tags=list(row.tags or []),
        models=list(row.models or []),
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        max_parallel_requests=row.max_parallel_requests,
        budget_usd=_float(row.budget_usd),
        budget_period=row.budget_period,
        expires_at=row.expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        revoked_at=row.revoked_at,
    )


def to_record(row: VirtualKey, grace_until: datetime | None = None, now: datetime | None = None) -> contract.KeyRecord:
    """The lookup-reply form of a key."""
    return contract.KeyRecord(
        id=row.id,
        name=row.name,
        project=row.project,
        status=key_status(row, now),
        models=list(row.models or []),
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        max_parallel_requests=row.max_parallel_requests,
        budget_usd=_float(row.budget_usd),
        budget_period=row.budget_period,
        expires_at=row.expires_at,
        metadata=row.meta or {},
        tags=list(row.tags or []),
        grace_until=grace_until,
    )


def _budget(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(float(value)))


async def all_hashes(session: AsyncSession, row: VirtualKey) -> list[str]:
    """The current hash and every previous one: what any proxy may have cached for this key."""
    previous = (
        (await session.execute(select(PreviousKeyHash.key_hash).where(PreviousKeyHash.key_id == row.id)))
        .scalars()
        .all()
    )
    return [row.key_hash, *previous]


async def _get_for_update(session: AsyncSession, key_id: str) -> VirtualKey:
    check_path_id(key_id)
    row = (
        await session.execute(select(VirtualKey).where(VirtualKey.id == key_id).with_for_update())
    ).scalar_one_or_none()
    if row is None:
        raise NotFound("key not found")
    return row


# --- create ------------------------------------------------------------------------------------
async def create_key(runtime: Runtime, principal: Principal, data: KeyCreate) -> KeyWithSecret:
    check_json_value(data.metadata, "metadata")
    expires_at = as_utc(data.expires_at)
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise Invalid("expires_at: must be in the future")
    secret = new_secret()
    row = VirtualKey(
        id=new_id(),
        name=data.name,
        project=data.project,
        prefix=secret[:PREFIX_LENGTH],
        key_hash=hash_secret(secret),
        status="active",
        meta=data.metadata,
        tags=dedupe(data.tags),
        models=dedupe(data.models),
        rpm_limit=data.rpm_limit,
        tpm_limit=data.tpm_limit,
        max_parallel_requests=data.max_parallel_requests,
        budget_usd=_budget(data.budget_usd),
        budget_period=data.budget_period,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
    )
    async with runtime.transaction() as tx:
        tx.session.add(row)
        await tx.session.flush()
        audit.record(tx.session, principal.id, "key.created", "key", row.id, _describe(row))
        tx.emit(contract.KeyChanged(action="created", key_id=row.id, key_hashes=[row.key_hash]))
    out = to_out(row, now)
    return KeyWithSecret(**msgspec.structs.asdict(out), key=secret)


def _describe(row: VirtualKey) -> dict[str, Any]:
    """Audit details of a key: its settings, never a secret or hash."""
    return {
        "name": row.name,
        "project": row.project,
        "prefix": row.prefix,
        "models": list(row.models or []),
        "tags": list(row.tags or []),
        "rpm_limit": row.rpm_limit,
        "tpm_limit": row.tpm_limit,
        "max_parallel_requests": row.max_parallel_requests,
        "budget_usd": _float(row.budget_usd),
        "budget_period": row.budget_period,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
    }


# --- read ----------------------------------------------------------------------------------------
async def get_key(runtime: Runtime, key_id: str) -> KeyOut:
    check_path_id(key_id)
    async with runtime.session_factory() as session:
        row = await session.get(VirtualKey, key_id)
    if row is None:
        raise NotFound("key not found")
    return to_out(row)


async def list_keys(
    runtime: Runtime,
    *,
    project: str | None,
    status: str | None,
    tag: str | None,
    limit: int,
    cursor: str | None,
) -> KeyList:
    now = utcnow()
    query = select(VirtualKey)
    if project is not None:
        query = query.where(VirtualKey.project == project)
    if tag is not None:
        query = query.where(VirtualKey.tags.contains([tag]))
    if status == "revoked":
        query = query.where(VirtualKey.revoked_at.is_not(None))
    elif status == "expired":
        query = query.where(VirtualKey.revoked_at.is_(None), VirtualKey.expires_at <= now)
    elif status == "active":
        query = query.where(
            VirtualKey.revoked_at.is_(None), or_(VirtualKey.expires_at.is_(None), VirtualKey.expires_at > now)
        )
    if cursor:
        created_iso, last_id = decode_cursor(cursor, (str, str))
        try:
            created = as_utc(datetime.fromisoformat(created_iso))
        except ValueError:
            raise Invalid("cursor: not a cursor this API returned") from None
        query = query.where(tuple_(VirtualKey.created_at, VirtualKey.id) > tuple_(created, last_id))
    query = query.order_by(VirtualKey.created_at, VirtualKey.id).limit(limit + 1)
    async with runtime.session_factory() as session:
        rows = (await session.execute(query)).scalars().all()
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = encode_cursor([last.created_at.isoformat(), last.id])
    return KeyList(data=[to_out(row, now) for row in page], next_cursor=next_cursor)


# --- update --------------------------------------------------------------------------------------
UPDATABLE = (
    "name",
    "project",
    "metadata",
    "tags",
    "models",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "budget_usd",
    "budget_period",
    "expires_at",
)


async def update_key(runtime: Runtime, principal: Principal, key_id: str, data: KeyUpdate) -> KeyOut:
    given = {name: getattr(data, name) for name in UPDATABLE if getattr(data, name) is not msgspec.UNSET}
    if "metadata" in given:
        if given["metadata"] is None:
            raise Invalid("metadata: must be an object")
        check_json_value(given["metadata"], "metadata")
    async with runtime.transaction() as tx:
        row = await _get_for_update(tx.session, key_id)
        if row.revoked_at is not None:
            raise Conflict("key is revoked; a revoked key cannot be changed or re-activated")
        if not given:
            # nothing to change: a read — no write, no audit entry, no key-change event (every
            # proxy would drop its cached entry for nothing)
            return to_out(row)
        now = utcnow()
        changes: dict[str, Any] = {}
        for name, value in given.items():
            if name == "metadata":
                row.meta = value
                changes["metadata"] = "(changed)"
                continue
            if name in ("tags", "models"):
                value = dedupe(value)
            elif name == "budget_usd":
                value = _budget(value)
            elif name == "expires_at":
                value = as_utc(value)
            setattr(row, name, value)
            changes[name] = (
                float(value)
                if isinstance(value, Decimal)
                else (value.isoformat() if isinstance(value, datetime) else value)
            )
        # Extending the expiry of an expired key re-activates it; moving it into the past expires it.
        row.status = "expired" if row.expires_at is not None and row.expires_at <= now else "active"
        row.updated_at = now
        await tx.session.flush()
        audit.record(tx.session, principal.id, "key.updated", "key", row.id, {"changes": changes})
        tx.emit(contract.KeyChanged(action="updated", key_id=row.id, key_hashes=await all_hashes(tx.session, row)))
    return to_out(row)


# --- rotate --------------------------------------------------------------------------------------
async def rotate_key(runtime: Runtime, principal: Principal, key_id: str, data: KeyRotate) -> KeyWithSecret:
    """New secret; the old one stops at once, or after ``grace_seconds``.

    The row is locked (``SELECT … FOR UPDATE``) for the whole transaction, so concurrent
    rotations of one key run one after the other: each moves the then-current secret to the
    previous hashes and installs its own; none is lost, and exactly one secret is current.
    """
    secret = new_secret()
    async with runtime.transaction() as tx:
        row = await _get_for_update(tx.session, key_id)
        if row.revoked_at is not None:
            raise Conflict("key is revoked; a revoked key cannot be rotated")
        now = utcnow()
        grace_until = now + timedelta(seconds=data.grace_seconds)
        tx.session.add(
            PreviousKeyHash(
                key_hash=row.key_hash, key_id=row.id, prefix=row.prefix, rotated_at=now, grace_until=grace_until
            )
        )
        old_prefix = row.prefix
        row.key_hash = hash_secret(secret)
        row.prefix = secret[:PREFIX_LENGTH]
        row.updated_at = now
        await tx.session.flush()
        audit.record(
            tx.session,
            principal.id,
            "key.rotated",
            "key",
            row.id,
            {"old_prefix": old_prefix, "new_prefix": row.prefix, "grace_seconds": data.grace_seconds},
        )
        tx.emit(contract.KeyChanged(action="rotated", key_id=row.id, key_hashes=await all_hashes(tx.session, row)))
    out = to_out(row)
    return KeyWithSecret(**msgspec.structs.asdict(out), key=secret)


# --- revoke --------------------------------------------------------------------------------------
async def revoke_key(runtime: Runtime, principal: Principal, key_id: str) -> None:
    """Soft delete: the row stays (reads back as ``revoked``), no secret of it authenticates again.
    Revoking a revoked key is a no-op (DELETE is idempotent)."""
    async with runtime.transaction() as tx:
        row = await _get_for_update(tx.session, key_id)
        if row.revoked_at is not None:
            return
        now = utcnow()
        row.revoked_at = now
        row.status = "revoked"
        row.updated_at = now
        await tx.session.flush()
        audit.record(tx.session, principal.id, "key.revoked", "key", row.id, {"prefix": row.prefix})
        tx.emit(contract.KeyChanged(action="revoked", key_id=row.id, key_hashes=await all_hashes(tx.session, row)))


# --- expiry --------------------------------------------------------------------------------------
async def expire_due(tx: Tx) -> list[str]:
    """Mark keys whose ``expires_at`` passed and announce them. Safe from many replicas at once
    (the conditional UPDATE takes each row exactly once)."""
    now = utcnow()
    rows = (
        (
            await tx.session.execute(
                select(VirtualKey)
                .where(
                    and_(
                        VirtualKey.status == "active",
                        VirtualKey.revoked_at.is_(None),
                        VirtualKey.expires_at.is_not(None),
                        VirtualKey.expires_at <= now,
                    )
                )
                .limit(500)
                .with_for_update(skip_locked=True)
            )
        )
        .scalars()
        .all()
    )
    for row in rows:
        row.status = "expired"
        audit.record(tx.session, "system", "key.expired", "key", row.id, {"expires_at": row.expires_at.isoformat()})
        tx.emit(contract.KeyChanged(action="expired", key_id=row.id, key_hashes=await all_hashes(tx.session, row)))
    return [row.id for row in rows]


# --- lookup --------------------------------------------------------------------------------------
# Built once: the lookup responder runs these on every cold key lookup (building the statement
# per call cost about as much as executing it).
_BY_HASH = select(VirtualKey).where(VirtualKey.key_hash == bindparam("key_hash"))
_BY_PREVIOUS_HASH = (
    select(PreviousKeyHash, VirtualKey)
    .join(VirtualKey, VirtualKey.id == PreviousKeyHash.key_id)
    .where(PreviousKeyHash.key_hash == bindparam("key_hash"))
)


async def find_by_hash(session: AsyncSession, key_hash: str) -> tuple[VirtualKey, datetime | None] | None:
    """The key a secret hash belongs to, with ``grace_until`` when it is a rotated-away secret
    still inside its grace period. ``None``: unknown (or rotated away and past its grace)."""
    params = {"key_hash": key_hash}
    row = (await session.execute(_BY_HASH, params)).scalar_one_or_none()
    if row is not None:
        return row, None
    found = (await session.execute(_BY_PREVIOUS_HASH, params)).first()
    if found is None:
        return None
    previous, row = found
    if previous.grace_until > utcnow():
        return row, previous.grace_until
    return None
