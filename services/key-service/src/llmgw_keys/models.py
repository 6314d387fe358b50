"""SQLAlchemy models: everything lives in the Postgres schema ``keys``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA = "keys"

naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(schema=SCHEMA, naming_convention=naming_convention)


class VirtualKey(Base):
    __tablename__ = "virtual_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    project: Mapped[str] = mapped_column(Text)
    #: non-secret start of the secret, so admins recognise a key in a list
    prefix: Mapped[str] = mapped_column(String(32))
    #: ``hash_secret(secret)`` of the current secret; the secret itself is never stored
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``active`` until revoked or (marked by the expiry task) expired; reads compute it afresh
    status: Mapped[str] = mapped_column(String(16), default="active")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    models: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    max_parallel_requests: Mapped[int | None] = mapped_column(Integer)
    budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    budget_period: Mapped[str | None] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_virtual_keys_created_at_id", "created_at", "id"),
        Index("ix_virtual_keys_project", "project"),
        Index("ix_virtual_keys_tags", "tags", postgresql_using="gin"),
        Index("ix_virtual_keys_expiry", "expires_at", postgresql_where="status = 'active' AND expires_at IS NOT NULL"),
        CheckConstraint("status IN ('active', 'revoked', 'expired')", name="status"),
        CheckConstraint(
            "budget_period IS NULL OR budget_period IN ('daily', 'weekly', 'monthly')", name="budget_period"
        ),
    )


class PreviousKeyHash(Base):
    """A secret a key had before a rotation: kept so events name every hash a proxy may have cached,
    and so a secret rotated away with a grace period keeps working until ``grace_until``."""

    __tablename__ = "previous_key_hashes"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(ForeignKey("virtual_keys.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32))
    rotated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    #: accepted until then (equal to ``rotated_at`` when the rotation gave no grace)
    grace_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Provider(Base):
    __tablename__ = "providers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str] = mapped_column(Text)
    #: Fernet token of the API key (MultiFernet: the first LLMGW_ENCRYPTION_KEY encrypts)
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    #: masked form for listings (``sk-...abcd``); the full key is never stored in clear
    api_key_hint: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("kind IN ('openai', 'anthropic', 'openai-compatible')", name="kind"),)


class RouteTable(Base):
    """The routing table, as one row: absent = never configured (seed it / use the defaults)."""

    __tablename__ = "route_table"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    routes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_by: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class AdminToken(Base):
    __tablename__ = "admin_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_by: Mapped[str] = mapped_column(Text, default="")
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("role IN ('admin', 'analyst')", name="role"),
        Index("ix_admin_tokens_created_at_id", "created_at", "id"),
    )


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    #: admin token id, ``bootstrap``, or ``system`` (expiry task, seeding)
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(Text)
    #: what changed, never a secret
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)

    __table_args__ = (Index("ix_audit_log_target", "target_type", "target_id"),)


class Outbox(Base):
    """Key-change events written in the mutation's transaction, deleted once JetStream has them."""

    __tablename__ = "event_outbox"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
