"""Where and with what the benchmark ran: machine, OS, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def git_commit(repo: Path) -> str:
    commit = _git(repo, "rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return commit + (" (with uncommitted changes)" if dirty else "")


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(repo: Path) -> dict:
    memory = _memory_gib()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory": f"{memory:.1f} GiB" if memory else "unknown",
        "os": _os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "llmgw_commit": git_commit(repo),
        "aiohttp": _dist_version("aiohttp"),
        "uvloop": _dist_version("uvloop"),
        "litestar": _dist_version("litestar"),
    }


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]), idle


def busy_cpus(seconds: float = 2.0) -> float:
    """How many CPUs' worth of work other processes are doing right now (before we start anything)."""
    import time

    total0, idle0 = _cpu_times()
    time.sleep(seconds)
    total1, idle1 = _cpu_times()
    if total1 == total0:
        return 0.0
    return (1 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def wait_quiet(max_busy: float = 0.15, window: float = 1.0, timeout: float = 30.0) -> float:
    """Waits (up to ``timeout``) until the processes stopped by the previous phase are really gone
    and the machine is quiet: less than ``max_busy`` CPUs busy over a ``window``. Returns the last
    reading (the phase that follows reports it)."""
    import time

    deadline = time.monotonic() + timeout
    busy = busy_cpus(window)
    while busy > max_busy and time.monotonic() < deadline:
        busy = busy_cpus(window)
    return busy
