"""Runs each test package in its own pytest session and totals the results.

Each package starts its own NATS and PostgreSQL (session fixtures), so packages stay isolated.
Exit code: 0 only when every package passed and at least one test ran.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)")


def main(dirs: list[str]) -> int:
    totals = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    failed_dirs = []
    started = time.monotonic()
    temp_root = tempfile.mkdtemp(prefix="llmgw-tests-")
    for directory in dirs:
        path = ROOT / directory
        print(f"\n===== {directory} =====", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(
            # A private basetemp: pytest prunes old numbered temp dirs, which must never be another
            # package's live NATS/PostgreSQL data.
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs",
             f"--basetemp={temp_root}/{directory.replace('/', '_')}"],
            cwd=path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        sys.stdout.write(proc.stdout)
        last = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or [""]
        for count, kind in SUMMARY.findall(last[0]):
            kind = "error" if kind.startswith("error") else kind
            if kind in totals:
                totals[kind] += int(count)
        print(f"----- {directory}: exit {proc.returncode} in {time.monotonic() - t0:.0f}s", flush=True)
        if proc.returncode not in (0,):
            failed_dirs.append(directory)
    print(f"\nAll packages in {time.monotonic() - started:.0f}s; failing: {', '.join(failed_dirs) or 'none'}")
    print(f"{totals['passed']} passed, {totals['failed'] + totals['error']} failed, {totals['skipped']} skipped")
    if failed_dirs or totals["passed"] == 0:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
