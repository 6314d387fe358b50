"""`make run`: the whole gateway on one machine, no Docker, nothing installed by hand.

Starts NATS (JetStream) and PostgreSQL when ``LLMGW_NATS_URL`` / ``LLMGW_DATABASE_URL`` are unset
(data kept in the state dir, so a restart keeps keys and usage), the mock provider when no provider
key is configured, applies migrations, starts key-service, metering and edge-proxy, creates a demo
key on first start and prints how to call it. It supervises what it started: a process that dies
is restarted (as compose/k8s restart policies would) and the launcher says so. Ctrl-C or SIGTERM
stops everything it started, in order, cleanly.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llmgw_common.settings import read_or_create_secret

from llmgw_devstack.nats_server import EmbeddedNats
from llmgw_devstack.ports import free_port, port_is_open
from llmgw_devstack.processes import Child, http_json, wait_healthy
from llmgw_devstack.postgres import EmbeddedPostgres

MOCK_OPENAI_KEY = "mock-openai-provider-key"
MOCK_ANTHROPIC_KEY = "mock-anthropic-provider-key"
RESTART_BACKOFF_MAX = 10.0


def say(message: str) -> None:
    print(f"[llmgw] {message}", flush=True)


class ServerHandle:
    """Supervision wrapper for the embedded NATS / PostgreSQL servers."""

    def __init__(self, name: str, server: EmbeddedNats | EmbeddedPostgres):
        self.name = name
        self.server = server
        self.restarts = 0
        self.next_restart_at = 0.0

    def alive(self) -> bool:
        return self.server.is_running()


class Launcher:
    def __init__(self) -> None:
        self.repo_root = Path.cwd()
        self.state_dir = Path(os.environ.get("LLMGW_STATE_DIR") or self.repo_root / ".llmgw").absolute()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        self.python = sys.executable
        self.env = dict(os.environ)
        self.env["LLMGW_STATE_DIR"] = str(self.state_dir)
        # Someone is likely reading this in a terminal: readable lines unless JSON is asked for.
        self.env.setdefault("LLMGW_LOG_FORMAT", "text")
        self.servers: list[ServerHandle] = []
        self.children: list[Child] = []
        self.stopping = False
        self.mock_in_use = False

    # --- infrastructure -------------------------------------------------------------------------
    def start_infrastructure(self) -> None:
        if not self.env.get("LLMGW_NATS_URL"):
            port = _preferred_port(int(self.env.get("LLMGW_NATS_PORT", "4222")))
            nats = EmbeddedNats(self.state_dir / "nats", port=port, log_file=self.state_dir / "nats.log")
            say(f"starting NATS (JetStream) on {nats.url}, data in {nats.data_dir} (set LLMGW_NATS_URL to use yours)")
            nats.start()
            self.env["LLMGW_NATS_URL"] = nats.url
            self.servers.append(ServerHandle("nats", nats))
        else:
            say(f"using NATS at {self.env['LLMGW_NATS_URL']}")
        if not self.env.get("LLMGW_DATABASE_URL"):
            port = _preferred_port(int(self.env.get("LLMGW_POSTGRES_PORT", "55432")))
            postgres = EmbeddedPostgres(self.state_dir / "postgres", port=port, log_file=self.state_dir / "postgres.log")
            say(f"starting PostgreSQL on 127.0.0.1:{port}, data in {postgres.data_dir} (set LLMGW_DATABASE_URL to use yours)")
            postgres.start()
            self.env["LLMGW_DATABASE_URL"] = postgres.create_database("llmgw")
            self.servers.append(ServerHandle("postgres", postgres))
        else:
            say("using the PostgreSQL at LLMGW_DATABASE_URL")

    def resolve_secrets(self) -> None:
        if not self.env.get("LLMGW_ADMIN_TOKEN"):
            self.env["LLMGW_ADMIN_TOKEN"] = read_or_create_secret(
                self.state_dir, "admin_token", lambda: "llmgw-admin-" + base64.urlsafe_b64encode(os.urandom(24)).decode()
            )
        if not self.env.get("LLMGW_ENCRYPTION_KEY"):
            # A Fernet key (url-safe base64 of 32 random bytes). Dev only: production sets it.
            self.env["LLMGW_ENCRYPTION_KEY"] = read_or_create_secret(
                self.state_dir, "encryption_key", lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()
            )

    def maybe_start_mock_provider(self) -> None:
        if self.env.get("LLMGW_OPENAI_API_KEY") or self.env.get("LLMGW_ANTHROPIC_API_KEY"):
            say("using the provider keys from the environment")
            return
        port = _preferred_port(int(self.env.get("LLMGW_MOCK_PROVIDER_PORT", "8090")))
        child = Child(
            "mock-provider",
            [self.python, "-m", "llmgw_devstack.mock_provider", "--host", "127.0.0.1", "--port", str(port),
             "--openai-key", MOCK_OPENAI_KEY, "--anthropic-key", MOCK_ANTHROPIC_KEY],
            dict(self.env),
            health_url=f"http://127.0.0.1:{port}/_mock/calls",
        )
        self._start_child(child, health_timeout=30)
        self.env["LLMGW_OPENAI_BASE_URL"] = f"http://127.0.0.1:{port}/v1"
        self.env["LLMGW_OPENAI_API_KEY"] = MOCK_OPENAI_KEY
        self.env["LLMGW_ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{port}"
        self.env["LLMGW_ANTHROPIC_API_KEY"] = MOCK_ANTHROPIC_KEY
        self.mock_in_use = True
        banner = "!" * 78
        say(banner)
        say("NO PROVIDER KEY CONFIGURED: routing every model to the built-in MOCK provider")
        say(f"at http://127.0.0.1:{port} (fake answers, real wire formats). Set LLMGW_OPENAI_API_KEY")
        say("and/or LLMGW_ANTHROPIC_API_KEY to reach the real providers.")
        say(banner)

    # --- services -------------------------------------------------------------------------------
    def migrate(self) -> None:
        for module in ("llmgw_keys", "llmgw_metering"):
            say(f"applying migrations: {module}")
            subprocess.run([self.python, "-m", module, "migrate"], env=self.env, check=True)

    def start_services(self) -> None:
        env = dict(self.env)
        env["LLMGW_AUTO_MIGRATE"] = "0"  # applied above, once
        for name, module, port_var, default_port in (
            ("key-service", "llmgw_keys", "LLMGW_KEYS_PORT", 8081),
            ("metering", "llmgw_metering", "LLMGW_METERING_PORT", 8082),
            ("edge-proxy", "llmgw_proxy", "LLMGW_PROXY_PORT", 8080),
        ):
            port = int(env.get(port_var, default_port))
            if port_is_open("127.0.0.1", port):
                raise SystemExit(f"[llmgw] port {port} is already in use: stop what holds it or set {port_var}")
            child = Child(name, [self.python, "-m", module, "serve"], env, health_url=f"http://127.0.0.1:{port}/healthz")
            self._start_child(child, health_timeout=60)

    def _start_child(self, child: Child, health_timeout: float) -> None:
        child.start()
        self.children.append(child)
        if child.health_url:
            wait_healthy(child.health_url, health_timeout, child.alive, child.name)
        say(f"{child.name} is up (pid {child.process.pid})")

    def ensure_demo_key(self) -> tuple[str, str]:
        keys_url = f"http://127.0.0.1:{self.env.get('LLMGW_KEYS_PORT', '8081')}"
        token = self.env["LLMGW_ADMIN_TOKEN"]
        demo_file = self.state_dir / "demo_key.json"
        if demo_file.exists():
            saved = json.loads(demo_file.read_text())
            status, record = http_json("GET", f"{keys_url}/v1/keys/{saved['id']}", token)
            if status == 200 and record.get("status") == "active":
                return saved["id"], saved["key"]
            say("the saved demo key is gone or no longer active; creating a new one")
        status, created = http_json("POST", f"{keys_url}/v1/keys", token, {"name": "demo", "project": "demo"})
        if status != 201:
            raise RuntimeError(f"could not create the demo key: HTTP {status} {created}")
        fd = os.open(demo_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"id": created["id"], "key": created["key"]}, handle)
        return created["id"], created["key"]

    def print_welcome(self, demo_key: str) -> None:
        proxy = f"http://127.0.0.1:{self.env.get('LLMGW_PROXY_PORT', '8080')}"
        keys = f"http://127.0.0.1:{self.env.get('LLMGW_KEYS_PORT', '8081')}"
        metering = f"http://127.0.0.1:{self.env.get('LLMGW_METERING_PORT', '8082')}"
        model = "gpt-4o-mini"
        # The CLI finds the services and the token by itself with the defaults; otherwise say how.
        cli_env = [
            f"{name}={self.env[name]}"
            for name, default in (("LLMGW_KEYS_PORT", "8081"), ("LLMGW_METERING_PORT", "8082"))
            if self.env.get(name, default) != default
        ]
        if os.environ.get("LLMGW_STATE_DIR"):
            cli_env.append(f"LLMGW_STATE_DIR={self.state_dir}")
        token_from_env = bool(os.environ.get("LLMGW_ADMIN_TOKEN", "").strip())
        cli_hint = " ".join([*cli_env, ".venv/bin/llmgw keys list"])
        cli_note = (
            "(with your LLMGW_ADMIN_TOKEN exported)" if token_from_env else "(the CLI reads the admin token from the state dir)"
        )
        print(
            f"""
