"""The README's run command as a new user runs it (`make run` → `llmgw-run`): embedded NATS and
PostgreSQL, the mock provider, a demo key, supervision, and a clean stop that leaves nothing running."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai

from conftest import eventually
from llmgw_devstack.ports import free_port, port_is_open


class LauncherRun:
    def __init__(self, state_dir: Path):
        self.ports = {name: free_port() for name in ("proxy", "keys", "metering", "nats", "postgres", "mock")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
        env.update(
            LLMGW_STATE_DIR=str(state_dir),
            LLMGW_PROXY_PORT=str(self.ports["proxy"]),
            LLMGW_KEYS_PORT=str(self.ports["keys"]),
            LLMGW_METERING_PORT=str(self.ports["metering"]),
            LLMGW_NATS_PORT=str(self.ports["nats"]),
            LLMGW_POSTGRES_PORT=str(self.ports["postgres"]),
            LLMGW_MOCK_PROVIDER_PORT=str(self.ports["mock"]),
        )
        self.state_dir = state_dir
        # No terminal, as under nohup or in CI.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llmgw_devstack.launcher"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in iter(self.process.stdout.readline, b""):
            self.lines.append(raw.decode(errors="replace"))

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        def found():
            match = re.search(pattern, self.output())
            if not match and self.process.poll() is not None:
                raise RuntimeError(f"launcher exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            return match

        return eventually(found, timeout=timeout, interval=0.2, what=f"launcher output {pattern!r}")

    def pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in re.findall(r"\[llmgw\] ([\w-]+) (?:is up|restarted) \(pid (\d+)\)", self.output())}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running anymore.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_run_command_serves_supervises_and_stops_cleanly(tmp_path):
    run = LauncherRun(tmp_path / "state")
    try:
        run.wait_for(r"llmgw is running", timeout=120)
        out = run.output()
        assert "MOCK" in out  # no provider key configured: says so loudly
        admin_token = (tmp_path / "state" / "admin_token").read_text().strip()
        assert admin_token in out
        demo = json.loads((tmp_path / "state" / "demo_key.json").read_text())
        assert demo["key"] in out and "curl" in out

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{run.ports['proxy']}/v1", api_key=demo["key"], max_retries=0)
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content

        # Supervision: a service killed with SIGKILL is restarted and the launcher says so.
        metering_pid = run.pids()["metering"]
        os.kill(metering_pid, signal.SIGKILL)
        run.wait_for(r"metering exited with code -9; restarting", timeout=10)
        run.wait_for(r"metering restarted \(pid \d+\)", timeout=20)

        def metering_healthy():
            import urllib.request

            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{run.ports['metering']}/healthz", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        eventually(metering_healthy, timeout=30, interval=0.2, what="metering back after restart")
        pids = run.pids()
    finally:
        run.process.send_signal(signal.SIGTERM)
        try:
            run.process.wait(60)
        except subprocess.TimeoutExpired:
            run.process.kill()
            raise
    assert run.process.returncode == 0, run.output()[-3000:]
    assert "all stopped" in run.output()
    # Nothing left running: every child process gone, every port closed.
    for name, pid in pids.items():
        assert not pid_alive(pid), f"{name} (pid {pid}) still running"
    for name, port in run.ports.items():
        assert not port_is_open("127.0.0.1", port), f"{name} port {port} still open"


def test_second_start_keeps_state(tmp_path):
    """A restart keeps keys: the demo key from the first run still works after the second start."""
    state = tmp_path / "state"
    first = LauncherRun(state)
    try:
        first.wait_for(r"llmgw is running", timeout=120)
    finally:
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(60)
    demo = json.loads((state / "demo_key.json").read_text())
    second = LauncherRun(state)
    try:
        second.wait_for(r"llmgw is running", timeout=120)
        assert demo["key"] in second.output()
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{second.ports['proxy']}/v1", api_key=demo["key"], max_retries=0)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]).choices
    finally:
        second.process.send_signal(signal.SIGTERM)
        second.process.wait(60)
    assert second.process.returncode == 0
