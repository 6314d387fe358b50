"""Cheap unique ids for the hot path: UUIDv7 (RFC 9562) as 32 hex characters.

48 bits of Unix milliseconds, then a per-process random 74-bit base plus a counter (the
"monotonic counter" method of RFC 9562 §6.2) — unique across processes (random base), ordered in
time, and without a ``getrandom`` syscall per id (``uuid.uuid4`` costs one).
"""

from __future__ import annotations

import itertools
import os
import time

_RAND_BITS = 74
_MASK = (1 << _RAND_BITS) - 1
_base = int.from_bytes(os.urandom(10), "big") & _MASK
_counter = itertools.count()


def _reseed() -> None:  # a forked worker must not share its parent's sequence
    global _base, _counter
    _base = int.from_bytes(os.urandom(10), "big") & _MASK
    _counter = itertools.count()


os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    rand = (_base + next(_counter)) & _MASK
    rand_a = rand >> 62  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    value = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return f"{value:032x}"
