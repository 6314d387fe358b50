"""Shared CLI plumbing: the Typer subclass that turns expected failures into one-line errors,
the per-invocation state (config, clients, printer) and option parsers."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from llmgw_cli.client import KEY_SERVICE, METERING, ApiClient
from llmgw_cli.config import Config, resolve_config
from llmgw_cli.errors import CliError
from llmgw_cli.output import OutputFormat, Printer


def report_error(error: CliError) -> None:
    console = Console(stderr=True, highlight=False)
    console.print(Text.assemble(("error: ", "bold red"), error.message), soft_wrap=True)
    if error.hint:
        console.print(Text(error.hint, style="dim"), soft_wrap=True)


def _guard(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except CliError as error:
            report_error(error)
            raise typer.Exit(error.exit_code) from None

    return wrapper


class App(typer.Typer):
    """A Typer whose commands print :class:`CliError` as one line and exit with its code."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("no_args_is_help", True)
        kwargs.setdefault("rich_markup_mode", "rich")
        kwargs.setdefault("pretty_exceptions_enable", False)
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        register = super().command(*args, **kwargs)

        def decorator(func: Callable) -> Callable:
            register(_guard(func))
            return func

        return decorator

    def callback(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        register = super().callback(*args, **kwargs)

        def decorator(func: Callable) -> Callable:
            register(_guard(func))
            return func

        return decorator


# --- per-invocation state -------------------------------------------------------------------
@dataclass
class State:
    output: OutputFormat = OutputFormat.table
    token: str | None = field(default=None, repr=False)
    key_service_url: str | None = None
    metering_url: str | None = None
    _config: Config | None = field(default=None, repr=False)
    _clients: dict[str, ApiClient] = field(default_factory=dict, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = resolve_config(
                token=self.token, key_service_url=self.key_service_url, metering_url=self.metering_url
            )
        return self._config

    def keys(self) -> ApiClient:
        return self._client("keys", lambda cfg: (cfg.key_service_url, KEY_SERVICE))

    def metering(self) -> ApiClient:
        return self._client("metering", lambda cfg: (cfg.metering_url, METERING))

    def _client(self, name: str, pick: Callable) -> ApiClient:
        if name not in self._clients:
            cfg = self.config
            url, service = pick(cfg)
            self._clients[name] = ApiClient(url, cfg.admin_token, service, token_source=cfg.token_source)
        return self._clients[name]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def state(ctx: typer.Context, output: OutputFormat | None = None) -> State:
    """The root command's state; a command's own ``--output`` wins over the global one."""
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    st: State = root.obj
    if output is not None:
        st.output = output
    return st


def printer(ctx: typer.Context, output: OutputFormat | None = None) -> tuple[State, Printer]:
    st = state(ctx, output)
    return st, Printer(st.output)


OutputOpt = Annotated[
    Optional[OutputFormat],
    typer.Option("--output", "-o", help="table, json (the raw API answer) or csv.", show_default=False),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


# --- option parsers -------------------------------------------------------------------------
_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(value: str | None, *, future: bool, option: str) -> str | None:
    """An ISO 8601 instant (kept as given; the services read a missing offset as UTC), or a
    relative duration like ``30d``/``12h``/``90m`` counted from now (into the future for expiry
    times, into the past for report windows), or ``now``."""
    if value is None:
        return None
    text = value.strip()
    now = datetime.now(UTC).replace(microsecond=0)
    if text.lower() == "now":
        return now.isoformat().replace("+00:00", "Z")
    match = _RELATIVE.match(text)
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        instant = now + delta if future else now - delta
        return instant.isoformat().replace("+00:00", "Z")
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither an ISO 8601 time (2025-07-01T00:00:00Z) nor a duration like 30d, 12h",
            param_hint=option,
        ) from None
    return text


def parse_json_object(value: str | None, option: str) -> dict | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc.msg}", param_hint=option) from None
    if not isinstance(parsed, dict):
        raise typer.BadParameter("must be a JSON object, like '{\"owner\": \"ana\"}'", param_hint=option)
    return parsed


def split_csv(values: list[str] | None) -> list[str]:
    """``--x a,b --x c`` → ``[a, b, c]``."""
    out: list[str] = []
    for value in values or []:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def data_list(answer: Any, *names: str) -> list[dict]:
    """The list inside an answer: a bare list, ``{"data": [...]}`` or ``{"<name>": [...]}``."""
    if isinstance(answer, list):
        return answer
    if isinstance(answer, dict):
        for name in ("data", *names):
            if isinstance(answer.get(name), list):
                return answer[name]
    raise CliError("unexpected answer shape from the service (expected a list)")


def path_id(value: str) -> str:
    """A path segment, percent-encoded (ids and names come from users)."""
    from urllib.parse import quote

    return quote(value, safe="")
