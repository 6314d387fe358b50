from __future__ import annotations

import socket
import time


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, what: str, alive=lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(host, port):
            return
        if not alive():
            raise RuntimeError(f"{what} exited before listening on {host}:{port}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when the process that started it dies (Linux), so a
    launcher or test run killed with SIGKILL leaves no server behind."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # not Linux: best effort only
        pass


def parent_death_hook():
    """die_with_parent for children started from the main thread; None from other threads.

    Linux sends the parent-death signal when the *thread* that forked the child exits, so a child
    started from a worker thread (a test's fault injector, a thread pool) would die with that thread.
    """
    import threading

    return die_with_parent if threading.current_thread() is threading.main_thread() else None
