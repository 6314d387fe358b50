"""The load scenarios, run identically against every column (direct, llmgw, LiteLLM)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from llmgw_bench import wrk as wrk_mod
from llmgw_bench.procs import cpu_seconds, die_with_parent, peak_rss_mb

LOADCLIENT = Path(__file__).with_name("loadclient.py")
MODEL = "gpt-4o-mini"
CHAT_PATH = "/v1/chat/completions"


def request_body(stream: bool) -> bytes:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello in five words."}], "max_tokens": 16}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Scenario:
    key: str  # e.g. "chat-c1"
    title: str
    stream: bool
    concurrency: int
    duration: float
    max_requests: int = 0
    #: "wrk" when available (falls back to "python"); "python" where TTFB is needed
    tool: str = "wrk"


def scenarios(quick: bool) -> list[Scenario]:
    short, long = (3.0, 4.0) if quick else (10.0, 15.0)
    return [
        Scenario("chat-c1", "chat completion, non-streaming, concurrency 1", False, 1, short),
        Scenario("chat-c64", "chat completion, non-streaming, concurrency 64", False, 64, long),
        Scenario("stream-c1", "chat completion, streaming, concurrency 1 (TTFB)", True, 1, short,
                 max_requests=500 if quick else 2000, tool="python"),
        Scenario("stream-c64", "chat completion, streaming, concurrency 64", True, 64, long),
    ]


@dataclass
class Target:
    """One column: where the load generator sends the requests, with which credentials."""

    name: str
    base_url: str
    auth_header: str
    #: the process whose CPU/RSS is reported (the proxy); None for direct
    pid: int | None = None
    #: the mock provider's pid (its CPU is recorded too, as the floor)
    mock_pid: int | None = None
    results: dict[str, dict] = field(default_factory=dict)
    unavailable: str | None = None
    peak_rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.base_url + CHAT_PATH

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.auth_header}


def sanity_check(target: Target) -> str | None:
    """One non-streaming and one streaming request; None when both look right, else the reason."""
    for stream in (False, True):
        request = urllib.request.Request(target.url, data=request_body(stream), method="POST",
                                         headers={**target.headers, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            return f"{'streaming' if stream else 'non-streaming'} request answered HTTP {error.code}: {error.read()[:300]!r}"
        except OSError as error:
            return f"{'streaming' if stream else 'non-streaming'} request failed: {error}"
        if status != 200:
            return f"HTTP {status}"
        if stream and b"[DONE]" not in raw:
            return f"stream did not end with [DONE]: {raw[-200:]!r}"
        if not stream:
            try:
                answer = json.loads(raw)
                assert answer["choices"][0]["message"] is not None
            except Exception:  # noqa: BLE001
                return f"unexpected non-streaming answer: {raw[:300]!r}"
    return None


def wait_idle(pid: int | None, timeout: float = 60.0, interval: float = 0.25, busy_share: float = 0.2) -> float:
    """Waits until the process tree uses less than `busy_share` of one CPU over two intervals in a row."""
    if not pid:
        return 0.0
    started = time.monotonic()
    quiet, last = 0, cpu_seconds(pid)
    while time.monotonic() - started < timeout and quiet < 2:
        time.sleep(interval)
        now = cpu_seconds(pid)
        quiet = quiet + 1 if now - last < busy_share * interval else 0
        last = now
    return time.monotonic() - started


class Runner:
    def __init__(self, work_dir: Path, wrk_binary: str | None, warmup: float):
        self.work_dir = work_dir
        self.wrk = wrk_binary
        self.warmup = warmup
        self.body_files = {}
        for stream in (False, True):
            path = work_dir / f"body-{'stream' if stream else 'plain'}.json"
            path.write_bytes(request_body(stream))
            self.body_files[stream] = path

    def _tool(self, scenario: Scenario) -> str:
        return "wrk" if scenario.tool == "wrk" and self.wrk else "python"

    def _python_client(self, target: Target, scenario: Scenario, duration: float, max_requests: int) -> dict:
        args = [sys.executable, str(LOADCLIENT), "--url", target.url, "--body-file", str(self.body_files[scenario.stream]),
                "--concurrency", str(scenario.concurrency), "--duration", str(duration),
                "--max-requests", str(max_requests)]
        for name, value in target.headers.items():
            args += ["--header", f"{name}: {value}"]
        if scenario.stream:
            args.append("--stream")
        result = subprocess.run(args, capture_output=True, text=True, timeout=duration + 120, preexec_fn=die_with_parent)
        line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
        if result.returncode != 0 or line is None:
            raise RuntimeError(f"load client failed (exit {result.returncode}): {result.stderr.strip()[-800:]}")
        return json.loads(line[len("BENCHJSON "):])

    def _wrk(self, target: Target, scenario: Scenario, duration: float) -> dict:
        script = self.work_dir / f"wrk-{target.name}-{scenario.key}.lua"
        wrk_mod.write_script(script, request_body(scenario.stream), {**target.headers, "Content-Type": "application/json"})
        return wrk_mod.run_wrk(self.wrk, target.url, script, scenario.concurrency, duration)

    def _load(self, target: Target, scenario: Scenario, duration: float, max_requests: int) -> dict:
        if self._tool(scenario) == "wrk":
            return self._wrk(target, scenario, duration)
        return self._python_client(target, scenario, duration, max_requests)

    def run(self, target: Target, scenario: Scenario) -> dict:
        if self.warmup > 0:
            self._load(target, scenario, self.warmup, 0)
            # A slow proxy may still be working through requests the warm-up's load generator left in
            # flight when it stopped: let it drain so they do not count against the measured window.
            wait_idle(target.pid or target.mock_pid)
        cpu_before = cpu_seconds(target.pid) if target.pid else None
        mock_before = cpu_seconds(target.mock_pid) if target.mock_pid else None
        result = self._load(target, scenario, scenario.duration, scenario.max_requests)
        if target.pid:
            cpu = cpu_seconds(target.pid) - cpu_before
            result["proxy_cpu_s"] = cpu
            result["proxy_cpu_s_per_1k"] = cpu / result["requests"] * 1000 if result["requests"] else None
        if target.mock_pid:
            cpu = cpu_seconds(target.mock_pid) - mock_before
            result["mock_cpu_s_per_1k"] = cpu / result["requests"] * 1000 if result["requests"] else None
        result["scenario"] = scenario.key
        if not scenario.stream:  # one body chunk: "first byte" is just the total again
            result["ttfb_ms"] = {k: None for k in result["ttfb_ms"]}
        if result["ok"] == 0:
            result["errors"] = max(result["errors"], 1)
            result.setdefault("failures", {})["no_request_completed"] = 1
            result["latency_ms"] = {k: None for k in result["latency_ms"]}
        target.results[scenario.key] = result
        if target.pid:
            target.peak_rss_mb = peak_rss_mb(target.pid)
        return result
