"""The model routing table: public model name (or glob) -> deployments (provider + upstream model).

Stored as one row (``keys.route_table``); no row, or an empty table, means the built-in defaults:
``claude-*`` -> provider ``anthropic``, everything else -> provider ``openai``, keeping the model
name the client asked for (upstream model ``*``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import yaml
from llmgw_common import contract
from sqlalchemy.dialects.postgresql import insert

from llmgw_keys.errors import Invalid
from llmgw_keys.models import RouteTable
from llmgw_keys.runtime import Principal, Runtime
from llmgw_keys.schemas import DeploymentOut, RouteIn, RouteList, RouteOut
from llmgw_keys.services import audit
from llmgw_keys.services.providers import known_provider_names
from llmgw_keys.util import utcnow

log = logging.getLogger(__name__)

DEFAULT_ROUTES: list[dict[str, Any]] = [
    {"model": "claude-*", "deployments": [{"provider": "anthropic", "model": "*", "weight": 1, "priority": 0}]},
    {"model": "*", "deployments": [{"provider": "openai", "model": "*", "weight": 1, "priority": 0}]},
]


def _normalise(routes: list[RouteIn]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for route in routes:
        if route.model in seen:
            raise Invalid(f"routes: model {route.model!r} appears more than once")
        seen.add(route.model)
        out.append(msgspec.to_builtins(route))
    return out


def _to_out(routes: list[dict[str, Any]]) -> list[RouteOut]:
    return [
        RouteOut(
            model=route["model"],
            deployments=[
                DeploymentOut(
                    provider=d["provider"],
                    model=d["model"],
                    weight=int(d.get("weight", 1)),
                    priority=int(d.get("priority", 0)),
                )
                for d in route["deployments"]
            ],
        )
        for route in routes
    ]


def effective(table: RouteTable | None) -> tuple[list[dict[str, Any]], str]:
    if table is None or not table.routes:
        return DEFAULT_ROUTES, "default"
    return table.routes, "configured"


def as_contract(routes: list[dict[str, Any]]) -> list[contract.Route]:
    return msgspec.convert(routes, list[contract.Route])


async def get_routes(runtime: Runtime) -> RouteList:
    async with runtime.session_factory() as session:
        table = await session.get(RouteTable, 1)
    routes, source = effective(table)
    return RouteList(data=_to_out(routes), source=source)


async def put_routes(runtime: Runtime, principal: Principal, routes: list[RouteIn]) -> RouteList:
    normalised = _normalise(routes)
    async with runtime.transaction() as tx:
        known = await known_provider_names(tx.session, runtime.settings, lock=True)
        unknown = sorted({d["provider"] for r in normalised for d in r["deployments"]} - known)
        if unknown:
            raise Invalid(f"routes: unknown provider(s) {unknown}; create them with PUT /v1/providers/{{name}} first")
        now = utcnow()
        await tx.session.execute(
            insert(RouteTable)
            .values(id=1, routes=normalised, updated_at=now, updated_by=principal.id)
            .on_conflict_do_update(
                index_elements=[RouteTable.id],
                set_={"routes": normalised, "updated_at": now, "updated_by": principal.id},
            )
        )
        audit.record(
            tx.session,
            principal.id,
            "routes.replaced",
            "routes",
            None,
            {"models": [r["model"] for r in normalised]},
        )
        tx.emit(contract.KeyChanged(action="routes"))
    source = "configured" if normalised else "default"
    return RouteList(data=_to_out(normalised or DEFAULT_ROUTES), source=source)


def load_routes_file(path: Path) -> list[RouteIn]:
    """``routes:`` (or a top-level list) of ``{model, deployments: [{provider, model, weight, priority}]}``."""
    document = yaml.safe_load(path.read_text())
    if isinstance(document, dict):
        document = document.get("routes", [])
    if document is None:
        document = []
    try:
        return msgspec.convert(document, list[RouteIn])
    except msgspec.ValidationError as exc:
        raise ValueError(f"{path}: {exc}") from None


async def seed_from_file(runtime: Runtime) -> bool:
    """Seed the table from LLMGW_ROUTES_FILE when it was never configured. Safe from every worker
    and replica at once (``INSERT … ON CONFLICT DO NOTHING``)."""
    path = runtime.settings.routes_file
    if not path:
        return False
    path = Path(path)
    if not path.exists():
        log.warning("LLMGW_ROUTES_FILE %s does not exist; routes not seeded", path)
        return False
    normalised = _normalise(load_routes_file(path))
    async with runtime.transaction() as tx:
        known = await known_provider_names(tx.session, runtime.settings)
        unknown = sorted({d["provider"] for r in normalised for d in r["deployments"]} - known)
        if unknown:
            log.warning("routes file %s names provider(s) %s that do not exist (yet)", path, unknown)
        result = await tx.session.execute(
            insert(RouteTable)
            .values(id=1, routes=normalised, updated_at=utcnow(), updated_by="system")
            .on_conflict_do_nothing(index_elements=[RouteTable.id])
            .returning(RouteTable.id)
        )
        seeded = result.first() is not None
        if seeded:
            audit.record(
                tx.session,
                "system",
                "routes.seeded",
                "routes",
                None,
                {"file": str(path), "models": [r["model"] for r in normalised]},
            )
            tx.emit(contract.KeyChanged(action="routes"))
    if seeded:
        log.info("routes seeded from %s (%d routes)", path, len(normalised))
    return seeded
