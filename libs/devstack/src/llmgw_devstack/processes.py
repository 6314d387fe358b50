"""Child processes (services, the mock provider) started, watched and stopped by the launcher,
the end-to-end tests and the benchmarks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llmgw_devstack.ports import parent_death_hook


def _relay_output(name: str, stream) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


@dataclass
class Child:
    """A service process the launcher owns and restarts when it dies."""

    name: str
    args: list[str]
    env: dict[str, str]
    health_url: str | None = None
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_restart_at: float = 0.0
    started_at: float = field(default=0.0)
    #: when set, output is appended there instead of relayed (prefixed) to our stdout
    log_file: Path | None = None

    def start(self) -> None:
        output = open(self.log_file, "ab") if self.log_file else subprocess.PIPE
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops children in order
            preexec_fn=parent_death_hook(),
        )
        self.started_at = time.monotonic()
        if not self.log_file:
            threading.Thread(target=_relay_output, args=(self.name, self.process.stdout), daemon=True).start()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"[llmgw] {self.name} did not stop within {timeout:.0f}s; killing it", flush=True)
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no chance to clean up (fault tests)."""
        if self.alive():
            self.process.kill()
            self.process.wait()


def wait_healthy(url: str, timeout: float, alive: Callable[[], bool], name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not alive():
            raise RuntimeError(f"{name} exited during start-up (see its log lines above)")
        time.sleep(0.1)
    raise TimeoutError(f"{name} not healthy at {url} after {timeout:.0f}s")


def http_json(method: str, url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


