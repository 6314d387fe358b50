"""Where the CLI takes its URLs and token from: flags > env > config file > state dir > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgw_cli.config import DEFAULT_KEY_SERVICE_URL, DEFAULT_METERING_URL, resolve_config
from llmgw_cli.errors import CliError


def write_config(home: Path, text: str) -> Path:
    path = home / ".config" / "llmgw" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_state_token(directory: Path, token: str) -> Path:
    path = directory / ".llmgw" / "admin_token"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(token + "\n")
    return path


@pytest.fixture
def home(tmp_path) -> Path:
    path = tmp_path / "home"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def cwd(tmp_path) -> Path:
    path = tmp_path / "repo" / "sub" / "dir"
    path.mkdir(parents=True)
    return path


def test_defaults_without_any_configuration(home, cwd):
    cfg = resolve_config(env={}, cwd=cwd, home=home)
    assert cfg.key_service_url == DEFAULT_KEY_SERVICE_URL == "http://127.0.0.1:8081"
    assert cfg.metering_url == DEFAULT_METERING_URL == "http://127.0.0.1:8082"
    assert cfg.admin_token is None
    assert cfg.token_source is None
    assert cfg.config_file is None


def test_local_defaults_follow_the_service_port_variables(home, cwd):
    """``LLMGW_KEYS_PORT=18081 make run`` and the CLI in the same shell find each other."""
    env = {"LLMGW_KEYS_PORT": "18081", "LLMGW_METERING_PORT": "18082"}
    cfg = resolve_config(env=env, cwd=cwd, home=home)
    assert (cfg.key_service_url, cfg.metering_url) == ("http://127.0.0.1:18081", "http://127.0.0.1:18082")
    # an explicit URL still wins
    cfg = resolve_config(env={**env, "LLMGW_KEY_SERVICE_URL": "http://keys:1"}, cwd=cwd, home=home)
    assert cfg.key_service_url == "http://keys:1" and cfg.metering_url == "http://127.0.0.1:18082"
    with pytest.raises(CliError, match="LLMGW_KEYS_PORT"):
        resolve_config(env={"LLMGW_KEYS_PORT": "eighty"}, cwd=cwd, home=home)


def test_env_beats_file_beats_state_dir(home, cwd, tmp_path):
    config_path = write_config(
        home, 'admin_token = "from-file"\nkey_service_url = "http://file:1/"\nmetering_url = "http://file:2"\n'
    )
    write_state_token(tmp_path / "repo", "from-state-dir")

    cfg = resolve_config(env={}, cwd=cwd, home=home)
    assert cfg.admin_token == "from-file"
    assert cfg.token_source == f"config file {config_path}"
    assert cfg.key_service_url == "http://file:1"  # trailing slash dropped
    assert cfg.metering_url == "http://file:2"

    env = {"LLMGW_ADMIN_TOKEN": "from-env", "LLMGW_KEY_SERVICE_URL": "http://env:1", "LLMGW_METERING_URL": "http://env:2"}
    cfg = resolve_config(env=env, cwd=cwd, home=home)
    assert (cfg.admin_token, cfg.token_source) == ("from-env", "LLMGW_ADMIN_TOKEN")
    assert (cfg.key_service_url, cfg.metering_url) == ("http://env:1", "http://env:2")

    cfg = resolve_config(
        token="from-flag", key_service_url="http://flag:1", metering_url="http://flag:2", env=env, cwd=cwd, home=home
    )
    assert (cfg.admin_token, cfg.token_source) == ("from-flag", "--token")
    assert (cfg.key_service_url, cfg.metering_url) == ("http://flag:1", "http://flag:2")


def test_state_dir_token_found_in_a_parent_directory(home, cwd, tmp_path):
    token_file = write_state_token(tmp_path / "repo", "llmgw-admin-local")
    cfg = resolve_config(env={}, cwd=cwd, home=home)
    assert cfg.admin_token == "llmgw-admin-local"  # surrounding whitespace stripped
    assert cfg.token_source == f"state dir file {token_file}"


def test_state_dir_from_env_is_used_and_relative_to_cwd(home, cwd, tmp_path):
    write_state_token(tmp_path / "repo", "from-parent")  # ignored: LLMGW_STATE_DIR names another dir
    custom = cwd / "custom-state"
    custom.mkdir()
    (custom / "admin_token").write_text("from-custom")
    cfg = resolve_config(env={"LLMGW_STATE_DIR": "custom-state"}, cwd=cwd, home=home)
    assert cfg.admin_token == "from-custom"

    empty = resolve_config(env={"LLMGW_STATE_DIR": str(tmp_path / "nowhere")}, cwd=cwd, home=home)
    assert empty.admin_token is None


def test_config_file_state_dir_setting(home, cwd, tmp_path):
    state = tmp_path / "elsewhere"
    state.mkdir()
    (state / "admin_token").write_text("from-configured-state")
    write_config(home, f'state_dir = "{state}"\n')
    assert resolve_config(env={}, cwd=cwd, home=home).admin_token == "from-configured-state"


def test_llmgw_config_and_xdg_locations(home, cwd, tmp_path):
    explicit = tmp_path / "my.toml"
    explicit.write_text('metering_url = "http://explicit:9"\n')
    write_config(home, 'metering_url = "http://home:9"\n')
    assert resolve_config(env={"LLMGW_CONFIG": str(explicit)}, cwd=cwd, home=home).metering_url == "http://explicit:9"

    xdg = tmp_path / "xdg"
    (xdg / "llmgw").mkdir(parents=True)
    (xdg / "llmgw" / "config.toml").write_text('metering_url = "http://xdg:9"\n')
    assert resolve_config(env={"XDG_CONFIG_HOME": str(xdg)}, cwd=cwd, home=home).metering_url == "http://xdg:9"
    assert resolve_config(env={}, cwd=cwd, home=home).metering_url == "http://home:9"


def test_empty_env_values_count_as_unset(home, cwd):
    write_config(home, 'admin_token = "from-file"\n')
    cfg = resolve_config(env={"LLMGW_ADMIN_TOKEN": "  ", "LLMGW_KEY_SERVICE_URL": ""}, cwd=cwd, home=home)
    assert cfg.admin_token == "from-file"
    assert cfg.key_service_url == DEFAULT_KEY_SERVICE_URL


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("admin_token = ", "not valid TOML"),
        ('adminn_token = "x"\n', "unknown setting(s) adminn_token"),
        ("metering_url = 8082\n", "metering_url must be a string"),
    ],
)
def test_bad_config_file_is_a_clear_error(home, cwd, content, message):
    path = write_config(home, content)
    with pytest.raises(CliError) as info:
        resolve_config(env={}, cwd=cwd, home=home)
    assert message in info.value.message
    assert str(path) in info.value.message
    assert info.value.exit_code == 2


def test_missing_explicit_config_file_is_an_error(home, cwd, tmp_path):
    with pytest.raises(CliError) as info:
        resolve_config(env={"LLMGW_CONFIG": str(tmp_path / "absent.toml")}, cwd=cwd, home=home)
    assert "does not exist" in info.value.message
    assert info.value.exit_code == 2


def test_config_command_shows_the_source_never_the_token(cli, isolated_cli_env):
    token = "llmgw-admin-do-not-print-me"
    write_state_token(isolated_cli_env, token)
    result = cli(["config"])
    assert result.exit_code == 0, result.output
    assert token not in result.output
    assert "state dir file" in result.stdout
    assert "http://127.0.0.1:8081" in result.stdout

    result = cli(["-o", "json", "config"], env={"LLMGW_ADMIN_TOKEN": token, "LLMGW_METERING_URL": "http://m:1"})
    assert result.exit_code == 0
    assert token not in result.output
    assert '"admin_token": "set (from LLMGW_ADMIN_TOKEN)"' in result.stdout
    assert '"metering_url": "http://m:1"' in result.stdout


def test_env_token_wins_over_state_dir_in_a_real_invocation(cli, isolated_cli_env):
    write_state_token(isolated_cli_env, "from-state")
    result = cli(["config"], env={"LLMGW_ADMIN_TOKEN": "from-env"})
    assert "LLMGW_ADMIN_TOKEN" in result.stdout
    result = cli(["--token", "from-flag", "config"], env={"LLMGW_ADMIN_TOKEN": "from-env"})
    assert "--token" in result.stdout
