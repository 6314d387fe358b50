"""Run the mock provider for tests: in a background thread (``MockProviderServer``) or as a child
process (``MockProviderProcess``). Both give the same URLs and the same control methods."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..ports import free_port, wait_for_port
from .app import MockApp
from .config import FaultRule, MockConfig

CallPredicate = Callable[[dict[str, Any]], bool]


class _MockControl:
    """URL properties and the control API shared by both runners."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)`` (with ``/v1``)."""
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for ``anthropic.Anthropic(base_url=...)`` (no ``/v1``)."""
        return self.url

    # implemented by the runners
    def calls(self, since: int | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def clear_calls(self) -> None:
        raise NotImplementedError

    def add_faults(self, rules: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def clear_faults(self) -> None:
        raise NotImplementedError

    def faults(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    # derived
    def set_fault(self, mode: str = "status", **fields: Any) -> None:
        """Add one fault rule, e.g. ``set_fault("status", status=429, count=1, retry_after=2)``."""
        FaultRule.from_dict({"mode": mode, **fields})  # validate here, with a local traceback
        self.add_faults([{"mode": mode, **fields}])

    def reset(self) -> None:
        """Forget recorded calls and fault rules."""
        self.clear_calls()
        self.clear_faults()

    def last_seq(self) -> int:
        calls = self.calls()
        return calls[-1]["seq"] if calls else 0

    def wait_for_calls(
        self,
        count: int = 1,
        *,
        since: int | None = None,
        predicate: CallPredicate | None = None,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """Poll until at least ``count`` recorded calls (after ``since``, matching ``predicate``) exist."""
        deadline = time.monotonic() + timeout
        while True:
            calls = [c for c in self.calls(since) if predicate is None or predicate(c)]
            if len(calls) >= count:
                return calls
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} mock provider call(s), saw {len(calls)} within {timeout}s")
            time.sleep(0.01)


class MockProviderServer(_MockControl):
    """The mock provider in a background thread (uvicorn with its own event loop) on a free port.

    ``with MockProviderServer(openai_key="sk-test") as mock: ...`` or ``.start()`` / ``.stop()``.
    """

    def __init__(self, config: MockConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, **options: Any):
        self.config = config or MockConfig(**options)
        if config is not None and options:
            raise TypeError("give either a MockConfig or keyword options, not both")
        self.host = host
        self.port = port
        self.app = MockApp(self.config)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> MockProviderServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=75,  # longer than client pools keep idle connections (no reuse races)
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"mock-provider-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("mock provider thread exited during startup")
            if time.monotonic() > deadline:
                raise TimeoutError("mock provider did not start within 10s")
            time.sleep(0.005)
        self._sock = sock
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.app.begin_shutdown()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        self._server = None
        self._thread = None

    def __enter__(self) -> MockProviderServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def calls(self, since: int | None = None) -> list[dict[str, Any]]:
        return self.app.calls(since)

    def clear_calls(self) -> None:
        self.app.clear_calls()

    def add_faults(self, rules: list[dict[str, Any]]) -> None:
        for rule in rules:
            self.app.add_fault(rule)

    def clear_faults(self) -> None:
        self.app.clear_faults()

    def faults(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.app.faults()]

    def configure(self, **changes: Any) -> None:
        """Change ``latency_ms`` / ``chunk_delay_ms`` / ``stream_chunks`` while running."""
        self.app._patch_config(changes)


class MockProviderProcess(_MockControl):
    """The mock provider as a child process (``python -m llmgw_devstack.mock_provider``).

    For benchmarks (its own CPU) and fault tests that kill it (``kill()``, then ``start()`` again
    on the same port). The control methods go over its HTTP control API (``/_mock/...``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        openai_key: str | None = None,
        anthropic_key: str | None = None,
        latency_ms: float = 0,
        stream_chunks: int | None = None,
        chunk_delay_ms: float = 0,
        record_limit: int | None = None,
        log_file: str | Path | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ):
        self.host = host
        self.port = port or free_port(host)
        self.args = [sys.executable, "-m", "llmgw_devstack.mock_provider", "--host", host, "--port", str(self.port)]
        if openai_key is not None:
            self.args += ["--openai-key", openai_key]
        if anthropic_key is not None:
            self.args += ["--anthropic-key", anthropic_key]
        if latency_ms:
            self.args += ["--latency-ms", str(latency_ms)]
        if stream_chunks is not None:
            self.args += ["--stream-chunks", str(stream_chunks)]
        if chunk_delay_ms:
            self.args += ["--chunk-delay-ms", str(chunk_delay_ms)]
        if record_limit is not None:
            self.args += ["--record-limit", str(record_limit)]
        self.args += list(extra_args or [])
        self.log_file = Path(log_file) if log_file else None
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 20.0) -> MockProviderProcess:
        if self.running:
            return self
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT if self.log_file else subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
            )
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]
        wait_for_port(self.host, self.port, timeout, "mock provider", alive=lambda: self.running)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._control("GET", "/_mock/health")
                return self
            except OSError:
                if time.monotonic() > deadline or not self.running:
                    raise
                time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the provider vanishes at once (connections reset, nothing cleaned up)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> MockProviderProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> MockProviderProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")
            raise RuntimeError(f"mock provider control {method} {path} -> {err.code}: {detail}") from None

    def calls(self, since: int | None = None) -> list[dict[str, Any]]:
        path = "/_mock/calls" if since is None else f"/_mock/calls?since={int(since)}"
        return self._control("GET", path)["data"]

    def clear_calls(self) -> None:
        self._control("DELETE", "/_mock/calls")

    def add_faults(self, rules: list[dict[str, Any]]) -> None:
        self._control("POST", "/_mock/faults", rules)

    def clear_faults(self) -> None:
        self._control("DELETE", "/_mock/faults")

    def faults(self) -> list[dict[str, Any]]:
        return self._control("GET", "/_mock/faults")["data"]

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change ``latency_ms`` / ``chunk_delay_ms`` / ``stream_chunks`` of the running process."""
        return self._control("PATCH", "/_mock/config", changes)
