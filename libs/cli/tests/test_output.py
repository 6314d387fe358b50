"""Formatting and parsing helpers (no server needed)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import typer

from llmgw_cli.commands.models import parse_deployment
from llmgw_cli.commands.usage import METRIC_COLUMNS, parse_group_by, report_columns, totals
from llmgw_cli.core import data_list, parse_json_object, parse_time, split_csv
from llmgw_cli.errors import CliError
from llmgw_cli.output import (
    Column,
    OutputFormat,
    Printer,
    csv_value,
    flatten,
    format_time,
    format_usd,
    to_csv,
)


def test_to_csv_takes_every_field_and_keeps_nested_values_as_json():
    rows = [
        {"id": "a", "models": ["gpt-4o*", "claude-*"], "rpm_limit": None, "metadata": {"owner": "ana"}},
        {"id": "b", "active": True, "budget_usd": 1.5, "name": 'quote " and, comma'},
    ]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert list(parsed[0]) == ["id", "models", "rpm_limit", "metadata", "active", "budget_usd", "name"]
    assert json.loads(parsed[0]["models"]) == ["gpt-4o*", "claude-*"]
    assert json.loads(parsed[0]["metadata"]) == {"owner": "ana"}
    assert parsed[0]["rpm_limit"] == ""
    assert parsed[1]["active"] == "true"
    assert parsed[1]["budget_usd"] == "1.5"
    assert parsed[1]["name"] == 'quote " and, comma'


def test_to_csv_with_fixed_fields_and_no_rows():
    assert to_csv([], ["a", "b"]) == "a,b\n"
    assert csv_value(False) == "false"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T10:00:00Z", "2026-11-23 10:00:00Z"),
        ("2026-11-23T10:00:00.123456+00:00", "2026-11-23 10:00:00Z"),
        ("2026-11-23T10:00:00+02:00", "2026-11-23 10:00:00+0200"),
        ("2026-11-23T10:00:00", "2026-11-23 10:00:00"),
        ("not a time", "not a time"),
    ],
)
def test_format_time(value, expected):
    assert format_time(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(0, "$0"), (0.0012, "$0.0012"), (12.5, "$12.50"), (1234.567, "$1,234.57"), ("x", "x")]
)
def test_format_usd(value, expected):
    assert format_usd(value) == expected


def test_flatten_nests_objects_but_keeps_metadata_whole():
    record = {"id": "k", "totals": {"requests": 3, "cost_usd": 0.5}, "metadata": {"a": {"b": 1}}}
    assert flatten(record) == [("id", "k"), ("totals.requests", 3), ("totals.cost_usd", 0.5), ("metadata", {"a": {"b": 1}})]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini", 1, 0)),
        ("openai:gpt-4o-mini:3", ("openai", "gpt-4o-mini", 3, 0)),
        ("openai:gpt-4o-mini:3:1", ("openai", "gpt-4o-mini", 3, 1)),
        ("ollama:llama3:8b", ("ollama", "llama3:8b", 1, 0)),
        ("ollama:llama3:8b:2:1", ("ollama", "llama3:8b", 2, 1)),
        ("ollama:qwen:7:1:0", ("ollama", "qwen:7", 1, 0)),
        ("mock:*", ("mock", "*", 1, 0)),
    ],
)
def test_parse_deployment(spec, expected):
    d = parse_deployment(spec)
    assert (d["provider"], d["model"], d["weight"], d["priority"]) == expected


@pytest.mark.parametrize("spec", ["openai", "openai:", ":gpt-4o", ""])
def test_parse_deployment_rejects_incomplete_specs(spec):
    with pytest.raises(typer.BadParameter):
        parse_deployment(spec)


def test_parse_time():
    assert parse_time(None, future=True, option="--x") is None
    assert parse_time("2026-01-02T03:04:05Z", future=True, option="--x") == "2026-01-02T03:04:05Z"
    assert parse_time("2026-01-02", future=False, option="--x") == "2026-01-02"
    ahead = datetime.fromisoformat(parse_time("30d", future=True, option="--x").replace("Z", "+00:00"))
    assert abs(ahead - (datetime.now(UTC) + timedelta(days=30))) < timedelta(seconds=5)
    back = datetime.fromisoformat(parse_time("12h", future=False, option="--x").replace("Z", "+00:00"))
    assert abs(back - (datetime.now(UTC) - timedelta(hours=12))) < timedelta(seconds=5)
    with pytest.raises(typer.BadParameter):
        parse_time("next tuesday", future=True, option="--x")


def test_parse_json_object_and_split_csv():
    assert parse_json_object('{"owner": "ana"}', "--metadata") == {"owner": "ana"}
    for bad in ("[1]", "{nope", '"s"'):
        with pytest.raises(typer.BadParameter):
            parse_json_object(bad, "--metadata")
    assert split_csv(["a,b", " c ", "", "d,,"]) == ["a", "b", "c", "d"]


def test_data_list_accepts_the_api_envelopes():
    assert data_list({"data": [{"a": 1}], "next_cursor": None}) == [{"a": 1}]
    assert data_list([{"a": 1}]) == [{"a": 1}]
    assert data_list({"routes": [1]}, "routes") == [1]
    with pytest.raises(CliError):
        data_list({"nothing": 1})


def test_group_by_validation_and_report_columns():
    assert parse_group_by(["key,model", "day"]) == ["key", "model", "day"]
    with pytest.raises(typer.BadParameter):
        parse_group_by(["key,week"])
    columns = report_columns(["day", "key", "model"], [{"bucket": "2026-01-01T00:00:00Z", "key_id": "k"}])
    assert [c.header for c in columns[:3]] == ["BUCKET", "KEY", "MODEL"]
    assert columns[3:] == METRIC_COLUMNS
    rows = [{"requests": 2, "cost_usd": 0.5}, {"requests": 3, "cost_usd": 0.25}]
    footer = totals(rows, columns)
    assert footer["REQ"] == 5 and footer["COST"] == 0.75 and footer["BUCKET"] == "total"
    assert totals(rows[:1], columns) is None


def test_printer_json_is_the_raw_answer(capsys):
    raw = {"data": [{"id": "a", "n": 1.5}], "next_cursor": None}
    Printer(OutputFormat.json).records(raw["data"], [Column("ID", "id")], raw)
    assert json.loads(capsys.readouterr().out) == raw


def test_printer_table_and_csv(capsys):
    rows = [{"id": "k1", "name": "alpha", "tags": ["a", "b"], "rpm_limit": None}]
    columns = [Column("ID", "id"), Column("NAME", "name"), Column("TAGS", "tags"), Column("RPM", "rpm_limit")]
    Printer(OutputFormat.table).records(rows, columns, {"data": rows})
    out = capsys.readouterr().out
    for text in ("ID", "NAME", "k1", "alpha", "a, b"):
        assert text in out
    Printer(OutputFormat.csv).records(rows, columns, {"data": rows})
    assert capsys.readouterr().out == 'id,name,tags,rpm_limit\nk1,alpha,"[""a"",""b""]",\n'


def test_printer_empty_table_says_so_on_stderr(capsys):
    Printer(OutputFormat.table).records([], [Column("ID", "id")], {"data": []}, empty="no keys")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no keys" in captured.err


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0000186, "0.0000186"), (0.00012345, "0.000123"), (0.123456, "0.1235"), (12.5, "12.5"), (3.0, "3"),
     (1234.56789, "1,234.5679")],
)
def test_format_number_never_shows_a_small_amount_as_zero(value, expected):
    from llmgw_cli.output import format_number

    assert format_number(value) == expected