==============================================================================
 llmgw is running{'  (MOCK provider: no real provider key configured)' if self.mock_in_use else ''}
   edge-proxy   {proxy}/v1      (OpenAI and Anthropic SDKs: base_url only)
   key-service  {keys}        (admin REST, OpenAPI at {keys}/schema)
   metering     {metering}        (usage REST)
   state dir    {self.state_dir}

 admin token   {self.env['LLMGW_ADMIN_TOKEN']}
 demo key      {demo_key}

 Try it:
   curl -s {proxy}/v1/chat/completions \\
     -H "Authorization: Bearer {demo_key}" -H "Content-Type: application/json" \\
     -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello"}}]}}'

   .venv/bin/python -c 'import openai; c = openai.OpenAI(base_url="{proxy}/v1", api_key="{demo_key}"); print(c.chat.completions.create(model="{model}", messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)'

   curl -s "{metering}/v1/usage?group_by=key,model" -H "Authorization: Bearer {self.env['LLMGW_ADMIN_TOKEN']}"
   {cli_hint}   {cli_note}

 Ctrl-C stops everything.
==============================================================================
""",
            flush=True,
        )

    # --- supervision ----------------------------------------------------------------------------
    def supervise(self) -> None:
        while not self.stopping:
            now = time.monotonic()
            for handle in self.servers:
                if not handle.alive() and now >= handle.next_restart_at and not self.stopping:
                    handle.restarts += 1
                    say(f"{handle.name} died; restarting it (restart #{handle.restarts})")
                    try:
                        handle.server.start()
                        say(f"{handle.name} is back")
                    except Exception as error:  # keep supervising; try again after a backoff
                        say(f"{handle.name} failed to restart: {error}")
                        handle.next_restart_at = now + min(RESTART_BACKOFF_MAX, 2**handle.restarts)
            for child in self.children:
                if child.alive() or self.stopping:
                    continue
                if child.next_restart_at == 0.0:
                    code = child.process.returncode if child.process else None
                    child.restarts += 1
                    # A crash loop backs off; a process that ran a while restarts at once.
                    ran_long = now - child.started_at > 30
                    backoff = 0.0 if ran_long else min(RESTART_BACKOFF_MAX, 0.5 * 2**child.restarts)
                    say(f"{child.name} exited with code {code}; restarting it in {backoff:.1f}s (restart #{child.restarts})")
                    child.next_restart_at = now + backoff
                if now >= child.next_restart_at:
                    child.next_restart_at = 0.0
                    child.start()
                    say(f"{child.name} restarted (pid {child.process.pid})")
            time.sleep(0.2)

    def shutdown(self) -> None:
        self.stopping = True
        say("stopping…")
        # Reverse start order: the proxy drains first (flushing its usage spool into NATS),
        # then metering (commits and acks its batch), then key-service; servers last.
        for child in reversed(self.children):
            child.stop()
            say(f"{child.name} stopped")
        for handle in reversed(self.servers):
            handle.server.stop()
            say(f"{handle.name} stopped")
        say("all stopped")

    def run(self) -> int:
        def on_signal(signum, _frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            self.resolve_secrets()
            self.start_infrastructure()
            self.maybe_start_mock_provider()
            self.migrate()
            self.start_services()
            _, demo_key = self.ensure_demo_key()
            self.print_welcome(demo_key)
            self.supervise()
        except KeyboardInterrupt:
            pass
        except (Exception, SystemExit) as error:
            say(f"start-up failed: {error}")
            self.shutdown()
            return 1
        self.shutdown()
        return 0


def _preferred_port(port: int) -> int:
    """The conventional port when free, else any free one (a second checkout can run beside)."""
    return port if not port_is_open("127.0.0.1", port) else free_port()


def main() -> None:
    sys.exit(Launcher().run())


if __name__ == "__main__":
    main()
