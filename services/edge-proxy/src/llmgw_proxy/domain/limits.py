"""Per-key request/token rate limits (fixed UTC-minute windows) and the in-flight cap.

Cluster-wide counting with leases (no per-request round trip, no overshoot):
every replica *leases* capacity from a shared counter in JetStream KV (bucket ``llmgw_ratelimit``,
entry ``<key_id>.<epoch minute>`` holding the totals leased so far, updated by compare-and-set on
the entry's revision) in chunks of ~5% of the limit, and admits requests from its local lease
without I/O. A lease is granted only while ``leased + chunk <= limit``, so the requests admitted in
one window across all replicas never exceed ``rpm_limit``. The price: capacity one replica leased
and did not use is not available to the others in that window (at most ``replicas - 1`` chunks).

Tokens: a request is charged its estimate (prompt bytes / 4 + max_tokens or the default, capped at
the limit) before dispatch and corrected to the usage the provider reported afterwards; the
correction is local (a refund, or a debt the next lease must cover). The overshoot is bounded by
the estimation error of the requests in flight when the window's lease ran out.

``max_parallel_requests`` is enforced per replica (in-flight counters are not shared: a crashed
replica would leak its slots): the cluster-wide bound is ``replicas × max_parallel_requests``.

While NATS is unreachable each replica counts locally (bound: ``replicas × limit`` per window).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from llmgw_common.contract import KeyRecord
from llmgw_proxy.domain import errors
from llmgw_proxy.domain.kv import KV_OP_TIMEOUT

log = logging.getLogger(__name__)

LEASE_FRACTION = 20  # a lease is ~1/20 of the limit
MAX_REQUEST_LEASE = 100


class _Leased(msgspec.Struct):
    r: int = 0
    t: int = 0


_leased_decoder = msgspec.json.Decoder(_Leased)
_encode = msgspec.json.Encoder().encode


class Window:
    __slots__ = ("minute", "req_lease", "tok_lease", "used_req", "used_tok", "kv_req", "kv_tok", "lock", "degraded")

    def __init__(self, minute: int) -> None:
        self.minute = minute
        self.req_lease = 0
        self.tok_lease = 0
        self.used_req = 0
        self.used_tok = 0
        self.kv_req = 0
        self.kv_tok = 0
        self.lock = asyncio.Lock()
        self.degraded = False


class Admission:
    __slots__ = ("key_id", "window", "tokens", "parallel")

    def __init__(self, key_id: str, window: Window | None, tokens: int, parallel: bool) -> None:
        self.key_id = key_id
        self.window = window
        self.tokens = tokens
        self.parallel = parallel


def _reset_text(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


class RateLimiter:
    def __init__(self, metrics=None) -> None:
        self.kv = None
        self.nc = None
        self.metrics = metrics
        self._windows: dict[str, Window] = {}
        self.inflight: dict[str, int] = {}

    def window(self, key_id: str) -> Window | None:
        w = self._windows.get(key_id)
        if w is not None and w.minute == int(time.time() // 60):
            return w
        return None

    async def admit(self, record: KeyRecord, estimate: int) -> Admission | None:
        rpm = record.rpm_limit
        tpm = record.tpm_limit
        parallel = record.max_parallel_requests
        if rpm is None and tpm is None and parallel is None:
            return None
        key_id = record.id
        if parallel is not None and self.inflight.get(key_id, 0) >= parallel:
            self._reject("max_parallel")
            raise errors.rate_limited(
                "parallel",
                f"Too many parallel requests for this key: the limit is {parallel} in flight.",
                [(b"retry-after", b"1")],
            )
        window = None
        need_tokens = 0
        if rpm is not None or tpm is not None:
            now = time.time()
            minute = int(now // 60)
            window = self._windows.get(key_id)
            if window is None or window.minute != minute:
                if len(self._windows) > 100_000:
                    self._windows = {k: w for k, w in self._windows.items() if w.minute == minute}
                window = self._windows[key_id] = Window(minute)
            need_tokens = min(estimate, tpm) if tpm is not None else 0
            while not self._fits(window, rpm, tpm, need_tokens):
                async with window.lock:
                    if self._fits(window, rpm, tpm, need_tokens):
                        break
                    await self._lease(key_id, window, rpm, tpm, need_tokens, now)
            if rpm is not None:
                window.req_lease -= 1
                window.used_req += 1
            if tpm is not None:
                window.tok_lease -= need_tokens
                window.used_tok += need_tokens
        if parallel is not None:
            self.inflight[key_id] = self.inflight.get(key_id, 0) + 1
        return Admission(key_id, window, need_tokens, parallel is not None)

    def release(self, admission: Admission | None, actual_tokens: int | None) -> None:
        if admission is None:
            return
        if admission.parallel:
            left = self.inflight.get(admission.key_id, 1) - 1
            if left > 0:
                self.inflight[admission.key_id] = left
            else:
                self.inflight.pop(admission.key_id, None)
            admission.parallel = False
        window = admission.window
        if window is not None and actual_tokens is not None and admission.tokens is not None:
            if self._windows.get(admission.key_id) is window:
                delta = admission.tokens - actual_tokens
                window.tok_lease += delta
                window.used_tok -= delta
            admission.window = None

    @staticmethod
    def _fits(w: Window, rpm: int | None, tpm: int | None, need_tokens: int) -> bool:
        return (rpm is None or w.req_lease >= 1) and (tpm is None or w.tok_lease >= need_tokens)

    async def _lease(self, key_id: str, w: Window, rpm, tpm, need_tokens: int, now: float) -> None:
        short_r = 1 - w.req_lease if rpm is not None and w.req_lease < 1 else 0
        short_t = need_tokens - w.tok_lease if tpm is not None and w.tok_lease < need_tokens else 0
        want_r = max(short_r, min(MAX_REQUEST_LEASE, rpm // LEASE_FRACTION)) if short_r else 0
        want_t = max(short_t, tpm // LEASE_FRACTION) if short_t else 0
        reset = 60 - (now % 60)
        if self.kv is None or self.nc is None or not self.nc.is_connected or w.degraded:
            self._lease_locally(w, rpm, tpm)
        else:
            name = f"{key_id}.{w.minute}"
            try:
                await asyncio.wait_for(self._lease_kv(name, w, rpm, tpm, short_r, short_t, want_r, want_t, reset), KV_OP_TIMEOUT * 3)
                return
            except errors.ProxyError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS trouble: degrade to local counting
                log.warning("rate-limit KV unavailable (%s); counting locally for this window", type(exc).__name__)
                w.degraded = True
                self._lease_locally(w, rpm, tpm)
        if not self._fits(w, rpm, tpm, need_tokens):
            self._raise(w, rpm, tpm, "requests" if short_r and w.req_lease < 1 else "tokens", reset)

    def _lease_locally(self, w: Window, rpm, tpm) -> None:
        if rpm is not None:
            w.req_lease = rpm - w.used_req
        if tpm is not None:
            w.tok_lease = tpm - w.used_tok

    async def _lease_kv(self, name, w: Window, rpm, tpm, short_r, short_t, want_r, want_t, reset) -> None:
        kv = self.kv
        for _ in range(50):
            try:
                entry = await kv.get(name)
                leased = _leased_decoder.decode(entry.value) if entry.value else _Leased()
                revision = entry.revision
            except KeyNotFoundError:
                leased, revision = _Leased(), None
            w.kv_req, w.kv_tok = leased.r, leased.t
            grant_r = min(want_r, rpm - leased.r) if short_r else 0
            grant_t = min(want_t, tpm - leased.t) if short_t else 0
            if short_r and grant_r < short_r:
                self._raise(w, rpm, tpm, "requests", reset)
            if short_t and grant_t < short_t:
                self._raise(w, rpm, tpm, "tokens", reset)
            value = _encode(_Leased(r=leased.r + grant_r, t=leased.t + grant_t))
            try:
                if revision is None:
                    await kv.create(name, value)
                else:
                    await kv.update(name, value, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another replica leased meanwhile
            w.req_lease += grant_r
            w.tok_lease += grant_t
            w.kv_req, w.kv_tok = leased.r + grant_r, leased.t + grant_t
            return
        raise TimeoutError("rate-limit lease kept conflicting")

    def _raise(self, w: Window, rpm, tpm, kind: str, reset: float) -> None:
        self._reject(f"rate_limit_{kind}")
        headers = [(b"retry-after", str(max(1, math.ceil(reset))).encode())]
        reset_text = _reset_text(reset).encode()
        if rpm is not None:
            used = max(w.kv_req - w.req_lease, w.used_req)
            remaining = 0 if kind == "requests" else max(0, rpm - used)
            headers += [
                (b"x-ratelimit-limit-requests", str(rpm).encode()),
                (b"x-ratelimit-remaining-requests", str(remaining).encode()),
                (b"x-ratelimit-reset-requests", reset_text),
            ]
        if tpm is not None:
            used = max(w.kv_tok - w.tok_lease, w.used_tok)
            remaining = 0 if kind == "tokens" else max(0, tpm - used)
            headers += [
                (b"x-ratelimit-limit-tokens", str(tpm).encode()),
                (b"x-ratelimit-remaining-tokens", str(remaining).encode()),
                (b"x-ratelimit-reset-tokens", reset_text),
            ]
        limit = rpm if kind == "requests" else tpm
        unit = "requests" if kind == "requests" else "tokens"
        raise errors.rate_limited(
            kind,
            f"Rate limit reached for this key: {limit} {unit} per minute. Retry after the window resets.",
            headers,
        )

    def _reject(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejected(reason)
