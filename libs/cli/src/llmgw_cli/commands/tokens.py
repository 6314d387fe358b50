"""``llmgw tokens …``: admin and analyst API tokens (key-service ``/v1/admin-tokens``)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from llmgw_cli.core import App, OutputOpt, YesOpt, data_list, path_id, printer
from llmgw_cli.output import Column, format_time

app = App(help="Create, list and revoke admin/analyst tokens for the admin and usage APIs.")


class Role(str, Enum):
    admin = "admin"
    analyst = "analyst"


TOKEN_COLUMNS = [
    Column("ID", "id", no_wrap=True),
    Column("NAME", "name"),
    Column("ROLE", "role"),
    Column("PREFIX", "prefix", no_wrap=True),
    Column("CREATED", "created_at", fmt=format_time),
    Column("BY", "created_by"),
    Column("REVOKED", "revoked_at", fmt=format_time),
]


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="Who or what uses the token.")],
    role: Annotated[Role, typer.Option("--role", "-r", help="admin: everything; analyst: read usage only.")],
    output: OutputOpt = None,
) -> None:
    """Create a token. The secret is printed once."""
    st, out = printer(ctx, output)
    answer = st.keys().post("/v1/admin-tokens", json={"name": name, "role": role.value})
    secret = answer.get("token") if isinstance(answer, dict) else None
    if out.is_table:
        out.record({k: v for k, v in answer.items() if k != "token"}, title=f"created {role.value} token")
        out.out.print()
        if secret:
            out.secret("token", secret)
    else:
        out.record(answer, answer)
    out.warn("This is the only time the token is shown: store it now, it cannot be retrieved later.")


@app.command("list")
def list_tokens(ctx: typer.Context, output: OutputOpt = None) -> None:
    """List tokens (never their secrets)."""
    st, out = printer(ctx, output)
    answer = st.keys().get("/v1/admin-tokens")
    out.records(data_list(answer, "tokens"), TOKEN_COLUMNS, answer, empty="no tokens (only the bootstrap token)")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id.")],
    yes: YesOpt = False,
    output: OutputOpt = None,
) -> None:
    """Revoke a token."""
    st, out = printer(ctx, output)
    if not yes:
        typer.confirm(f"Revoke token {token_id}?", abort=True, err=True)
    st.keys().delete(f"/v1/admin-tokens/{path_id(token_id)}")
    if out.is_table:
        out.message(f"revoked token {token_id}")
    else:
        out.record({"id": token_id, "status": "revoked"})
