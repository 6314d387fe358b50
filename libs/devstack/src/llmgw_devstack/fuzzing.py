"""Test helpers for the services' property-based API runs (schemathesis): the service as a real
``python -m <package> serve`` process, and one bounded, reproducible hypothesis run per operation."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from llmgw_devstack.processes import Child, wait_healthy


@contextmanager
def served(package: str, env: dict[str, str], port: int, state_dir: Path, health: str = "/healthz") -> Iterator[tuple[str, Path]]:
    """``python -m <package> serve`` with only ``env``'s LLMGW_* settings (the caller's own are
    dropped); yields (base URL, log file) once ``health`` answers 200; stops it afterwards."""
    merged = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    merged.update(env)
    log_path = state_dir / "server.log"
    child = Child(package, [sys.executable, "-m", package, "serve"], merged, log_file=log_path)
    child.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base + health, 60, child.alive, package)
    except Exception as exc:
        child.kill()
        raise AssertionError(f"{package} did not start: {exc}\n{log_path.read_text()[-3000:]}") from None
    try:
        yield base, log_path
    finally:
        child.stop(15)


def fuzz_operation(operation, mode, examples: int, check: Callable, path_parameters: dict | None = None) -> None:
    """``check(case)`` for ``examples`` generated cases of one schemathesis operation (derandomized,
    no example database, no deadline). An operation whose schema cannot be violated (no parameters,
    no body) has no negative cases: that is not a failure."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
    def run(case):
        check(case)

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE
