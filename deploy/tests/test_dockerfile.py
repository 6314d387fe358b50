"""deploy/docker/Dockerfile, checked statically (no Docker engine on this machine: the image is
never built here), plus the two pieces of shell/Python it runs at container run time, executed
for real: the entry wrapper (must `exec`, so SIGTERM reaches Python) and the HEALTHCHECK command.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import DOCKERFILE, REPO


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    result, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    return result


def stages(parsed: list[tuple[str, str]]) -> list[dict]:
    out = []
    for keyword, args in parsed:
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            out.append({"image": m.group(1), "name": m.group(2), "body": []})
        elif out:
            out[-1]["body"].append((keyword, args))
    return out


@pytest.fixture(scope="module")
def parsed():
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def global_args(parsed):
    values = {}
    for keyword, args in parsed:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in args:
            name, value = args.split("=", 1)
            values[name] = value
    return values


@pytest.fixture(scope="module")
def final(parsed):
    return stages(parsed)[-1]


def body(stage, keyword):
    return [args for k, args in stage["body"] if k == keyword]


def test_multi_stage_slim_python_runtime(parsed, global_args, final):
    all_stages = stages(parsed)
    assert len(all_stages) >= 2, "builder + runtime"
    image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], final["image"])
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image
    builder = all_stages[0]
    assert builder["name"], "the builder stage is named so the runtime can take its wheels"
    assert any("pip wheel" in run for run in body(builder, "RUN"))


def test_no_build_tools_or_sources_in_the_runtime_stage(final, parsed):
    builder_name = stages(parsed)[0]["name"]
    for run in body(final, "RUN"):
        assert not re.search(r"apt-get\s+install|apk\s+add|build-essential|gcc|\bmake\b", run), run
    for copy in body(final, "COPY"):
        assert f"--from={builder_name}" in copy and "/wheels" in copy, f"runtime copies more than wheels: {copy}"
    installs = [run for run in body(final, "RUN") if "pip install" in run]
    assert installs and all("--no-index" in run for run in installs), "runtime installs only the built wheels"
    assert any(f"from={builder_name}" in run for run in installs)


def test_runs_as_a_fixed_non_root_user(final):
    users = body(final, "USER")
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "numeric uid so Kubernetes runAsNonRoot can verify it"


def test_env_signals_and_exec_form(final):
    env = " ".join(body(final, "ENV"))
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)
    assert re.search(r"\bLLMGW_BIND_HOST=0\.0\.0\.0\b", env), "127.0.0.1 is unreachable from outside a container"
    assert body(final, "STOPSIGNAL") == ["SIGTERM"]
    for keyword in ("ENTRYPOINT", "CMD"):
        values = body(final, keyword)
        assert values, keyword
        assert isinstance(json.loads(values[-1]), list), f"{keyword} must be exec form (JSON array)"
    assert json.loads(body(final, "CMD")[-1]) == ["serve"]


def test_healthcheck_is_python_against_healthz(final):
    checks = body(final, "HEALTHCHECK")
    assert len(checks) == 1
    command = json.loads(checks[0].split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"], "no curl/wget in the image: the probe is Python"
    assert "/healthz" in command[2]


def test_dockerignore_keeps_the_context_small_and_secret_free():
    patterns = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".git", ".venv", ".llmgw", ".env", "libs/devstack", "libs/cli", "**/__pycache__", "**/*.egg-info"):
        assert needed in patterns, needed
    assert not {"libs", "services", "libs/common", "services/*"} & patterns, "the build needs libs/ and services/"


# --- executed for real --------------------------------------------------------------------------
def wrapper_script(final) -> str:
    run = next(r for r in body(final, "RUN") if "/usr/local/bin/llmgw-service" in r and "printf" in r)
    fmt = re.search(r"printf '([^']*)'", run).group(1)
    return fmt.encode().decode("unicode_escape")


def test_entry_wrapper_execs_python(final, tmp_path):
    """`exec` replaces the shell, so Python is the process the runtime signals (PID 1 in a container)."""
    script = tmp_path / "llmgw-service"
    script.write_text(wrapper_script(final))
    script.chmod(0o755)
    (tmp_path / "fake_service.py").write_text(
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('drained', flush=True), sys.exit(0)))\n"
        "print(os.getpid(), *sys.argv[1:], flush=True)\n"
        "time.sleep(30)\n"
    )
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    env = {**os.environ, "LLMGW_SERVICE_MODULE": "fake_service", "PYTHONPATH": str(tmp_path),
           "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(["/bin/sh", str(script), "serve"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stdout.readline().split()
        assert first[1:] == ["serve"]
        assert int(first[0]) == proc.pid, "the shell must exec python, not run it as a child"
        proc.terminate()
        assert proc.stdout.readline().strip() == "drained"
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, *args):
        pass


def run_healthcheck(final, env_extra: dict) -> int:
    check = body(final, "HEALTHCHECK")[0]
    command = json.loads(check.split("CMD", 1)[1])
    command[0] = sys.executable
    env = {k: v for k, v in os.environ.items() if k != "LLMGW_TEST_PORT"}
    env.update({"LLMGW_HEALTH_PORT_ENV": "LLMGW_TEST_PORT", "LLMGW_HEALTH_PORT": "1", **env_extra})
    return subprocess.run(command, env=env, capture_output=True, timeout=20).returncode


@pytest.mark.parametrize("status, healthy", [(200, True), (503, False)])
def test_healthcheck_command(final, status, healthy):
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = str(server.server_address[1])
        # the service's own port variable wins over the build-time default
        assert (run_healthcheck(final, {"LLMGW_TEST_PORT": port}) == 0) is healthy
        # without it, the build-time default port is used
        assert (run_healthcheck(final, {"LLMGW_HEALTH_PORT": port}) == 0) is healthy
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_fails_when_nothing_listens(final):
    started = time.monotonic()
    assert run_healthcheck(final, {"LLMGW_HEALTH_PORT": "1"}) != 0
    assert time.monotonic() - started < 15


def test_build_args_have_defaults_or_are_checked(parsed):
    text = DOCKERFILE.read_text()
    for required in ("SERVICE", "MODULE"):
        assert re.search(rf'test -n "\$\{{{required}\}}"', text), f"an empty {required} must fail the build"
    assert Path(DOCKERFILE).read_text().startswith("# syntax=docker/dockerfile:1"), "RUN --mount needs BuildKit syntax"
