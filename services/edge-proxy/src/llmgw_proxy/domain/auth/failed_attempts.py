"""Brute-force protection: too many failed key checks from one client address → 429 for a while.

Counted per peer address (the ASGI ``client``; put the proxy behind a load balancer that preserves
it, or accept that the balancer's address is the unit). Fixed one-minute windows, bounded memory:
when the table is full, windows that have ended are dropped first, then the oldest entries.
"""

from __future__ import annotations


class FailedAuthLimiter:
    def __init__(self, per_minute: int, max_addresses: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_addresses = max_addresses
        self._windows: dict[str, tuple[int, int]] = {}  # address -> (window start minute, failures)

    def retry_after(self, address: str, now: float) -> int | None:
        """Seconds until this address may try again, or None when it is not blocked."""
        if self.per_minute <= 0:
            return None
        window = self._windows.get(address)
        minute = int(now // 60)
        if window is None or window[0] != minute or window[1] < self.per_minute:
            return None
        return max(1, int((minute + 1) * 60 - now))

    def record_failure(self, address: str, now: float) -> None:
        if self.per_minute <= 0:
            return
        minute = int(now // 60)
        start, count = self._windows.get(address, (minute, 0))
        self._windows[address] = (minute, count + 1) if start == minute else (minute, 1)
        if len(self._windows) > self.max_addresses:
            self._windows = {a: w for a, w in self._windows.items() if w[0] == minute}
            while len(self._windows) > self.max_addresses:
                self._windows.pop(next(iter(self._windows)))
