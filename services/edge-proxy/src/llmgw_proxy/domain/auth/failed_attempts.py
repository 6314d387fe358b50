"""Brute-force protection: too many failed key checks from one client address → 429 for a while.

Counted per client address. That is the TCP peer, unless the peer is one of the reverse proxies
listed in ``LLMGW_TRUSTED_PROXIES`` (CIDRs, parsed once at start-up): then it is the right-most
address in ``X-Forwarded-For`` that is not itself a trusted proxy (or ``X-Real-IP`` when there is no
``X-Forwarded-For``). Entries a client wrote itself sit left of what the trusted proxies appended,
so they are never reached while an untrusted hop is on the right of them. The address is only
worked out when it matters: on a failed key check, or for an unknown key once some address has
failed (``active``); a request with a known key never pays for it.

Fixed one-minute windows, bounded memory: when the table is full, windows that have ended are
dropped first, then the oldest entries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``X-Forwarded-For`` entries looked at, from the right (a longer chain is not believed further)
MAX_HOPS = 16
#: trusted/untrusted answers remembered per address string (cleared when full)
_TRUST_CACHE_SIZE = 4096


def parse_networks(value: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 192.168.1.7"`` → networks; raises ValueError naming a bad entry."""
    items = value.split(",") if isinstance(value, str) else value
    networks = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {item!r}") from None
    return tuple(networks)


def _parse_ip(text: str) -> IPAddress | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]``, ``[::1]:80``)."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped if mapped is not None else ip


class FailedAuthLimiter:
    def __init__(self, per_minute: int, max_addresses: int = 100_000, trusted_proxies: str | Iterable[str] = ()) -> None:
        self.per_minute = per_minute
        self.max_addresses = max_addresses
        self._windows: dict[str, tuple[int, int]] = {}  # address -> (window start minute, failures)
        self._trusted: tuple[IPNetwork, ...] = parse_networks(trusted_proxies)
        self._trust_cache: dict[str, bool] = {}

    @property
    def active(self) -> bool:
        """Some address has failed recently (False while nobody guesses: nothing to check)."""
        return bool(self._windows)

    # --- who is the client ------------------------------------------------------------------------
    def is_trusted(self, address: str) -> bool:
        if not self._trusted:
            return False
        known = self._trust_cache.get(address)
        if known is not None:
            return known
        ip = _parse_ip(address)
        trusted = ip is not None and any(ip in net for net in self._trusted)
        if len(self._trust_cache) >= _TRUST_CACHE_SIZE:
            self._trust_cache.clear()
        self._trust_cache[address] = trusted
        return trusted

    def client_address(self, peer: str, headers: Iterable[tuple[bytes, bytes]]) -> str:
        """The address failures are counted against (see the module docstring)."""
        if not self._trusted or not self.is_trusted(peer):
            return peer
        forwarded: list[bytes] = []
        real_ip = None
        for name, value in headers:
            if name[:2] == b"x-":
                if name == b"x-forwarded-for":
                    forwarded.append(value)  # several headers = one list, in order (RFC 9110)
                elif name == b"x-real-ip":
                    real_ip = value
        if forwarded:
            hops = b",".join(forwarded).decode("latin-1").split(",")[-MAX_HOPS:]
            client = peer
            for hop in reversed(hops):
                ip = _parse_ip(hop)
                if ip is None:
                    # garbage a trusted proxy would not have written: stop at the last real hop
                    return client
                client = str(ip)
                if not self.is_trusted(client):
                    return client
            return client  # every hop is trusted: the left-most one
        if real_ip is not None:
            ip = _parse_ip(real_ip.decode("latin-1"))
            if ip is not None:
                return str(ip)
        return peer

    def address(self, inc) -> str:
        """``client_address`` of an ``Incoming`` request."""
        return self.client_address(inc.client_address, inc.headers) if self._trusted else inc.client_address

    # --- counting -----------------------------------------------------------------------------
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
