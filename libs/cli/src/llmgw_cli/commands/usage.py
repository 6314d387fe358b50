"""``llmgw usage …``: the usage ledger (metering ``/v1/usage``); analyst or admin token."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from llmgw_cli.core import App, OutputOpt, parse_time, path_id, printer, split_csv
from llmgw_cli.output import Column, OutputFormat, format_int, format_ms, format_time, format_usd

app = App(
    help="Usage and cost: grouped reports, raw events, one key's totals. Without a subcommand: the report.",
    no_args_is_help=False,
)

GROUP_FIELDS = ("key", "project", "model", "provider", "hour", "day", "month")
#: group_by name → the row field carrying it
GROUP_COLUMN = {"key": "key_id", "project": "project", "model": "model", "provider": "provider"}
TIME_GROUPS = ("hour", "day", "month")

METRIC_COLUMNS = [
    Column("REQ", "requests", fmt=format_int, justify="right", no_wrap=True),
    Column("ERR", "errors", fmt=format_int, justify="right", no_wrap=True),
    Column("PROMPT", "prompt_tokens", fmt=format_int, justify="right", no_wrap=True),
    Column("CACHED", "cached_tokens", fmt=format_int, justify="right", no_wrap=True),
    Column("COMPL", "completion_tokens", fmt=format_int, justify="right", no_wrap=True),
    Column("TOTAL", "total_tokens", fmt=format_int, justify="right", no_wrap=True),
    Column("COST", "cost_usd", fmt=format_usd, justify="right", no_wrap=True),
    Column("P50 ms", "latency_ms_p50", fmt=format_ms, justify="right", no_wrap=True),
    Column("P95 ms", "latency_ms_p95", fmt=format_ms, justify="right", no_wrap=True),
]
SUMMED = ("requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "total_tokens", "cost_usd")

EVENT_COLUMNS = [
    Column("TIME", lambda r: r.get("ts") or r.get("created_at"), fmt=format_time, no_wrap=True),
    Column("KEY", "key_id", no_wrap=True),
    Column("MODEL", "model"),
    Column("PROVIDER", "provider"),
    Column("STATUS", lambda r: f"{r.get('status', '')} {r.get('status_code', '')}".strip() or None),
    Column("PROMPT", "prompt_tokens", fmt=format_int, justify="right", no_wrap=True),
    Column("COMPL", "completion_tokens", fmt=format_int, justify="right", no_wrap=True),
    Column("COST", "cost_usd", fmt=format_usd, justify="right", no_wrap=True),
    Column("MS", "latency_ms", fmt=format_ms, justify="right", no_wrap=True),
]


class Status(str, Enum):
    ok = "ok"
    error = "error"
    incomplete = "incomplete"


def parse_group_by(values: list[str] | None) -> list[str]:
    groups = split_csv(values)
    unknown = [g for g in groups if g not in GROUP_FIELDS]
    if unknown:
        raise typer.BadParameter(
            f"unknown group {', '.join(unknown)}; choose from {', '.join(GROUP_FIELDS)}", param_hint="--group-by"
        )
    return groups


def report_columns(groups: list[str], rows: list[dict]) -> list[Column]:
    columns: list[Column] = []
    if any(g in TIME_GROUPS for g in groups) or any("bucket" in row for row in rows):
        columns.append(Column("BUCKET", "bucket", fmt=format_time, no_wrap=True))
    for group in groups:
        if group in GROUP_COLUMN:
            field = GROUP_COLUMN[group]
            columns.append(Column(group.upper(), field, no_wrap=group == "key"))
    # group fields the service returned that the request did not name (defaults)
    named = {c.key for c in columns}
    for field in ("key_id", "project", "model", "provider"):
        if field not in named and any(field in row for row in rows):
            columns.append(Column(field.removesuffix("_id").upper(), field))
    return columns + METRIC_COLUMNS


def totals(rows: list[dict], columns: list[Column]) -> dict | None:
    if len(rows) < 2:
        return None
    footer: dict = {columns[0].header: "total"} if columns and columns[0] not in METRIC_COLUMNS else {}
    for column in METRIC_COLUMNS:
        if column.key in SUMMED:
            total = 0.0
            for row in rows:
                try:
                    total += float(row.get(column.key) or 0)
                except (TypeError, ValueError):
                    pass
            footer[column.header] = total
    return footer


@app.callback(invoke_without_command=True)
def report(
    ctx: typer.Context,
    group_by: Annotated[
        Optional[list[str]],
        typer.Option("--group-by", "-g", help=f"Comma-separated from: {', '.join(GROUP_FIELDS)}."),
    ] = None,
    from_: Annotated[
        Optional[str],
        typer.Option("--from", help="Start, ISO 8601 (UTC if no offset) or a duration back from now: 7d, 24h."),
    ] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="End, ISO 8601 or a duration back from now.")] = None,
    key_id: Annotated[Optional[str], typer.Option("--key-id", "-k", help="Only this key.")] = None,
    project: Annotated[Optional[str], typer.Option("--project", "-p", help="Only this project.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Only this model.")] = None,
    provider: Annotated[Optional[str], typer.Option("--provider", help="Only this provider.")] = None,
    status: Annotated[Optional[Status], typer.Option("--status", help="Only requests with this outcome.")] = None,
    output: OutputOpt = None,
) -> None:
    """Usage report: requests, tokens, cost and latency, grouped and filtered."""
    if ctx.invoked_subcommand is not None:
        return
    st, out = printer(ctx, output)
    groups = parse_group_by(group_by)
    params = {
        "group_by": groups,
        "from": parse_time(from_, future=False, option="--from"),
        "to": parse_time(to, future=False, option="--to"),
        "key_id": key_id,
        "project": project,
        "model": model,
        "provider": provider,
        "status": status.value if status else None,
    }
    client = st.metering()
    if out.format is OutputFormat.csv:
        params["format"] = "csv"
        out.write(client.get("/v1/usage", params=params, raw=True))
        return
    answer = client.get("/v1/usage", params=params)
    rows = answer.get("data", []) if isinstance(answer, dict) else []
    columns = report_columns(list(answer.get("group_by") or groups) if isinstance(answer, dict) else groups, rows)
    window = ""
    if isinstance(answer, dict) and (answer.get("from") or answer.get("to")):
        window = f"usage {format_time(answer.get('from')) if answer.get('from') else '…'} → " + (
            format_time(answer.get("to")) if answer.get("to") else "now"
        )
    out.records(rows, columns, answer, title=window or None, empty="no usage in this window", footer=totals(rows, columns))


@app.command("events")
def events(
    ctx: typer.Context,
    key_id: Annotated[Optional[str], typer.Option("--key-id", "-k", help="Only this key.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Page size (newest first).")] = None,
    cursor: Annotated[Optional[str], typer.Option("--cursor", help="Continue from a next_cursor.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", "-a", help="Follow next_cursor to the end.")] = False,
    output: OutputOpt = None,
) -> None:
    """Raw usage events, one per request."""
    st, out = printer(ctx, output)
    rows, next_cursor = st.metering().paginate(
        "/v1/usage/events", {"key_id": key_id, "limit": limit, "cursor": cursor}, follow=all_pages
    )
    out.records(rows, EVENT_COLUMNS, {"data": rows, "next_cursor": next_cursor}, empty="no usage events")
    if next_cursor and out.format is not OutputFormat.json:
        out.note(f"more events: --all, or --cursor {next_cursor}")


@app.command("key")
def key_usage(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id.")],
    output: OutputOpt = None,
) -> None:
    """One key's totals and its spend in the current budget period."""
    st, out = printer(ctx, output)
    answer = st.metering().get(f"/v1/usage/keys/{path_id(key_id)}")
    out.record(answer, answer, title=f"usage of key {key_id}" if out.is_table else None)
