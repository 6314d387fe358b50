"""initial schema: virtual keys, previous key hashes, providers, route table, admin tokens, audit log, event outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'analyst')", name=op.f("ck_admin_tokens_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_tokens_token_hash")),
        schema="keys",
    )
    op.create_index("ix_admin_tokens_created_at_id", "admin_tokens", ["created_at", "id"], unique=False, schema="keys")
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=True),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        schema="keys",
    )
    op.create_index("ix_audit_log_target", "audit_log", ["target_type", "target_id"], unique=False, schema="keys")
    op.create_table(
        "event_outbox",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_outbox")),
        schema="keys",
    )
    op.create_table(
        "providers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=True),
        sa.Column("api_key_hint", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('openai', 'anthropic', 'openai-compatible')", name=op.f("ck_providers_kind")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_providers")),
        schema="keys",
    )
    op.create_table(
        "route_table",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("routes", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_by", sa.Text(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_route_table_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_route_table")),
        schema="keys",
    )
    op.create_table(
        "virtual_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("project", sa.Text(), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("models", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("tpm_limit", sa.Integer(), nullable=True),
        sa.Column("max_parallel_requests", sa.Integer(), nullable=True),
        sa.Column("budget_usd", sa.Numeric(precision=20, scale=6), nullable=True),
        sa.Column("budget_period", sa.String(length=16), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "budget_period IS NULL OR budget_period IN ('daily', 'weekly', 'monthly')",
            name=op.f("ck_virtual_keys_budget_period"),
        ),
        sa.CheckConstraint("status IN ('active', 'revoked', 'expired')", name=op.f("ck_virtual_keys_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_virtual_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_virtual_keys_key_hash")),
        schema="keys",
    )
    op.create_index("ix_virtual_keys_created_at_id", "virtual_keys", ["created_at", "id"], unique=False, schema="keys")
    op.create_index(
        "ix_virtual_keys_expiry",
        "virtual_keys",
        ["expires_at"],
        unique=False,
        schema="keys",
        postgresql_where="status = 'active' AND expires_at IS NOT NULL",
    )
    op.create_index("ix_virtual_keys_project", "virtual_keys", ["project"], unique=False, schema="keys")
    op.create_index(
        "ix_virtual_keys_tags", "virtual_keys", ["tags"], unique=False, schema="keys", postgresql_using="gin"
    )
    op.create_table(
        "previous_key_hashes",
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("grace_until", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["keys.virtual_keys.id"],
            name=op.f("fk_previous_key_hashes_key_id_virtual_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_hash", name=op.f("pk_previous_key_hashes")),
        schema="keys",
    )
    op.create_index(
        op.f("ix_keys_previous_key_hashes_key_id"), "previous_key_hashes", ["key_id"], unique=False, schema="keys"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_keys_previous_key_hashes_key_id"), table_name="previous_key_hashes", schema="keys")
    op.drop_table("previous_key_hashes", schema="keys")
    op.drop_index("ix_virtual_keys_tags", table_name="virtual_keys", schema="keys", postgresql_using="gin")
    op.drop_index("ix_virtual_keys_project", table_name="virtual_keys", schema="keys")
    op.drop_index(
        "ix_virtual_keys_expiry",
        table_name="virtual_keys",
        schema="keys",
        postgresql_where="status = 'active' AND expires_at IS NOT NULL",
    )
    op.drop_index("ix_virtual_keys_created_at_id", table_name="virtual_keys", schema="keys")
    op.drop_table("virtual_keys", schema="keys")
    op.drop_table("route_table", schema="keys")
    op.drop_table("providers", schema="keys")
    op.drop_table("event_outbox", schema="keys")
    op.drop_index("ix_audit_log_target", table_name="audit_log", schema="keys")
    op.drop_table("audit_log", schema="keys")
    op.drop_index("ix_admin_tokens_created_at_id", table_name="admin_tokens", schema="keys")
    op.drop_table("admin_tokens", schema="keys")
