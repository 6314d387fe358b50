"""Where the CLI finds its service URLs and admin token.

Precedence, highest first, separately for every setting:

1. command-line flags (``--token``, ``--key-service-url``, ``--metering-url``)
2. environment (``LLMGW_ADMIN_TOKEN``, ``LLMGW_KEY_SERVICE_URL``, ``LLMGW_METERING_URL``)
3. the config file: ``$LLMGW_CONFIG``, else ``$XDG_CONFIG_HOME/llmgw/config.toml``
   (``~/.config/llmgw/config.toml``); keys ``admin_token``, ``key_service_url``, ``metering_url``,
   ``state_dir``
4. for the token only, local development: the ``admin_token`` file that ``make run`` writes into the
   state dir (``$LLMGW_STATE_DIR``, else the config file's ``state_dir``, else the first ``.llmgw/``
   found in the current directory or one of its parents)
5. defaults: ``http://127.0.0.1:8081`` and ``http://127.0.0.1:8082`` — on ``$LLMGW_KEYS_PORT`` /
   ``$LLMGW_METERING_PORT`` when those are set, as for the services themselves
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llmgw_cli.errors import CliError

DEFAULT_KEY_SERVICE_URL = "http://127.0.0.1:8081"
DEFAULT_METERING_URL = "http://127.0.0.1:8082"
STATE_DIR_NAME = ".llmgw"
TOKEN_FILE_NAME = "admin_token"
CONFIG_KEYS = ("admin_token", "key_service_url", "metering_url", "state_dir")


@dataclass(frozen=True)
class Config:
    key_service_url: str
    metering_url: str
    admin_token: str | None = field(default=None, repr=False)
    #: where the token came from, for messages (never the token itself)
    token_source: str | None = None
    config_file: Path | None = None


def default_config_path(env: Mapping[str, str], home: Path) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(base) / "llmgw" / "config.toml"


def load_config_file(env: Mapping[str, str], home: Path) -> tuple[dict, Path | None]:
    """The config file's settings and its path (``({}, None)`` when there is none)."""
    explicit = _get(env, "LLMGW_CONFIG")
    path = Path(explicit).expanduser() if explicit else default_config_path(env, home)
    if not path.exists():
        if explicit:
            raise CliError(f"config file {path} (from LLMGW_CONFIG) does not exist", exit_code=2)
        return {}, None
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read config file {path}: {exc.strerror or exc}", exit_code=2) from None
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"config file {path} is not valid TOML: {exc}", exit_code=2) from None
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise CliError(
            f"config file {path}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})",
            exit_code=2,
        )
    for key, value in data.items():
        if not isinstance(value, str):
            raise CliError(f"config file {path}: {key} must be a string", exit_code=2)
    return data, path


def find_state_dir_token(env: Mapping[str, str], cwd: Path, configured_state_dir: str | None) -> Path | None:
    """The ``admin_token`` file ``make run`` keeps in the state dir, if there is one."""
    state_dir = _get(env, "LLMGW_STATE_DIR") or configured_state_dir
    if state_dir:
        directory = Path(state_dir).expanduser()
        if not directory.is_absolute():
            directory = cwd / directory
        candidate = directory / TOKEN_FILE_NAME
        return candidate if candidate.is_file() else None
    for directory in (cwd, *cwd.parents):
        candidate = directory / STATE_DIR_NAME / TOKEN_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def resolve_config(
    *,
    token: str | None = None,
    key_service_url: str | None = None,
    metering_url: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    home: Path | None = None,
) -> Config:
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    home = Path.home() if home is None else home
    file_settings, config_path = load_config_file(env, home)

    def pick(flag: str | None, env_name: str, file_key: str, default: str) -> str:
        value = flag or _get(env, env_name) or file_settings.get(file_key) or default
        return value.rstrip("/")

    ks_url = pick(key_service_url, "LLMGW_KEY_SERVICE_URL", "key_service_url", _local_url(env, "LLMGW_KEYS_PORT", DEFAULT_KEY_SERVICE_URL))
    m_url = pick(metering_url, "LLMGW_METERING_URL", "metering_url", _local_url(env, "LLMGW_METERING_PORT", DEFAULT_METERING_URL))

    admin_token: str | None
    source: str | None
    if token:
        admin_token, source = token, "--token"
    elif _get(env, "LLMGW_ADMIN_TOKEN"):
        admin_token, source = _get(env, "LLMGW_ADMIN_TOKEN"), "LLMGW_ADMIN_TOKEN"
    elif file_settings.get("admin_token"):
        admin_token, source = file_settings["admin_token"], f"config file {config_path}"
    else:
        admin_token, source = None, None
        token_file = find_state_dir_token(env, cwd, file_settings.get("state_dir"))
        if token_file is not None:
            try:
                admin_token = token_file.read_text().strip() or None
            except OSError as exc:
                raise CliError(f"cannot read the admin token file {token_file}: {exc.strerror}", exit_code=2) from None
            source = f"state dir file {token_file}" if admin_token else None
    return Config(
        key_service_url=ks_url,
        metering_url=m_url,
        admin_token=admin_token,
        token_source=source,
        config_file=config_path,
    )


def _local_url(env: Mapping[str, str], port_variable: str, default: str) -> str:
    """The local default URL, on the port the service itself was told to use (``make run`` with
    ``LLMGW_KEYS_PORT=…`` and the CLI in the same shell agree)."""
    port = _get(env, port_variable)
    if port is None:
        return default
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"{port_variable}={port!r} is not a port number", exit_code=2)
    return f"http://127.0.0.1:{int(port)}"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value and value.strip() else None
