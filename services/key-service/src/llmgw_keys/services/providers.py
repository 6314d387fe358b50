"""Provider credentials: database rows (API key Fernet-encrypted) plus the implicit providers
configured through the environment (``openai``, ``anthropic``), which a row of the same name
overrides."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec
from cryptography.fernet import InvalidToken, MultiFernet
from llmgw_common import contract
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from llmgw_keys.crypto import mask_secret
from llmgw_keys.errors import Conflict, NotFound
from llmgw_keys.models import Provider, RouteTable
from llmgw_keys.runtime import Principal, Runtime
from llmgw_keys.schemas import ProviderList, ProviderOut, ProviderPut
from llmgw_keys.services import audit
from llmgw_keys.settings import Settings
from llmgw_keys.util import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvProvider:
    name: str
    kind: str
    base_url: str
    api_key: str
    env_var: str


def env_providers(settings: Settings) -> dict[str, EnvProvider]:
    """``openai`` exists when LLMGW_OPENAI_API_KEY or LLMGW_OPENAI_BASE_URL is set; same for anthropic."""
    found: dict[str, EnvProvider] = {}
    if settings.openai_api_key or settings.openai_base_url:
        found["openai"] = EnvProvider(
            "openai", "openai", settings.effective_openai_base_url, settings.openai_api_key or "", "LLMGW_OPENAI_*"
        )
    if settings.anthropic_api_key or settings.anthropic_base_url:
        found["anthropic"] = EnvProvider(
            "anthropic",
            "anthropic",
            settings.effective_anthropic_base_url,
            settings.anthropic_api_key or "",
            "LLMGW_ANTHROPIC_*",
        )
    return found


def _row_out(row: Provider) -> ProviderOut:
    return ProviderOut(
        name=row.name,
        kind=row.kind,
        base_url=row.base_url,
        api_key=row.api_key_hint or "",
        source="database",
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _env_out(provider: EnvProvider) -> ProviderOut:
    return ProviderOut(
        name=provider.name,
        kind=provider.kind,
        base_url=provider.base_url,
        api_key=mask_secret(provider.api_key),
        source="environment",
    )


async def known_provider_names(session: AsyncSession, settings: Settings, *, lock: bool = False) -> set[str]:
    """Provider names (database and environment). ``lock``: hold a share lock on the rows until
    the transaction ends, so a concurrent DELETE cannot remove a provider a new route uses."""
    query = select(Provider.name)
    if lock:
        query = query.with_for_update(read=True)
    rows = (await session.execute(query)).scalars().all()
    return set(rows) | set(env_providers(settings))


async def list_providers(runtime: Runtime) -> ProviderList:
    async with runtime.session_factory() as session:
        rows = (await session.execute(select(Provider).order_by(Provider.name))).scalars().all()
    out = {row.name: _row_out(row) for row in rows}
    for name, provider in env_providers(runtime.settings).items():
        out.setdefault(name, _env_out(provider))
    return ProviderList(data=[out[name] for name in sorted(out)])


async def get_provider(runtime: Runtime, name: str) -> ProviderOut:
    async with runtime.session_factory() as session:
        row = await session.get(Provider, name)
    if row is not None:
        return _row_out(row)
    env = env_providers(runtime.settings).get(name)
    if env is not None:
        return _env_out(env)
    raise NotFound("provider not found")


async def put_provider(runtime: Runtime, principal: Principal, name: str, data: ProviderPut) -> ProviderOut:
    assert runtime.cipher is not None
    async with runtime.transaction() as tx:
        row = (
            await tx.session.execute(select(Provider).where(Provider.name == name).with_for_update())
        ).scalar_one_or_none()
        now = utcnow()
        created = row is None
        if row is None:
            row = Provider(name=name, created_at=now, api_key_encrypted=None, api_key_hint="")
            tx.session.add(row)
        row.kind = data.kind
        row.base_url = data.base_url.rstrip("/")
        key_changed = data.api_key is not msgspec.UNSET
        if key_changed:
            if data.api_key:
                row.api_key_encrypted = runtime.cipher.encrypt(data.api_key.encode()).decode()
                row.api_key_hint = mask_secret(data.api_key)
            else:
                row.api_key_encrypted = None
                row.api_key_hint = ""
        row.updated_at = now
        await tx.session.flush()
        audit.record(
            tx.session,
            principal.id,
            "provider.created" if created else "provider.updated",
            "provider",
            name,
            {"kind": row.kind, "base_url": row.base_url, "api_key_changed": key_changed},
        )
        tx.emit(contract.KeyChanged(action="providers"))
    return _row_out(row)


async def delete_provider(runtime: Runtime, principal: Principal, name: str) -> None:
    env = env_providers(runtime.settings)
    async with runtime.transaction() as tx:
        row = (
            await tx.session.execute(select(Provider).where(Provider.name == name).with_for_update())
        ).scalar_one_or_none()
        if row is None:
            if name in env:
                raise Conflict(
                    f"provider {name!r} is configured through the environment ({env[name].env_var}); "
                    "unset those variables to remove it"
                )
            raise NotFound("provider not found")
        if name not in env:
            table = await tx.session.get(RouteTable, 1, with_for_update=True)
            used_by = sorted(
                {
                    route["model"]
                    for route in (table.routes if table else [])
                    for deployment in route.get("deployments", [])
                    if deployment.get("provider") == name
                }
            )
            if used_by:
                raise Conflict(f"provider {name!r} is used by routes {used_by}; change the routes first")
        await tx.session.delete(row)
        audit.record(tx.session, principal.id, "provider.deleted", "provider", name, {"kind": row.kind})
        tx.emit(contract.KeyChanged(action="providers"))


# --- decrypted credentials (lookup replies only) ---------------------------------------------------
async def decrypted_credentials(
    session: AsyncSession, settings: Settings, cipher: MultiFernet
) -> dict[str, contract.ProviderCredential]:
    creds: dict[str, contract.ProviderCredential] = {}
    for name, provider in env_providers(settings).items():
        creds[name] = contract.ProviderCredential(
            name=name, kind=provider.kind, base_url=provider.base_url, api_key=provider.api_key
        )
    rows = (await session.execute(select(Provider))).scalars().all()
    for row in rows:
        api_key = ""
        if row.api_key_encrypted:
            try:
                api_key = cipher.decrypt(row.api_key_encrypted.encode()).decode()
            except InvalidToken:
                log.error(
                    "provider %r: its API key cannot be decrypted with any LLMGW_ENCRYPTION_KEY; "
                    "it is left out of lookup replies",
                    row.name,
                )
                creds.pop(row.name, None)
                continue
        creds[row.name] = contract.ProviderCredential(
            name=row.name, kind=row.kind, base_url=row.base_url, api_key=api_key
        )
    return creds


# --- encryption key rotation ---------------------------------------------------------------------
async def rotate_encryption(session_factory, cipher: MultiFernet) -> tuple[int, list[str]]:
    """Re-encrypt every stored provider key with the first LLMGW_ENCRYPTION_KEY.

    All or nothing: if any row cannot be decrypted with the configured keys nothing is written.
    Returns (rows re-encrypted, names that failed).
    """
    failed: list[str] = []
    count = 0

    class _Abort(Exception):
        pass

    try:
        async with session_factory() as session, session.begin():
            rows = (
                (
                    await session.execute(
                        select(Provider).where(Provider.api_key_encrypted.is_not(None)).with_for_update()
                    )
                )
                .scalars()
                .all()
            )
            rotated: list[tuple[Provider, str]] = []
            for row in rows:
                try:
                    rotated.append((row, cipher.rotate(row.api_key_encrypted.encode()).decode()))
                except InvalidToken:
                    failed.append(row.name)
            if failed:
                raise _Abort
            for row, token in rotated:
                row.api_key_encrypted = token
                count += 1
            audit.record(session, "system", "providers.encryption_rotated", "provider", None, {"rows": count})
    except _Abort:
        return 0, failed
    return count, failed
