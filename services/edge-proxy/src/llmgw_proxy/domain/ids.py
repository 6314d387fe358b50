"""Cheap unique ids for the hot path: UUIDv7 (RFC 9562) as 32 hex characters.

48 bits of Unix milliseconds, version 7, 12 random bits fixed per process, the variant, then
62 bits = 14 random bits fixed per process + a 48-bit counter starting at a random value (the
"monotonic counter" method of RFC 9562 §6.2). Unique across processes (random parts), ordered in
time, built with string formatting only — no ``getrandom`` syscall per id as ``uuid.uuid4`` makes.
"""

from __future__ import annotations

import itertools
import os
import time

_middle = ""
_counter = itertools.count()


def _seed() -> None:
    global _middle, _counter
    rand = int.from_bytes(os.urandom(8), "big")
    rand_a = rand & 0xFFF
    variant_and_high = 0x8000 | ((rand >> 12) & 0x3FFF)  # 0b10 + 14 random bits
    _middle = f"7{rand_a:03x}{variant_and_high:04x}"
    _counter = itertools.count((rand >> 26) & 0xFFFFFFFFFFFF)


_seed()
os.register_at_fork(after_in_child=_seed)  # a forked worker must not share its parent's sequence

_MASK = 0xFFFFFFFFFFFF


def new_id() -> str:
    return f"{time.time_ns() // 1_000_000:012x}{_middle}{next(_counter) & _MASK:012x}"
