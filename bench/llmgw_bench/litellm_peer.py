"""LiteLLM's proxy as the peer: installed into its own venv (``.bench/litellm-venv``, cached between
runs), started the way a new user would (``litellm --config … --port N``: 1 worker, default settings,
no database), pointed at the same mock provider."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from llmgw_bench.procs import Proc, say, wait_http_ok
from llmgw_devstack.ports import free_port


class LiteLLMUnavailable(RuntimeError):
    pass


def ensure_installed(venv: Path, log_file: Path) -> str:
    """Creates the venv and installs ``litellm[proxy]`` unless already there; returns its version."""
    litellm_bin = venv / "bin" / "litellm"
    python = venv / "bin" / "python"
    if litellm_bin.exists() and _version(python):
        return _version(python)
    say(f"installing LiteLLM's proxy into {venv} (once; about a minute)…")
    started = time.monotonic()
    if not python.exists():
        result = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if result.returncode != 0:
            raise LiteLLMUnavailable(f"could not create {venv}: {result.stderr.strip()[-300:]}")
    with open(log_file, "w") as log:
        try:
            result = subprocess.run(
                [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "litellm[proxy]"],
                stdout=log, stderr=subprocess.STDOUT, timeout=1200,
            )
        except subprocess.TimeoutExpired:
            raise LiteLLMUnavailable("pip install 'litellm[proxy]' took more than 20 minutes") from None
    if result.returncode != 0 or not litellm_bin.exists():
        tail = [ln for ln in log_file.read_text(errors="replace").splitlines() if "is ignored" not in ln][-5:]
        raise LiteLLMUnavailable("pip install 'litellm[proxy]' failed: " + " | ".join(tail))
    say(f"LiteLLM installed in {time.monotonic() - started:.0f}s")
    return _version(python) or "unknown"


def _version(python: Path) -> str | None:
    if not python.exists():
        return None
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True, text=True,
    )
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


class LiteLLMProxy:
    def __init__(self, venv: Path, work_dir: Path, mock_url: str, mock_key: str, model: str):
        self.venv = venv
        self.work_dir = work_dir
        self.port = free_port()
        # LiteLLM refuses weak master keys; it must start with sk-.
        self.master_key = "sk-" + secrets.token_hex(16)
        self.config = work_dir / "litellm-config.yaml"
        self.config.write_text(
            "model_list:\n"
            f"  - model_name: {model}\n"
            "    litellm_params:\n"
            f"      model: openai/{model}\n"
            f"      api_base: {mock_url}/v1\n"
            f"      api_key: {mock_key}\n"
            "general_settings:\n"
            f"  master_key: {self.master_key}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMGW_", "DATABASE_URL"))}
        # Only to skip the start-up download of the model price map (no internet here); the
        # request path is untouched: every other setting stays LiteLLM's default.
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        self.proc = Proc(
            "litellm",
            [str(venv / "bin" / "litellm"), "--config", str(self.config), "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            log_file=work_dir / "litellm.log",
            cwd=work_dir,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> None:
        self.proc.start()
        try:
            wait_http_ok(self.url + "/health/liveliness", timeout, self.proc.alive, "litellm")
        except Exception as error:
            raise LiteLLMUnavailable(f"LiteLLM's proxy did not start: {error}; log tail: {self.proc.log_tail(800)}") from None

    def stop(self) -> None:
        self.proc.stop()
