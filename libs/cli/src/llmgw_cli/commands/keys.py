"""``llmgw keys …``: virtual keys (key-service ``/v1/keys``)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from llmgw_cli.core import (
    App,
    OutputOpt,
    YesOpt,
    parse_json_object,
    parse_time,
    path_id,
    printer,
    split_csv,
)
from llmgw_cli.errors import CliError
from llmgw_cli.output import Column, Printer, format_time, format_usd

app = App(help="Create, list, update, rotate and revoke virtual keys.")


class BudgetPeriod(str, Enum):
    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"


class KeyStatus(str, Enum):
    active = "active"
    revoked = "revoked"
    expired = "expired"


def _models(row: dict) -> str:
    models = row.get("models") or []
    return ", ".join(models) if models else "* (all)"


def _limits(row: dict) -> str:
    parts = []
    if row.get("rpm_limit") is not None:
        parts.append(f"{row['rpm_limit']} rpm")
    if row.get("tpm_limit") is not None:
        parts.append(f"{row['tpm_limit']} tpm")
    if row.get("max_parallel_requests") is not None:
        parts.append(f"{row['max_parallel_requests']} parallel")
    return ", ".join(parts) if parts else "-"


def _budget(row: dict) -> str | None:
    if row.get("budget_usd") is None:
        return None
    period = row.get("budget_period")
    return format_usd(row["budget_usd"]) + (f" / {period}" if period else " total")


KEY_COLUMNS = [
    Column("ID", "id", overflow="fold", min_width=8),  # folds on narrow terminals, never cut: it is copied
    Column("NAME", "name", min_width=8),
    Column("PROJECT", "project", min_width=8),
    Column("PREFIX", "prefix", no_wrap=True),
    Column("STATUS", "status", no_wrap=True),
    Column("MODELS", _models),
    Column("LIMITS", _limits),
    Column("BUDGET", _budget),
    Column("EXPIRES", "expires_at", fmt=format_time),
]

# Shared options of create and update.
ModelOpt = Annotated[
    Optional[list[str]],
    typer.Option("--model", "-m", help="Allowed model (glob like 'gpt-4o*'); repeat or comma-separate. None = all."),
]
RpmOpt = Annotated[Optional[int], typer.Option("--rpm", min=1, help="Requests per minute.")]
TpmOpt = Annotated[Optional[int], typer.Option("--tpm", min=1, help="Tokens per minute.")]
ParallelOpt = Annotated[Optional[int], typer.Option("--max-parallel", min=1, help="Concurrent requests.")]
BudgetOpt = Annotated[Optional[float], typer.Option("--budget", min=0, help="Budget in USD.")]
PeriodOpt = Annotated[
    Optional[BudgetPeriod],
    typer.Option("--budget-period", help="Budget resets each period (UTC; weeks start Monday). None = lifetime."),
]
ExpiresOpt = Annotated[
    Optional[str],
    typer.Option("--expires-at", help="ISO 8601 time (UTC if no offset), or a duration from now: 30d, 12h."),
]
TagOpt = Annotated[Optional[list[str]], typer.Option("--tag", "-t", help="Tag; repeat or comma-separate.")]
MetadataOpt = Annotated[Optional[str], typer.Option("--metadata", help="Free-form JSON object, e.g. owner info.")]


def _show_secret(out: Printer, answer: dict, verb: str) -> None:
    secret = answer.get("key")
    record = {k: v for k, v in answer.items() if k != "key"}
    if out.is_table:
        out.record(record, title=f"{verb} key {record.get('id', '')}")
        out.out.print()
        if secret:
            out.secret("key", secret)
    else:
        out.record(answer, answer)
    if secret:
        out.warn("This is the only time the secret is shown: store it now, it cannot be retrieved later.")
    else:
        out.warn("The answer carried no secret (`key` field missing).")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="Human-readable name.")],
    project: Annotated[str, typer.Option("--project", "-p", help="Project the usage is billed to.")],
    model: ModelOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_parallel: ParallelOpt = None,
    budget: BudgetOpt = None,
    budget_period: PeriodOpt = None,
    expires_at: ExpiresOpt = None,
    tag: TagOpt = None,
    metadata: MetadataOpt = None,
    output: OutputOpt = None,
) -> None:
    """Create a virtual key. The secret is printed once."""
    st, out = printer(ctx, output)
    body: dict[str, Any] = {"name": name, "project": project}
    if model:
        body["models"] = split_csv(model)
    if tag:
        body["tags"] = split_csv(tag)
    _set_if(body, "rpm_limit", rpm)
    _set_if(body, "tpm_limit", tpm)
    _set_if(body, "max_parallel_requests", max_parallel)
    _set_if(body, "budget_usd", budget)
    _set_if(body, "budget_period", budget_period.value if budget_period else None)
    _set_if(body, "expires_at", parse_time(expires_at, future=True, option="--expires-at"))
    _set_if(body, "metadata", parse_json_object(metadata, "--metadata"))
    answer = st.keys().post("/v1/keys", json=body)
    _show_secret(out, answer, "created")


@app.command("list")
def list_keys(
    ctx: typer.Context,
    project: Annotated[Optional[str], typer.Option("--project", "-p", help="Only this project.")] = None,
    status: Annotated[Optional[KeyStatus], typer.Option("--status", help="Only keys in this status.")] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", "-t", help="Only keys with this tag.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Page size.")] = None,
    cursor: Annotated[Optional[str], typer.Option("--cursor", help="Continue from a next_cursor.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", "-a", help="Follow next_cursor to the end.")] = False,
    output: OutputOpt = None,
) -> None:
    """List virtual keys (in creation order; paginated)."""
    st, out = printer(ctx, output)
    params = {"project": project, "status": status.value if status else None, "tag": tag, "limit": limit}
    params["cursor"] = cursor
    rows, next_cursor = st.keys().paginate("/v1/keys", params, follow=all_pages)
    raw = {"data": rows, "next_cursor": next_cursor}
    out.records(rows, KEY_COLUMNS, raw, empty="no keys")
    if next_cursor and out.format.value != "json":
        out.note(f"more keys: --all, or --cursor {next_cursor}")


@app.command("show")
def show(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id.")],
    output: OutputOpt = None,
) -> None:
    """Show one key (a revoked key still reads back, with status revoked)."""
    st, out = printer(ctx, output)
    answer = st.keys().get(f"/v1/keys/{path_id(key_id)}")
    out.record(answer, answer)


@app.command("update")
def update(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id.")],
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="New name.")] = None,
    project: Annotated[Optional[str], typer.Option("--project", "-p", help="New project.")] = None,
    model: ModelOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_parallel: ParallelOpt = None,
    budget: BudgetOpt = None,
    budget_period: PeriodOpt = None,
    expires_at: ExpiresOpt = None,
    tag: TagOpt = None,
    metadata: MetadataOpt = None,
    clear_models: Annotated[bool, typer.Option("--clear-models", help="Allow every model again.")] = False,
    clear_rpm: Annotated[bool, typer.Option("--clear-rpm", help="Remove the rpm limit.")] = False,
    clear_tpm: Annotated[bool, typer.Option("--clear-tpm", help="Remove the tpm limit.")] = False,
    clear_max_parallel: Annotated[bool, typer.Option("--clear-max-parallel", help="Remove the concurrency limit.")] = False,
    clear_budget: Annotated[bool, typer.Option("--clear-budget", help="Remove the budget and its period.")] = False,
    clear_expiry: Annotated[bool, typer.Option("--clear-expiry", help="Never expire.")] = False,
    clear_tags: Annotated[bool, typer.Option("--clear-tags", help="Remove every tag.")] = False,
    output: OutputOpt = None,
) -> None:
    """Change a key (PATCH: only the given fields change; --clear-* sends null)."""
    st, out = printer(ctx, output)
    body: dict[str, Any] = {}
    _set_if(body, "name", name)
    _set_if(body, "project", project)
    _set_or_clear(body, "models", split_csv(model) if model else None, clear_models, "--model", cleared=[])
    _set_or_clear(body, "rpm_limit", rpm, clear_rpm, "--rpm")
    _set_or_clear(body, "tpm_limit", tpm, clear_tpm, "--tpm")
    _set_or_clear(body, "max_parallel_requests", max_parallel, clear_max_parallel, "--max-parallel")
    _set_or_clear(body, "budget_usd", budget, clear_budget, "--budget")
    if clear_budget:
        if budget_period is not None:
            raise typer.BadParameter("contradicts --clear-budget", param_hint="--budget-period")
        body["budget_period"] = None
    else:
        _set_if(body, "budget_period", budget_period.value if budget_period else None)
    _set_or_clear(
        body, "expires_at", parse_time(expires_at, future=True, option="--expires-at"), clear_expiry, "--expires-at"
    )
    _set_or_clear(body, "tags", split_csv(tag) if tag else None, clear_tags, "--tag", cleared=[])
    _set_if(body, "metadata", parse_json_object(metadata, "--metadata"))
    if not body:
        raise CliError("nothing to change: give at least one option (see `llmgw keys update --help`)", exit_code=2)
    answer = st.keys().patch(f"/v1/keys/{path_id(key_id)}", json=body)
    if out.is_table:
        out.record(answer, title=f"updated key {key_id}")
    else:
        out.record(answer, answer)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id.")],
    grace_seconds: Annotated[
        Optional[int],
        typer.Option("--grace-seconds", min=0, help="Keep the old secret working this long (default: stops at once)."),
    ] = None,
    output: OutputOpt = None,
) -> None:
    """Issue a new secret for a key. The new secret is printed once."""
    st, out = printer(ctx, output)
    body = {"grace_seconds": grace_seconds} if grace_seconds is not None else {}
    answer = st.keys().post(f"/v1/keys/{path_id(key_id)}/rotate", json=body)
    _show_secret(out, answer, "rotated")
    if grace_seconds:
        out.note(f"The old secret keeps working for {grace_seconds} s.")
    else:
        out.note("The old secret stopped working.")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id.")],
    yes: YesOpt = False,
    output: OutputOpt = None,
) -> None:
    """Revoke a key for good (it can never authenticate again)."""
    st, out = printer(ctx, output)
    if not yes:
        typer.confirm(f"Revoke key {key_id}? It can never be used again", abort=True, err=True)
    st.keys().delete(f"/v1/keys/{path_id(key_id)}")
    if out.is_table:
        out.message(f"revoked key {key_id}")
    else:
        out.record({"id": key_id, "status": "revoked"})


def _set_if(body: dict, field: str, value: Any) -> None:
    if value is not None:
        body[field] = value


def _set_or_clear(body: dict, field: str, value: Any, clear: bool, option: str, cleared: Any = None) -> None:
    if clear and value is not None:
        raise typer.BadParameter("contradicts its --clear-* option", param_hint=option)
    if clear:
        body[field] = cleared
    else:
        _set_if(body, field, value)


