"""``llmgw models …``: the routing table, public model name → deployments (key-service ``/v1/routes``).

``set`` and ``remove`` read the whole table, change one model's route and write the table back
(``PUT /v1/routes`` replaces it), so two admins editing at the same instant can overwrite each other.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from llmgw_cli.core import App, OutputOpt, YesOpt, data_list, printer
from llmgw_cli.errors import CliError
from llmgw_cli.output import Column

app = App(help="Show and change model routes: public model name → provider deployments.")


def _deployments(route: dict) -> str:
    lines = []
    for d in sorted(route.get("deployments") or [], key=lambda d: (d.get("priority", 0), -d.get("weight", 1))):
        lines.append(f"{d.get('provider')}:{d.get('model')}  (weight {d.get('weight', 1)}, priority {d.get('priority', 0)})")
    return "\n".join(lines)


ROUTE_COLUMNS = [
    Column("MODEL", "model", no_wrap=True),
    Column("DEPLOYMENTS (provider:upstream model)", _deployments),
]
DEPLOYMENT_CSV_FIELDS = ["model", "provider", "upstream_model", "weight", "priority"]


def parse_deployment(spec: str) -> dict[str, Any]:
    """``provider:upstream_model[:weight[:priority]]``.

    The upstream model may itself contain ``:`` (``ollama:llama3:8b``): up to two trailing integer
    parts are read as weight and priority, the rest is the model name. To route to an upstream
    name that ends in ``:<number>``, give weight and priority explicitly (``ollama:qwen:7:1:0``).
    """
    provider, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    numbers: list[int] = []
    while len(parts) > 1 and len(numbers) < 2 and _is_int(parts[-1]):
        numbers.insert(0, int(parts.pop()))
    model = ":".join(parts)
    if not provider.strip() or not model.strip():
        raise typer.BadParameter(
            f"{spec!r}: expected provider:upstream_model[:weight[:priority]], e.g. openai:gpt-4o-mini:3:0",
            param_hint="--deployment",
        )
    deployment: dict[str, Any] = {"provider": provider.strip(), "model": model.strip()}
    deployment["weight"] = numbers[0] if numbers else 1
    deployment["priority"] = numbers[1] if len(numbers) > 1 else 0
    return deployment


def _is_int(text: str) -> bool:
    return text.isdigit()


def _read_routes(client: Any) -> tuple[list[dict], Any]:
    answer = client.get("/v1/routes")
    return [dict(route) for route in data_list(answer, "routes")], answer


def _write_routes(client: Any, routes: list[dict]) -> Any:
    body = {
        "data": [
            {
                "model": route["model"],
                "deployments": [
                    {k: d[k] for k in ("provider", "model", "weight", "priority") if k in d}
                    for d in route.get("deployments") or []
                ],
            }
            for route in routes
        ]
    }
    return client.put("/v1/routes", json=body)


@app.command("list")
def list_models(ctx: typer.Context, output: OutputOpt = None) -> None:
    """List routes, one row per public model name (or glob)."""
    st, out = printer(ctx, output)
    routes, answer = _read_routes(st.keys())
    csv_rows = [
        {
            "model": route.get("model"),
            "provider": d.get("provider"),
            "upstream_model": d.get("model"),
            "weight": d.get("weight"),
            "priority": d.get("priority"),
        }
        for route in routes
        for d in route.get("deployments") or []
    ]
    if out.format.value == "csv":
        out.records(csv_rows, ROUTE_COLUMNS, answer, csv_fields=DEPLOYMENT_CSV_FIELDS)
        return
    out.records(routes, ROUTE_COLUMNS, answer, empty="no routes")
    if out.is_table and isinstance(answer, dict) and answer.get("source") == "default":
        out.note("No routes configured: these are the built-in defaults (claude-* → anthropic, the rest → openai).")


@app.command("set")
def set_model(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Public model name or glob, e.g. gpt-4o or 'llama-*'.")],
    deployment: Annotated[
        list[str],
        typer.Option(
            "--deployment",
            "-d",
            help="provider:upstream_model[:weight[:priority]]; repeat for load balancing/fallback. "
            "Lower priority is tried first; weights balance within one priority.",
        ),
    ],
    append: Annotated[
        bool, typer.Option("--append", help="Add to the model's deployments instead of replacing them.")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Create or replace one model's route (the other routes are kept)."""
    st, out = printer(ctx, output)
    new_deployments = [parse_deployment(spec) for spec in deployment]
    client = st.keys()
    routes, answer = _read_routes(client)
    if isinstance(answer, dict) and answer.get("source") == "default":
        routes = _keep_usable_defaults(client, out, routes, model)
    for route in routes:
        if route.get("model") == model:
            route["deployments"] = (list(route.get("deployments") or []) if append else []) + new_deployments
            break
    else:
        routes.append({"model": model, "deployments": new_deployments})
    result = _write_routes(client, routes)
    _show_route(out, model, result, routes)


def _keep_usable_defaults(client: Any, out: Any, routes: list[dict], model: str) -> list[dict]:
    """The first configured route replaces the built-in defaults: carry the defaults over (so the
    other models keep working) where their providers exist; the service refuses unknown providers."""
    known = {p.get("name") for p in data_list(client.get("/v1/providers"), "providers")}
    kept, dropped = [], []
    for route in routes:
        if route.get("model") == model:
            kept.append(route)
        elif all(d.get("provider") in known for d in route.get("deployments") or []):
            kept.append(route)
        else:
            dropped.append(route.get("model", "?"))
    if kept and [r for r in kept if r.get("model") != model]:
        out.note("The table held only the built-in defaults; they are saved along with this route.")
    if dropped:
        out.note(f"Default route(s) for {', '.join(dropped)} dropped: their provider is not configured.")
    return kept


@app.command("remove")
def remove_model(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Public model name or glob, exactly as listed.")],
    yes: YesOpt = False,
    output: OutputOpt = None,
) -> None:
    """Remove one model's route."""
    st, out = printer(ctx, output)
    client = st.keys()
    routes, _ = _read_routes(client)
    remaining = [route for route in routes if route.get("model") != model]
    if len(remaining) == len(routes):
        known = ", ".join(route.get("model", "?") for route in routes) or "none"
        raise CliError(f"no route for model {model!r} (routes: {known})")
    if not yes:
        typer.confirm(f"Remove the route for {model}?", abort=True, err=True)
    result = _write_routes(client, remaining)
    if out.is_table:
        out.message(f"removed the route for {model}")
        if not remaining:
            out.note("The table is empty now: the built-in default routes apply again.")
    else:
        out.json(result)


def _show_route(out: Any, model: str, result: Any, sent: list[dict]) -> None:
    if not out.is_table:
        out.json(result)
        return
    try:
        routes = data_list(result, "routes")
    except CliError:
        routes = sent
    mine = [route for route in routes if route.get("model") == model] or [
        route for route in sent if route.get("model") == model
    ]
    out.records(mine, ROUTE_COLUMNS, result, title=f"route for {model}")
