"""The local durable spool for usage events JetStream could not take.

Layout: ``<state_dir>/spool/proxy-<instance>/seg-<ns>.jsonl`` - append-only JSON lines (one
encoded ``UsageEvent`` per line), fsync'd after every appended batch, plus ``seg-<ns>.jsonl.acked``
holding the byte offset up to which a replay was acknowledged by JetStream. A segment is deleted
once replayed to its end. The folder is held with an exclusive ``flock`` on its ``lock`` file for
the process's life; a folder whose lock is free belongs to a process that is gone, and its
segments are adopted (moved here and replayed in order) at start-up and at each replay.

All methods are blocking file I/O: the publisher calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
ACKED = ".acked"


class Spool:
    def __init__(self, root: Path, instance: str | None, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.segment_bytes = segment_bytes
        self.dir: Path | None = None
        self._lock_fd: int | None = None
        self._file = None
        self._current: Path | None = None
        self._mutex = threading.Lock()
        #: events written and not yet acknowledged by JetStream through a replay
        self.depth = 0
        self.corrupt = 0

    # --- lifecycle ------------------------------------------------------------------------------
    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for name in (f"proxy-{self.instance}", f"proxy-{self.instance}-{os.getpid()}"):
            candidate = self.root / name
            fd = _try_lock(candidate)
            if fd is not None:
                self.dir, self._lock_fd = candidate, fd
                break
        else:
            raise RuntimeError(f"spool folder for instance {self.instance!r} is locked by another process")
        self.adopt_orphans()
        self.depth = sum(self._pending_lines(seg) for seg in self.segments())

    def close(self) -> None:
        with self._mutex:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
                self._current = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- writing --------------------------------------------------------------------------------
    def append(self, lines: list[bytes], sync: bool = True) -> None:
        """Append encoded events (no newlines inside), durable on return when ``sync``."""
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        with self._mutex:
            if self._file is None or self._file.tell() > self.segment_bytes:
                self._rotate_locked()
            self._file.write(data)
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
            self.depth += len(lines)

    def _rotate_locked(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        assert self.dir is not None
        self._current = self.dir / f"seg-{time.time_ns():020d}{SUFFIX}"
        self._file = open(self._current, "ab")  # noqa: SIM115 - kept open for appends
        _fsync_dir(self.dir)

    def seal(self) -> None:
        """Close the segment being appended to, so a replay can consume all of it."""
        with self._mutex:
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
                self._current = None

    # --- replay ---------------------------------------------------------------------------------
    def segments(self) -> list[Path]:
        assert self.dir is not None
        return sorted(self.dir.glob(f"seg-*{SUFFIX}"))

    def sealed_segments(self) -> list[Path]:
        with self._mutex:
            current = self._current
        return [s for s in self.segments() if s != current]

    def acked_offset(self, segment: Path) -> int:
        try:
            return int(Path(str(segment) + ACKED).read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def read(self, segment: Path, offset: int, max_lines: int) -> tuple[list[bytes], int]:
        """Up to ``max_lines`` complete lines from ``offset``; returns them and the offset after them.

        A torn last line (a write cut by a crash, never fsync'd) is returned too, and the caller
        finds it undecodable.
        """
        lines: list[bytes] = []
        with open(segment, "rb") as handle:
            handle.seek(offset)
            while len(lines) < max_lines:
                line = handle.readline()
                if not line:
                    break
                offset += len(line)
                line = line.rstrip(b"\n")
                if line:
                    lines.append(line)
        return lines, offset

    def mark(self, segment: Path, offset: int, replayed: int) -> None:
        marker = Path(str(segment) + ACKED)
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, marker)
        with self._mutex:
            self.depth = max(0, self.depth - replayed)

    def finished(self, segment: Path) -> None:
        segment.unlink(missing_ok=True)
        Path(str(segment) + ACKED).unlink(missing_ok=True)

    def quarantine(self, line: bytes) -> None:
        """Keep an undecodable line for an operator instead of dropping it."""
        assert self.dir is not None
        self.corrupt += 1
        with open(self.dir / "corrupt.jsonl", "ab") as handle:
            handle.write(line + b"\n")
        log.error("undecodable line in the usage spool moved to %s", self.dir / "corrupt.jsonl")

    def _pending_lines(self, segment: Path) -> int:
        offset = self.acked_offset(segment)
        count = 0
        with open(segment, "rb") as handle:
            handle.seek(offset)
            for line in handle:
                if line.strip():
                    count += 1
        return count

    def adopt_orphans(self) -> int:
        """Move the segments of spool folders no live process holds into ours. Returns events adopted."""
        adopted = 0
        for other in sorted(self.root.glob("proxy-*")):
            if other == self.dir or not other.is_dir():
                continue
            segments = sorted(other.glob(f"seg-*{SUFFIX}"))
            if not segments and time.time() - other.stat().st_mtime < 60:
                continue  # maybe a process starting right now; empty anyway
            fd = _try_lock(other)
            if fd is None:
                continue  # a live process owns it
            try:
                for segment in segments:
                    target = self.dir / segment.name
                    marker = Path(str(segment) + ACKED)
                    if marker.exists():
                        os.replace(marker, Path(str(target) + ACKED))
                    os.replace(segment, target)
                    adopted += self._pending_lines(target)
                corrupt = other / "corrupt.jsonl"
                if corrupt.exists():
                    os.replace(corrupt, self.dir / f"corrupt-{other.name}.jsonl")
                _fsync_dir(self.dir)
                for leftover in other.iterdir():
                    if leftover.name != "lock":
                        leftover.unlink(missing_ok=True)
                (other / "lock").unlink(missing_ok=True)
                other.rmdir()
            except OSError as exc:
                log.warning("could not adopt spool %s: %s", other, exc)
            finally:
                os.close(fd)
        if adopted:
            with self._mutex:
                self.depth += adopted
            log.info("adopted %d spooled usage events from a previous process", adopted)
        return adopted


def _try_lock(folder: Path) -> int | None:
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
