"""The three services as real processes on loopback, for end-to-end tests and benchmarks.

NATS, PostgreSQL and the upstream (mock) provider are given; the stack runs migrations, starts
key-service, metering and one or more edge-proxy replicas on free ports, and can kill or restart
any of them (fault tests).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from llmgw_devstack.ports import free_port
from llmgw_devstack.processes import Child, http_json, wait_healthy

SERVICE_MODULES = {"key-service": "llmgw_keys", "metering": "llmgw_metering", "edge-proxy": "llmgw_proxy"}


class ServiceStack:
    def __init__(
        self,
        *,
        nats_url: str,
        database_url: str,
        state_dir: Path,
        openai_base_url: str,
        anthropic_base_url: str,
        openai_api_key: str,
        anthropic_api_key: str,
        proxy_replicas: int = 1,
        extra_env: dict[str, str] | None = None,
        admin_token: str = "llmgw-admin-e2e-" + os.urandom(12).hex(),
    ):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.admin_token = admin_token
        self.keys_port = free_port()
        self.metering_port = free_port()
        self.proxy_ports = [free_port() for _ in range(proxy_replicas)]
        self.env = {
            **os.environ,
            "LLMGW_NATS_URL": nats_url,
            "LLMGW_DATABASE_URL": database_url,
            "LLMGW_STATE_DIR": str(self.state_dir),
            "LLMGW_ADMIN_TOKEN": admin_token,
            "LLMGW_ENCRYPTION_KEY": "Zm9yLXRlc3RzLW9ubHktZm9yLXRlc3RzLW9ubHktISE=",
            "LLMGW_OPENAI_BASE_URL": openai_base_url,
            "LLMGW_OPENAI_API_KEY": openai_api_key,
            "LLMGW_ANTHROPIC_BASE_URL": anthropic_base_url,
            "LLMGW_ANTHROPIC_API_KEY": anthropic_api_key,
            "LLMGW_KEYS_PORT": str(self.keys_port),
            "LLMGW_METERING_PORT": str(self.metering_port),
            "LLMGW_AUTO_MIGRATE": "0",
            **(extra_env or {}),
        }
        self.children: dict[str, Child] = {}
        #: every secret the stack saw (admin token, provider keys, virtual keys, API tokens), for scans
        self.secrets: set[str] = {admin_token, openai_api_key, anthropic_api_key, self.env["LLMGW_ENCRYPTION_KEY"]}

    # --- URLs -----------------------------------------------------------------------------------
    @property
    def keys_url(self) -> str:
        return f"http://127.0.0.1:{self.keys_port}"

    @property
    def metering_url(self) -> str:
        return f"http://127.0.0.1:{self.metering_port}"

    def proxy_url(self, replica: int = 0) -> str:
        return f"http://127.0.0.1:{self.proxy_ports[replica]}"

    # --- lifecycle ------------------------------------------------------------------------------
    def migrate(self) -> None:
        import subprocess

        for module in ("llmgw_keys", "llmgw_metering"):
            subprocess.run([sys.executable, "-m", module, "migrate"], env=self.env, check=True,
                           capture_output=True)

    def _child(self, name: str, module: str, port: int, extra: dict[str, str]) -> Child:
        env = {**self.env, **extra}
        return Child(
            name,
            [sys.executable, "-m", module, "serve"],
            env,
            health_url=f"http://127.0.0.1:{port}/healthz",
            log_file=self.state_dir / f"{name}.log",
        )

    def start(self, timeout: float = 60) -> None:
        self.migrate()
        self.children["key-service"] = self._child("key-service", "llmgw_keys", self.keys_port, {})
        self.children["metering"] = self._child("metering", "llmgw_metering", self.metering_port, {})
        for index, port in enumerate(self.proxy_ports):
            name = "edge-proxy" if index == 0 else f"edge-proxy-{index}"
            self.children[name] = self._child(
                name, "llmgw_proxy", port, {"LLMGW_PROXY_PORT": str(port), "LLMGW_PROXY_INSTANCE": name}
            )
        for child in self.children.values():
            child.start()
        for child in self.children.values():
            self.wait_ready(child.name, timeout)

    def wait_ready(self, name: str, timeout: float = 60) -> None:
        child = self.children[name]
        ready_url = child.health_url.replace("/healthz", "/readyz")
        wait_healthy(ready_url, timeout, child.alive, f"{name} (log: {child.log_file})")

    def stop(self) -> None:
        # The proxies drain first so their usage events reach NATS; metering last of the services
        # so it can store them.
        order = [n for n in self.children if n.startswith("edge-proxy")] + ["key-service", "metering"]
        for name in order:
            if name in self.children:
                self.children[name].stop()

    def kill(self, name: str) -> None:
        self.children[name].kill()

    def restart(self, name: str, timeout: float = 60) -> None:
        self.children[name].stop()
        self.children[name].start()
        self.wait_ready(name, timeout)

    def log(self, name: str) -> str:
        path = self.children[name].log_file
        return path.read_text(errors="replace") if path and path.exists() else ""

    # --- admin helpers --------------------------------------------------------------------------
    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, answer = http_json(method, self.keys_url + path, self.admin_token, body)
        for field_name in ("key", "token"):
            if isinstance(answer, dict) and isinstance(answer.get(field_name), str):
                self.secrets.add(answer[field_name])
        return status, answer

    def create_key(self, **fields) -> dict:
        fields.setdefault("name", "e2e")
        fields.setdefault("project", "e2e")
        status, created = self.admin("POST", "/v1/keys", fields)
        assert status == 201, (status, created)
        return created

    def usage(self, query: str) -> dict:
        status, body = http_json("GET", f"{self.metering_url}/v1/usage?{query}", self.admin_token)
        assert status == 200, (status, body)
        return body
