"""Printing results as rich tables, raw JSON or CSV.

``json`` prints the API's own JSON, pretty-printed; ``csv`` prints every field of every record
(nested values as compact JSON); ``table`` shows a curated set of columns for reading.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@dataclass(frozen=True)
class Column:
    header: str
    key: str | Callable[[dict], Any]
    fmt: Callable[[Any], str] | None = None
    justify: str = "left"
    no_wrap: bool = False
    #: narrow terminals shrink columns; these never go below it (names must stay readable)
    min_width: int | None = None
    overflow: str = "ellipsis"

    def value(self, row: dict) -> Any:
        return self.key(row) if callable(self.key) else row.get(self.key)

    def cell(self, row: dict) -> Text:
        value = self.value(row)
        if self.fmt is not None and value is not None:
            return Text(self.fmt(value))
        return cell_text(value)


# --- value formatting --------------------------------------------------------------------------
def cell_text(value: Any) -> Text:
    if value is None or value == "" or value == [] or value == {}:
        return Text("-", style="dim")
    return Text(plain(value))


def plain(value: Any) -> str:
    """A value as readable text (tables, detail views)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, list):
        return ", ".join(plain(v) if not isinstance(v, (dict, list)) else compact_json(v) for v in value)
    if isinstance(value, dict):
        return compact_json(value)
    if isinstance(value, str):
        return format_time(value) if looks_like_timestamp(value) else value
    return str(value)


def csv_value(value: Any) -> str:
    """A value for a CSV cell: exact, machine-readable (JSON for nested values)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return compact_json(value)
    return str(value)


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)


def format_number(value: float | int) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    if abs(value) < 1:
        # small amounts (a request's cost in USD) keep three significant digits: never shown as 0
        decimals = max(4, 2 - math.floor(math.log10(abs(value))))
        return f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def format_int(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def format_usd(value: Any) -> str:
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return str(value)
    if amount == 0:
        return "$0"
    if abs(amount) < 0.01:
        return f"${amount:.6f}".rstrip("0")
    return f"${amount:,.2f}"


def format_ms(value: Any) -> str:
    try:
        return f"{float(value):,.0f}"
    except (TypeError, ValueError):
        return str(value)


def looks_like_timestamp(value: str) -> bool:
    return len(value) >= 19 and value[4] == "-" and value[7] == "-" and value[10] in "T " and value[13] == ":"


def format_time(value: Any) -> str:
    """ISO 8601 → ``2025-06-01 12:34:56Z`` (seconds precision, UTC marked ``Z``)."""
    if not isinstance(value, str):
        return str(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    text = parsed.strftime("%Y-%m-%d %H:%M:%S")
    offset = parsed.utcoffset()
    if offset is None:
        return text
    if not offset:
        return text + "Z"
    return text + parsed.strftime("%z")


def flatten(record: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested objects as dotted field names, for the two-column detail view."""
    items: list[tuple[str, Any]] = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "metadata":
            items.extend(flatten(value, name + "."))
        else:
            items.append((name, value))
    return items


def to_csv(rows: Sequence[dict], fields: Sequence[str] | None = None) -> str:
    """Every field of every row (the union, first-seen order) unless ``fields`` is given."""
    if fields is None:
        fields = []
        for row in rows:
            for key in row:
                if key not in fields:
                    fields.append(key)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([csv_value(row.get(field)) for field in fields])
    return buffer.getvalue()


# --- the printer ----------------------------------------------------------------------------------
class Printer:
    def __init__(self, fmt: OutputFormat = OutputFormat.table):
        self.format = fmt
        # file=None: rich writes to whatever sys.stdout/sys.stderr is at print time.
        self.out = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    @property
    def is_table(self) -> bool:
        return self.format is OutputFormat.table

    def write(self, text: str) -> None:
        """Exactly ``text`` on stdout (JSON, CSV): no wrapping, no markup."""
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
        sys.stdout.flush()

    def json(self, data: Any) -> None:
        self.write(json.dumps(data, indent=2, ensure_ascii=False))

    def records(
        self,
        rows: Sequence[dict],
        columns: Sequence[Column],
        raw: Any,
        *,
        title: str | None = None,
        empty: str = "nothing found",
        footer: dict | None = None,
        csv_fields: Sequence[str] | None = None,
    ) -> None:
        if self.format is OutputFormat.json:
            self.json(raw)
            return
        if self.format is OutputFormat.csv:
            self.write(to_csv(rows, csv_fields))
            return
        if not rows:
            self.err.print(Text(empty, style="dim"))
            return
        table = Table(
            title=title,
            title_justify="left",
            show_footer=footer is not None,
            header_style="bold",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1),
            collapse_padding=True,
        )
        for column in columns:
            table.add_column(
                column.header,
                justify=column.justify,  # type: ignore[arg-type]
                no_wrap=column.no_wrap,
                min_width=column.min_width,
                overflow=column.overflow,  # type: ignore[arg-type]
                footer=Text(column.fmt(footer[column.header]) if column.fmt else plain(footer[column.header]))
                if footer and column.header in footer
                else "",
            )
        for row in rows:
            table.add_row(*(column.cell(row) for column in columns))
        self.out.print(table)

    def record(self, record: dict, raw: Any = None, *, title: str | None = None, hide: Iterable[str] = ()) -> None:
        if self.format is OutputFormat.json:
            self.json(record if raw is None else raw)
            return
        if self.format is OutputFormat.csv:
            self.write(to_csv([record]))
            return
        hidden = set(hide)
        table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
        table.add_column("field", style="bold cyan", no_wrap=True)
        table.add_column("value", overflow="fold")
        for name, value in flatten(record):
            if name not in hidden:
                table.add_row(name, cell_text(value))
        self.out.print(table)

    def message(self, text: str, style: str | None = None) -> None:
        """A human status line: stdout in table mode, stderr otherwise (keeps JSON/CSV stdout clean)."""
        console = self.out if self.is_table else self.err
        console.print(Text(text, style=style or ""), soft_wrap=True)

    def note(self, text: str, style: str = "dim") -> None:
        self.err.print(Text(text, style=style), soft_wrap=True)

    def warn(self, text: str) -> None:
        self.err.print(Text(text, style="bold yellow"), soft_wrap=True)

    def secret(self, label: str, value: str) -> None:
        """A secret on stdout, unwrapped, so it can be copied in one piece."""
        line = Text.assemble((f"{label}: ", "bold"), (value, "bold green"))
        self.out.print(line, soft_wrap=True, crop=False)
