"""The ``llmgw`` command: admin of the llmgw gateway over its REST APIs."""

from __future__ import annotations

from typing import Annotated, Optional

import httpx
import typer

from llmgw_cli import __version__
from llmgw_cli.commands import cache, keys, models, providers, tokens, usage
from llmgw_cli.core import App, OutputOpt, State, printer
from llmgw_cli.output import Column, OutputFormat

app = App(
    name="llmgw",
    help="Manage the llmgw gateway: virtual keys, providers, model routes, admin tokens, usage.\n\n"
    "Configuration: flags > env (LLMGW_ADMIN_TOKEN, LLMGW_KEY_SERVICE_URL, LLMGW_METERING_URL) > "
    "config file (LLMGW_CONFIG or ~/.config/llmgw/config.toml) > the admin token `make run` keeps "
    "in .llmgw/admin_token.",
)
app.add_typer(keys.app, name="keys")
app.add_typer(providers.app, name="providers")
app.add_typer(models.app, name="models")
app.add_typer(tokens.app, name="tokens")
app.add_typer(usage.app, name="usage")
app.add_typer(cache.app, name="cache")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmgw {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    output: Annotated[
        OutputFormat,
        typer.Option("--output", "-o", help="table, json (the raw API answer) or csv.", envvar="LLMGW_OUTPUT"),
    ] = OutputFormat.table,
    token: Annotated[
        Optional[str],
        typer.Option("--token", help="Admin/analyst token (default: LLMGW_ADMIN_TOKEN, config, state dir).", show_default=False),
    ] = None,
    key_service_url: Annotated[
        Optional[str], typer.Option("--key-service-url", help="Default: LLMGW_KEY_SERVICE_URL or http://127.0.0.1:8081.")
    ] = None,
    metering_url: Annotated[
        Optional[str], typer.Option("--metering-url", help="Default: LLMGW_METERING_URL or http://127.0.0.1:8082.")
    ] = None,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = None,
) -> None:
    ctx.obj = State(output=output, token=token, key_service_url=key_service_url, metering_url=metering_url)
    ctx.call_on_close(ctx.obj.close)


@app.command("config")
def show_config(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Show the resolved configuration (the token is never printed, only where it came from)."""
    st, out = printer(ctx, output)
    cfg = st.config
    out.record(
        {
            "key_service_url": cfg.key_service_url,
            "metering_url": cfg.metering_url,
            "admin_token": f"set (from {cfg.token_source})" if cfg.admin_token else "not set",
            "config_file": str(cfg.config_file) if cfg.config_file else None,
        }
    )


@app.command("status")
def status(ctx: typer.Context, output: OutputOpt = None) -> None:
    """Check that key-service and metering are up and ready (no token needed)."""
    st, out = printer(ctx, output)
    cfg = st.config
    rows = []
    for name, url in (("key-service", cfg.key_service_url), ("metering", cfg.metering_url)):
        row = {"service": name, "url": url, "healthz": None, "readyz": None}
        for probe in ("healthz", "readyz"):
            try:
                response = httpx.get(f"{url}/{probe}", timeout=3.0)
                row[probe] = "ok" if response.status_code == 200 else f"HTTP {response.status_code}"
            except httpx.HTTPError:
                row[probe] = "unreachable"
                break
        rows.append(row)
    columns = [Column("SERVICE", "service"), Column("URL", "url"), Column("HEALTHZ", "healthz"), Column("READYZ", "readyz")]
    out.records(rows, columns, {"data": rows})
    if any(row["readyz"] != "ok" for row in rows):
        if out.is_table:
            out.note("Not everything is ready: start the local stack with `make run`, or check the URLs above.")
        raise typer.Exit(2)


if __name__ == "__main__":  # pragma: no cover
    app()
