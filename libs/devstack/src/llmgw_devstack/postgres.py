"""A real PostgreSQL as a child process, from the ``pgserver`` wheel's binaries (or system ones).

Listens on 127.0.0.1:<port> so every client takes a plain URL. As root the server runs as an
unprivileged system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from llmgw_devstack.ports import parent_death_hook, wait_for_port
from llmgw_devstack.server import EmbeddedServer

SYSTEM_USER = "pgserver"


def postgres_bin_dir() -> Path:
    configured = os.environ.get("LLMGW_PG_BIN_DIR")
    if configured:
        return Path(configured)
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)
    except ImportError:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        if not candidates:
            raise RuntimeError("no PostgreSQL binaries: install the pgserver package") from None
        return candidates[-1]


def _prepare_for_unprivileged_user(data_dir: Path, bin_dir: Path) -> str | None:
    """As root: make sure the system user exists and can reach the data dir and binaries."""
    if os.geteuid() != 0:
        return None
    import pwd
    import stat

    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(data_dir)
    ensure_prefix_permissions(bin_dir)
    ensure_folder_permissions(bin_dir, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    for path in [data_dir, *data_dir.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return pwd.getpwnam(SYSTEM_USER).pw_name


class EmbeddedPostgres(EmbeddedServer):
    stop_signal = signal.SIGINT  # fast shutdown: in-flight transactions roll back, committed data is safe
    start_timeout = 30.0
    stop_timeout = 15.0
    kill_group = True  # the postmaster and its backends

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", log_file: Path | None = None):
        super().__init__(Path(data_dir).absolute(), port, host, log_file)
        self.bin_dir = postgres_bin_dir()
        self._user: str | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._user = _prepare_for_unprivileged_user(self.data_dir, self.bin_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            capture_output=True,
            user=self._user,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stderr.decode(errors='replace').strip()}")

    def _may_retry(self, error: RuntimeError) -> bool:
        return "initdb" not in str(error) and super()._may_retry(error)

    def _start(self, timeout: float) -> None:
        self._initdb()
        stale_pid = self.data_dir / "postmaster.pid"
        if stale_pid.exists() and not self.is_running():
            # Left by a killed server; postgres itself checks the pid, this only avoids a refused start
            # when the old pid was reused by an unrelated process.
            try:
                pid = int(stale_pid.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, PermissionError, IndexError):
                stale_pid.unlink(missing_ok=True)
        args = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-h", self.host,
            "-p", str(self.port),
            "-k", str(self.data_dir),
            "-c", "max_connections=300",
            "-c", "fsync=on",
            "-c", "listen_addresses=" + self.host,
        ]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, user=self._user, start_new_session=True, preexec_fn=parent_death_hook())
        wait_for_port(self.host, self.port, timeout, "postgres", alive=self.is_running)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            if result.returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError("postgres did not become ready")

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", database,
             "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout

    def create_database(self, name: str) -> str:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if not exists.strip():
            self.psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)
