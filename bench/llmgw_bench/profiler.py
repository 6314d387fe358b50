"""py-spy against the proxy under load: which functions and which packages the CPU time goes to.

py-spy is installed into ``.bench/tools-venv`` (cached), never into the project's venv. It samples
from outside the process (no code change, little overhead with ``--nonblocking``).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from llmgw_bench.procs import die_with_parent, say


class ProfilerUnavailable(RuntimeError):
    pass


def ensure_py_spy(venv: Path) -> str:
    binary = venv / "bin" / "py-spy"
    if binary.exists():
        return str(binary)
    say(f"installing py-spy into {venv} (once)…")
    if not (venv / "bin" / "python").exists():
        result = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if result.returncode != 0:
            raise ProfilerUnavailable(f"could not create {venv}: {result.stderr.strip()[-300:]}")
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                             "py-spy"], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not binary.exists():
        tail = [ln for ln in result.stderr.splitlines() if "is ignored" not in ln][-3:]
        raise ProfilerUnavailable("pip install py-spy failed: " + " | ".join(tail))
    return str(binary)


FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _package(path: str) -> str:
    """A readable owner for a source file: the site-packages distribution, our package, or stdlib."""
    if "site-packages/" in path:
        rest = path.split("site-packages/", 1)[1]
        top = rest.split("/", 1)[0]
        return top.removesuffix(".py")
    for marker in ("llmgw_proxy", "llmgw_common", "llmgw_keys", "llmgw_metering", "llmgw_devstack"):
        if f"/{marker}/" in path:
            return marker
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 2)
        return "stdlib:" + (rest[1].removesuffix(".py") if len(rest) > 1 else "?")
    if path.startswith("<frozen "):
        return "stdlib:" + path[len("<frozen "):].rstrip(">")
    return path.rsplit("/", 1)[-1] or "?"


def _short(func: str, path: str) -> str:
    """`func (package/file.py)`: the path from the package (or stdlib) root."""
    if "site-packages/" in path:
        rel = path.split("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        rel = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    else:
        rel = path
        for marker in ("llmgw_proxy", "llmgw_common", "llmgw_keys", "llmgw_metering", "llmgw_devstack"):
            if f"/{marker}/" in path:
                rel = marker + "/" + path.split(f"/{marker}/", 1)[1]
                break
    return f"{func} ({rel})"


def analyze(raw_file: Path, top: int = 15) -> dict:
    """Self and inclusive sample shares per function, and self share per package."""
    self_counts: Counter = Counter()
    incl_counts: Counter = Counter()
    package_counts: Counter = Counter()
    package_incl: Counter = Counter()
    exporter = 0
    total = 0
    for line in raw_file.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for part in stack.split(";"):
            match = FRAME.match(part.strip())
            if match:
                frames.append((match["func"], match["file"]))
        if not frames:
            continue
        total += count
        func, path = frames[-1]
        self_counts[_short(func, path)] += count
        package_counts[_package(path)] += count
        for name in {_short(f, p) for f, p in frames}:
            incl_counts[name] += count
        for package in {_package(p) for _, p in frames}:
            package_incl[package] += count
        if any(f.startswith("BatchProcessor.worker") or f.startswith("BatchSpanProcessor.worker") for f, _ in frames):
            exporter += count
    def share(counter: Counter, limit: int | None = top) -> list[tuple[str, float]]:
        return [(name, 100.0 * n / total) for name, n in counter.most_common(limit)] if total else []
    # Inclusive time of llmgw's own functions: which step of the request pipeline costs what.
    inclusive = [(name, pct) for name, pct in share(incl_counts, None)
                 if "(llmgw_" in name and "/__main__.py)" not in name][:top]
    return {"samples": total, "self": share(self_counts), "inclusive": inclusive, "packages": share(package_counts),
            "all_packages": share(package_counts, None),
            "packages_inclusive": dict(share(package_incl, None)),
            "exporter_thread_share": 100.0 * exporter / total if total else 0.0}


def profile_under_load(py_spy: str, pid: int, out_dir: Path, duration: float, load) -> dict:
    """Runs `load()` (a blocking callable, e.g. a wrk run of `duration` + 2 s) while py-spy records."""
    raw = out_dir / "proxy-profile.txt"
    raw.unlink(missing_ok=True)
    errors: list[str] = []

    def record(fmt: str, output: Path) -> None:
        result = subprocess.run(
            [py_spy, "record", "--pid", str(pid), "--duration", str(int(duration)), "--rate", "250", "--nonblocking",
             "--subprocesses", "--full-filenames", "--format", fmt, "-o", str(output)],
            capture_output=True, text=True, timeout=duration + 60, preexec_fn=die_with_parent,
        )
        if result.returncode != 0:
            errors.append(result.stderr.strip()[-400:])

    # Collapsed stacks ("raw"), analysed here; turn them into a flame graph with any folded-stack tool.
    recorder = threading.Thread(target=record, args=("raw", raw))
    recorder.start()
    load_result = load()
    recorder.join()
    if errors or not raw.exists():
        raise ProfilerUnavailable("py-spy failed: " + (errors[0] if errors else "no output"))
    analysis = analyze(raw)
    analysis["raw_file"] = str(raw)
    analysis["load"] = load_result
    return analysis
