"""Expected failures: one clear line, the right exit code, no traceback, never the token."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from llmgw_devstack.ports import free_port

TOKEN = "llmgw-admin-secret-never-printed"


@pytest.fixture
def closed_url() -> str:
    """A loopback URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "list"],
        ["keys", "show", "abc"],
        ["keys", "create", "--name", "n", "--project", "p"],
        ["keys", "revoke", "abc", "--yes"],
        ["providers", "list"],
        ["models", "list"],
        ["tokens", "list"],
    ],
)
def test_key_service_unreachable(cli, closed_url, args):
    result = cli(args, env={"LLMGW_KEY_SERVICE_URL": closed_url, "LLMGW_ADMIN_TOKEN": TOKEN})
    assert result.exit_code == 2
    assert result.stdout == ""
    first_line = result.stderr.splitlines()[0]
    assert first_line == f"error: cannot reach key-service at {closed_url} (connection refused)"
    assert "make run" in result.stderr
    assert "LLMGW_KEY_SERVICE_URL" in result.stderr
    assert "Traceback" not in result.output
    assert TOKEN not in result.output


@pytest.mark.parametrize("args", [["usage"], ["usage", "--group-by", "model"], ["usage", "events"], ["usage", "key", "k"]])
def test_metering_unreachable(cli, closed_url, args):
    result = cli(args, env={"LLMGW_METERING_URL": closed_url, "LLMGW_ADMIN_TOKEN": TOKEN})
    assert result.exit_code == 2
    assert f"cannot reach metering at {closed_url}" in result.stderr
    assert "LLMGW_METERING_URL" in result.stderr
    assert "Traceback" not in result.output
    assert TOKEN not in result.output


def test_url_flag_wins_over_env(cli, closed_url):
    other = f"http://127.0.0.1:{free_port()}"
    result = cli(["--key-service-url", closed_url, "keys", "list"], env={"LLMGW_KEY_SERVICE_URL": other, "LLMGW_ADMIN_TOKEN": TOKEN})
    assert closed_url in result.stderr and other not in result.stderr


def test_no_token_anywhere(cli, closed_url):
    result = cli(["keys", "list"], env={"LLMGW_KEY_SERVICE_URL": closed_url})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no admin token")
    assert "LLMGW_ADMIN_TOKEN" in result.stderr and "make run" in result.stderr


def test_invalid_service_url(cli):
    result = cli(["keys", "list"], env={"LLMGW_KEY_SERVICE_URL": "localhost:8081", "LLMGW_ADMIN_TOKEN": TOKEN})
    assert result.exit_code == 2
    assert "invalid key-service URL" in result.stderr
    assert "Traceback" not in result.output


def test_bad_config_file_is_reported_not_raised(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("admin_token = ")
    result = cli(["keys", "list"], env={"LLMGW_CONFIG": str(bad)})
    assert result.exit_code == 2
    assert "not valid TOML" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["keys", "create", "--name", "n", "--project", "p", "--metadata", "[1]"], "must be a JSON object"),
        (["keys", "create", "--name", "n", "--project", "p", "--expires-at", "soon"], "ISO 8601"),
        (["keys", "create", "--name", "n", "--project", "p", "--budget-period", "yearly"], "yearly"),
        (["keys", "update", "abc"], "nothing to change"),
        (["keys", "update", "abc", "--rpm", "5", "--clear-rpm"], "contradicts"),
        (["models", "set", "m", "--deployment", "openai"], "provider:upstream_model"),
        (["usage", "--group-by", "week"], "unknown group week"),
        (["providers", "set", "p", "--kind", "openai", "--base-url", "http://x", "--api-key", "a", "--no-api-key"], "only one of"),
        (["providers", "set", "p", "--kind", "openai", "--base-url", "http://x"], "--api-key-stdin"),
    ],
)
def test_bad_input_fails_before_any_request(cli, closed_url, args, fragment):
    env = {"LLMGW_KEY_SERVICE_URL": closed_url, "LLMGW_METERING_URL": closed_url, "LLMGW_ADMIN_TOKEN": TOKEN}
    result = cli(args, env=env)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "cannot reach" not in result.output  # refused before talking to the service
    assert "Traceback" not in result.output


def test_revoke_asks_first(cli, closed_url):
    env = {"LLMGW_KEY_SERVICE_URL": closed_url, "LLMGW_ADMIN_TOKEN": TOKEN}
    result = cli(["keys", "revoke", "abc"], env=env, input="n\n")
    assert result.exit_code == 1
    assert "Revoke key abc?" in result.stderr
    assert "cannot reach" not in result.output  # declined: no request made


def test_installed_entry_point_exits_cleanly(closed_url, tmp_path):
    """The real process: exit status 2 and no traceback for an unreachable service."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LLMGW_") and k not in ("XDG_CONFIG_HOME",)
    }
    env.update({"LLMGW_KEY_SERVICE_URL": closed_url, "LLMGW_ADMIN_TOKEN": TOKEN, "HOME": str(tmp_path)})
    proc = subprocess.run(
        [sys.executable, "-m", "llmgw_cli", "keys", "list"], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f"cannot reach key-service at {closed_url}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout


def test_version_and_help(cli):
    assert cli(["--version"]).stdout.startswith("llmgw ")
    result = cli(["--help"])
    assert result.exit_code == 0
    for command in ("keys", "providers", "models", "tokens", "usage"):
        assert command in result.stdout
