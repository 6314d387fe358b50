"""Request and response shapes of the admin REST API (msgspec structs; Litestar validates and
documents them). Unknown request fields are refused (422)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

# --- reusable constrained types ----------------------------------------------------------------
#: PostgreSQL text cannot hold NUL; refuse it at the edge rather than fail in the database.
_NO_NUL = r"^[^\x00]*$"
#: no NUL anywhere, at least one visible character
_NAME_PATTERN = r"^[^\x00]*[^\x00\s][^\x00]*$"
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=_NAME_PATTERN,
        description="Human-readable name",
        examples=["search-backend"],
    ),
]
Project = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=_NAME_PATTERN,
        description="Project the key belongs to (usage is grouped by it)",
        examples=["search"],
    ),
]
Tag = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[^\x00\s][^\x00]*$", examples=["team:search"])]
ModelPattern = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00\s]+$",
        description="An exact public model name or a glob (`*`, `?`, `[...]`), e.g. `gpt-4o*`",
        examples=["gpt-4o*"],
    ),
]
PositiveInt = Annotated[int, Meta(ge=1, le=2_147_483_647)]
BudgetUsd = Annotated[float, Meta(ge=0, le=1_000_000_000_000, description="USD; 0 blocks every paid request")]
BudgetPeriodT = Literal["daily", "weekly", "monthly"]
KeyStatusT = Literal["active", "revoked", "expired"]
ProviderName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Letters, digits, `_` and `-` (it becomes a NATS subject token)",
        examples=["openai"],
    ),
]
ProviderKindT = Literal["openai", "anthropic", "openai-compatible"]
RoleT = Literal["admin", "analyst"]


# --- virtual keys --------------------------------------------------------------------------------
class KeyCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    project: Project = "default"
    metadata: Annotated[dict[str, Any], Meta(description="Free-form JSON object (owner, ticket, …)")] = {}
    tags: Annotated[list[Tag], Meta(max_length=50)] = []
    models: Annotated[
        list[ModelPattern], Meta(max_length=500, description="Allowed models; empty or absent = every model")
    ] = []
    rpm_limit: PositiveInt | None = None
    tpm_limit: PositiveInt | None = None
    max_parallel_requests: PositiveInt | None = None
    budget_usd: BudgetUsd | None = None
    budget_period: BudgetPeriodT | None = None
    expires_at: Annotated[
        datetime | None, Meta(description="ISO 8601; without an offset it is taken as UTC; must be in the future")
    ] = None


class KeyUpdate(Struct, kw_only=True, forbid_unknown_fields=True):
    """PATCH: only the fields given change; ``null`` clears an optional field."""

    name: Name | UnsetType = UNSET
    project: Project | UnsetType = UNSET
    metadata: dict[str, Any] | UnsetType = UNSET
    tags: Annotated[list[Tag], Meta(max_length=50)] | UnsetType = UNSET
    models: Annotated[list[ModelPattern], Meta(max_length=500)] | UnsetType = UNSET
    rpm_limit: PositiveInt | None | UnsetType = UNSET
    tpm_limit: PositiveInt | None | UnsetType = UNSET
    max_parallel_requests: PositiveInt | None | UnsetType = UNSET
    budget_usd: BudgetUsd | None | UnsetType = UNSET
    budget_period: BudgetPeriodT | None | UnsetType = UNSET
    expires_at: datetime | None | UnsetType = UNSET


class KeyRotate(Struct, kw_only=True, forbid_unknown_fields=True):
    grace_seconds: Annotated[
        int, Meta(ge=0, le=30 * 24 * 3600, description="How long the old secret keeps working (0 = stops at once)")
    ] = 0


class KeyOut(Struct, kw_only=True):
    id: str
    name: str
    project: str
    prefix: Annotated[str, Meta(description="Non-secret start of the secret")]
    status: KeyStatusT
    metadata: dict[str, Any]
    tags: list[str]
    models: list[str]
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel_requests: int | None
    budget_usd: float | None
    budget_period: BudgetPeriodT | None
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None


class KeyWithSecret(KeyOut, kw_only=True):
    key: Annotated[str, Meta(description="The secret: shown once, store it now")]


class KeyList(Struct, kw_only=True):
    data: list[KeyOut]
    next_cursor: Annotated[str | None, Meta(description="Pass as `cursor` for the next page; null at the end")]


# --- providers -----------------------------------------------------------------------------------
class ProviderPut(Struct, kw_only=True, forbid_unknown_fields=True):
    kind: ProviderKindT
    base_url: Annotated[
        str,
        Meta(
            # (no min_length: the pattern already needs http(s):// and a host, and says so)
            max_length=2048,
            pattern=r"^https?://[^\s\x00/?#]+[^\s\x00]*$",
            description="openai/openai-compatible: with `/v1`; anthropic: without `/v1`",
        ),
    ]
    api_key: (
        Annotated[
            str, Meta(max_length=8192, pattern=_NO_NUL, description="Encrypted at rest; omitted = keep the current one")
        ]
        | UnsetType
    ) = UNSET


class ProviderOut(Struct, kw_only=True):
    name: str
    kind: ProviderKindT
    base_url: str
    api_key: Annotated[str, Meta(description="Masked (`sk-...abcd`); never the key itself")]
    source: Annotated[
        Literal["database", "environment"],
        Meta(description="`environment`: implicit provider from LLMGW_OPENAI_*/LLMGW_ANTHROPIC_*"),
    ]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ProviderList(Struct, kw_only=True):
    data: list[ProviderOut]


# --- routes --------------------------------------------------------------------------------------
class DeploymentIn(Struct, kw_only=True, forbid_unknown_fields=True):
    provider: ProviderName
    model: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=200,
            pattern=r"^[^\x00\s]+$",
            description="Upstream model name; `*` = the name the client asked for",
        ),
    ]
    weight: Annotated[int, Meta(ge=1, le=1_000_000)] = 1
    priority: Annotated[int, Meta(ge=0, le=1000, description="Lower is tried first")] = 0


class RouteIn(Struct, kw_only=True, forbid_unknown_fields=True):
    model: ModelPattern
    deployments: Annotated[list[DeploymentIn], Meta(min_length=1, max_length=100)]


class RoutesPut(Struct, kw_only=True, forbid_unknown_fields=True):
    data: Annotated[list[RouteIn], Meta(max_length=1000)]


class DeploymentOut(Struct, kw_only=True):
    provider: str
    model: str
    weight: int
    priority: int


class RouteOut(Struct, kw_only=True):
    model: str
    deployments: list[DeploymentOut]


class RouteList(Struct, kw_only=True):
    data: list[RouteOut]
    source: Annotated[
        Literal["configured", "default"],
        Meta(description="`default`: no table configured, the built-in defaults apply"),
    ]


# --- admin tokens --------------------------------------------------------------------------------
class AdminTokenCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    role: RoleT = "admin"


class AdminTokenOut(Struct, kw_only=True):
    id: str
    name: str
    role: RoleT
    prefix: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class AdminTokenWithSecret(AdminTokenOut, kw_only=True):
    token: Annotated[str, Meta(description="The bearer token: shown once")]


class AdminTokenList(Struct, kw_only=True):
    data: list[AdminTokenOut]


# --- audit ---------------------------------------------------------------------------------------
class AuditEntry(Struct, kw_only=True):
    id: int
    at: datetime
    actor: Annotated[str, Meta(description="Admin token id, `bootstrap`, or `system`")]
    action: str
    target_type: str
    target_id: str | None
    details: dict[str, Any]


class AuditList(Struct, kw_only=True):
    data: list[AuditEntry]
    next_cursor: str | None


# --- response cache (edge proxies' shared JetStream KV bucket) ---------------------------------------
class CacheStats(Struct, kw_only=True):
    bucket: str
    #: False until an edge proxy created the bucket
    exists: bool
    #: the project the counts are limited to, or null for the whole cache
    project: str | None = None
    #: stored answers (expired ones count until NATS removes them, at the latest after max_age_seconds)
    entries: int
    #: bytes in the bucket; null when limited to a project (NATS counts bytes per bucket only)
    bytes: int | None
    max_bytes: int | None = None
    max_age_seconds: float | None = None


class CachePurged(Struct, kw_only=True):
    bucket: str
    project: str | None = None
    #: entries removed
    purged: int


# --- misc ----------------------------------------------------------------------------------------
class ErrorBody(Struct, kw_only=True):
    type: str
    message: str


class ErrorResponse(Struct, kw_only=True):
    error: ErrorBody


class Health(Struct, kw_only=True, omit_defaults=True):
    status: str
    database: bool | None = None
    nats: bool | None = None


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)
