"""Processes the benchmark starts (and always stops), and /proc readings of their CPU time and RSS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from llmgw_devstack.ports import die_with_parent  # noqa: F401  (re-exported for the other modules)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --- /proc ----------------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """root and all its live descendants (by scanning /proc for parent pids)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    result, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            result.append(pid)
            todo.extend(children.get(pid, []))
    return result


def cpu_seconds(root: int) -> float:
    """utime + stime (seconds) of root and its live descendants."""
    total = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            # after the command name: state(0) ppid(1) ... utime is field 14 overall -> index 11 here
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(root: int) -> float:
    """Sum of VmHWM (peak resident set) over root and its live descendants, in MiB."""
    return sum(_status_kb(pid, "VmHWM") for pid in process_tree(root)) / 1024


def rss_mb(root: int) -> float:
    return sum(_status_kb(pid, "VmRSS") for pid in process_tree(root)) / 1024


# --- processes --------------------------------------------------------------------------------
class Proc:
    """A child process with its output in a log file; stop() is idempotent (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None, log_file: Path | None = None,
                 cwd: Path | None = None):
        self.name = name
        self.args = args
        self.env = env
        self.log_file = log_file
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.process = subprocess.Popen(self.args, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=die_with_parent)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop within {timeout:.0f}s; killing it")
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_file and self.log_file.exists():
            return self.log_file.read_text(errors="replace")[-chars:]
        return ""


def wait_http_ok(url: str, timeout: float, alive, what: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as response:
                if 200 <= response.status < 300:
                    return
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        if not alive():
            raise RuntimeError(f"{what} exited during start-up")
        time.sleep(0.1)
    raise TimeoutError(f"{what} not answering {url} after {timeout:.0f}s (last: {last})")


def python() -> str:
    return sys.executable
