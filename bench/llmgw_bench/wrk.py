"""wrk (C, epoll) as the load generator for POST requests: a generated Lua script sets the body and
headers and prints wrk's own summary (counts, error classes, latency percentiles) as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from llmgw_bench.procs import die_with_parent, say

LUA_TEMPLATE = r"""
wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"tool":"wrk","requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"p50_us":%.1f,"p90_us":%.1f,"p99_us":%.1f,"mean_us":%.1f,"max_us":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def ensure_wrk() -> tuple[str | None, str]:
    """wrk's path, installing the Debian package when missing and we are root. (path, note)."""
    found = wrk_binary()
    if found:
        return found, "found on PATH"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("wrk not found; installing it with apt-get (Debian package 'wrk')…")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
            result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                return None, f"apt-get failed: {result.stderr.strip()[-300:]}"
        found = wrk_binary()
        if found:
            return found, "installed with apt-get"
    return None, "wrk not installed (not root or no apt-get); using the Python client for every scenario"


def wrk_version(binary: str) -> str:
    result = subprocess.run([binary, "--version"], capture_output=True, text=True)
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0].split(" Copyright")[0].strip() if text else "unknown"


def write_script(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    lines = "\n".join(f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items())
    text = LUA_TEMPLATE.format(body=body.decode(), headers=lines)
    path.write_text(text)
    return path


def run_wrk(binary: str, url: str, script: Path, concurrency: int, duration: float, threads: int = 1,
            timeout_s: float = 60) -> dict:
    """One wrk run; returns the JSON wrk printed, normalized to the load client's shape."""
    args = [
        binary,
        f"-t{min(threads, concurrency)}",
        f"-c{concurrency}",
        f"-d{max(1, int(round(duration)))}s",
        f"--timeout={int(timeout_s)}s",
        "-s", str(script),
        url,
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=duration + timeout_s + 30,
                            preexec_fn=die_with_parent)
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {result.returncode}): {result.stderr.strip()[-500:]} {result.stdout[-500:]}")
    raw = json.loads(line[len("BENCHJSON "):])
    seconds = raw["duration_us"] / 1e6
    socket_errors = raw["err_connect"] + raw["err_read"] + raw["err_write"] + raw["err_timeout"]
    errors = raw["err_status"] + socket_errors
    ok = max(0, raw["requests"] - raw["err_status"])
    return {
        "tool": "wrk",
        "concurrency": concurrency,
        "duration_s": seconds,
        "requests": raw["requests"],
        "ok": ok,
        "errors": errors,
        "statuses": {"non_2xx(>399)": raw["err_status"]} if raw["err_status"] else {},
        "failures": {k: raw[k] for k in ("err_connect", "err_read", "err_write", "err_timeout") if raw[k]},
        "rps": ok / seconds if seconds > 0 else 0.0,
        "latency_ms": {
            "p50": raw["p50_us"] / 1000, "p90": raw["p90_us"] / 1000, "p99": raw["p99_us"] / 1000,
            "mean": raw["mean_us"] / 1000, "max": raw["max_us"] / 1000,
        },
        "ttfb_ms": {"p50": None, "p90": None, "p99": None, "mean": None, "max": None},
    }
