"""``llmgw cache …``: the edge proxies' shared response cache (key-service ``/v1/cache``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmgw_cli.core import App, OutputOpt, YesOpt, printer

app = App(help="Show and purge the edge proxies' shared response cache.")

ProjectOpt = Annotated[Optional[str], typer.Option("--project", "-p", help="Only this project's cached answers.")]


@app.command("stats")
def stats(ctx: typer.Context, project: ProjectOpt = None, output: OutputOpt = None) -> None:
    """Entries and bytes in the cache, with its limits."""
    st, out = printer(ctx, output)
    answer = st.keys().get("/v1/cache", params={"project": project})
    out.record(answer, title="response cache")


@app.command("purge")
def purge(ctx: typer.Context, project: ProjectOpt = None, yes: YesOpt = False, output: OutputOpt = None) -> None:
    """Remove every cached answer (or one project's): the next identical requests go upstream."""
    st, out = printer(ctx, output)
    if not yes:
        what = f"project {project}'s cached answers" if project else "every cached answer"
        typer.confirm(f"Purge {what} for all proxies?", abort=True, err=True)
    answer = st.keys().delete("/v1/cache", params={"project": project})
    if out.is_table:
        scope = f" of project {project}" if project else ""
        out.message(f"purged {answer.get('purged', 0)} cached answer(s){scope}")
    else:
        out.record(answer)
