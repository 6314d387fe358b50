"""What the embedded NATS and PostgreSQL servers share: a child process on a loopback port that
this library may have picked itself, started (retrying on another port after losing a race for
it), stopped, killed and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from llmgw_devstack.ports import free_port


class EmbeddedServer:
    #: the signal of a clean shutdown, and how long start/stop may take by default
    stop_signal = signal.SIGTERM
    start_timeout = 20.0
    stop_timeout = 10.0
    #: kill the whole process group (a server with worker processes of its own)
    kill_group = False

    def __init__(
        self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", log_file: Path | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port or free_port(host)
        #: a port we picked ourselves may be taken by someone else before the server binds it
        self._port_is_ours = port is None
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _start(self, timeout: float) -> None:
        raise NotImplementedError

    def _may_retry(self, error: RuntimeError) -> bool:
        """After a failed start: another port may help (only when we picked the port ourselves)."""
        return self._port_is_ours

    def start(self, timeout: float | None = None) -> None:
        for attempt in range(3):
            try:
                self._start(timeout or self.start_timeout)
                self._port_is_ours = False  # clients know this port now: restarts keep it
                return
            except RuntimeError as error:
                if attempt == 2 or not self._may_retry(error):
                    raise
                self.port = free_port(self.host)

    def stop(self, timeout: float | None = None) -> None:
        if not self.is_running():
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout or self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.is_running():
            if self.kill_group:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()
