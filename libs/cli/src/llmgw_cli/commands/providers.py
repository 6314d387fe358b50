"""``llmgw providers …``: upstream provider credentials (key-service ``/v1/providers``)."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from llmgw_cli.core import App, OutputOpt, YesOpt, data_list, path_id, printer
from llmgw_cli.errors import CliError
from llmgw_cli.output import Column, format_time

app = App(help="Set, list and remove upstream provider credentials (API keys are stored encrypted).")


class ProviderKind(str, Enum):
    openai = "openai"
    anthropic = "anthropic"
    openai_compatible = "openai-compatible"


def _masked_key(row: dict) -> Any:
    # key-service answers the masked key (`sk-...abcd`) in `api_key`, never the key itself.
    return row.get("api_key") or None


PROVIDER_COLUMNS = [
    Column("NAME", "name", no_wrap=True),
    Column("KIND", "kind"),
    Column("BASE URL", "base_url"),
    Column("API KEY", _masked_key),
    Column("SOURCE", "source"),
    Column("UPDATED", lambda r: r.get("updated_at") or r.get("created_at"), fmt=format_time),
]


@app.command("set")
def set_provider(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Provider name that routes refer to, e.g. openai.")],
    kind: Annotated[ProviderKind, typer.Option("--kind", "-k", help="Wire format the provider speaks.")],
    base_url: Annotated[
        str,
        typer.Option(
            "--base-url",
            help="openai/openai-compatible: with /v1 (https://api.openai.com/v1); anthropic: without "
            "(https://api.anthropic.com).",
        ),
    ],
    api_key: Annotated[
        Optional[str],
        typer.Option("--api-key", help="The API key. Prefer --api-key-stdin or the prompt: this lands in shell history."),
    ] = None,
    api_key_stdin: Annotated[bool, typer.Option("--api-key-stdin", help="Read the API key from stdin.")] = False,
    no_api_key: Annotated[
        bool, typer.Option("--no-api-key", help="The endpoint needs no key (e.g. a local vLLM/Ollama).")
    ] = False,
    keep_api_key: Annotated[
        bool, typer.Option("--keep-api-key", help="Keep the stored key (change only kind/base URL).")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Create or replace a provider. Without an --api-key* option, asks for the key without echoing
    it (an empty answer keeps the stored key)."""
    st, out = printer(ctx, output)
    if sum([api_key is not None, api_key_stdin, no_api_key, keep_api_key]) > 1:
        raise CliError("give only one of --api-key, --api-key-stdin, --no-api-key, --keep-api-key", exit_code=2)
    secret: str | None
    if keep_api_key:
        secret = None
    elif no_api_key:
        secret = ""
    elif api_key is not None:
        secret = api_key
    elif api_key_stdin:
        secret = sys.stdin.readline().strip()
        if not secret:
            raise typer.BadParameter("stdin gave no API key", param_hint="--api-key-stdin")
    elif sys.stdin.isatty():
        secret = typer.prompt(
            f"API key for {name} (input hidden; empty keeps the stored key)",
            default="",
            show_default=False,
            hide_input=True,
            err=True,
        ).strip() or None
    else:
        raise CliError(
            "no API key given and stdin is not a terminal: use --api-key-stdin "
            "(e.g. `pass show openai | llmgw providers set …`), --api-key, --no-api-key or --keep-api-key",
            exit_code=2,
        )
    body: dict[str, Any] = {"kind": kind.value, "base_url": base_url.rstrip("/")}
    if secret is not None:
        body["api_key"] = secret
    answer = st.keys().put(f"/v1/providers/{path_id(name)}", json=body)
    if out.is_table:
        out.record(answer or {"name": name, **{k: v for k, v in body.items() if k != "api_key"}}, title=f"provider {name}")
    else:
        out.record(answer or {}, answer)


@app.command("list")
def list_providers(ctx: typer.Context, output: OutputOpt = None) -> None:
    """List providers (API keys masked)."""
    st, out = printer(ctx, output)
    answer = st.keys().get("/v1/providers")
    out.records(data_list(answer, "providers"), PROVIDER_COLUMNS, answer, empty="no providers configured")


@app.command("show")
def show_provider(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Provider name.")], output: OutputOpt = None) -> None:
    """Show one provider (API key masked)."""
    st, out = printer(ctx, output)
    answer = st.keys().get(f"/v1/providers/{path_id(name)}")
    out.record(answer, answer)


@app.command("remove")
def remove_provider(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Provider name.")], yes: YesOpt = False, output: OutputOpt = None
) -> None:
    """Remove a provider and its stored credentials."""
    st, out = printer(ctx, output)
    if not yes:
        typer.confirm(f"Remove provider {name}?", abort=True, err=True)
    st.keys().delete(f"/v1/providers/{path_id(name)}")
    if out.is_table:
        out.message(f"removed provider {name}")
    else:
        out.record({"name": name, "removed": True})
