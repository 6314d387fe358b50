"""The warm lookup cache: key hash -> the encoded ``KeyLookupReply`` bytes.

A hit is a dict probe and a monotonic-clock compare (microseconds), so the NATS responder can
answer without touching Postgres. Correctness comes from three things together:

* every mutation drops the affected hashes locally right after its commit, and every replica
  drops them again when the ``KeyChanged`` event arrives on ``SUBJECT_KEY_CHANGED``;
* a ``generation`` counter, bumped by every invalidation: an answer computed from a database
  read that started before an invalidation is not stored (it may be stale);
* a TTL (``LLMGW_KEYS_CACHE_TTL_SECONDS``) and an entry never outliving the key's ``expires_at``
  or the ``grace_until`` of a rotated-away secret, so even a lost event heals by itself.
Reconnecting to NATS clears everything (events may have been missed meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any


class LookupCache:
    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max(1, max_entries)
        self._entries: dict[str, tuple[bytes, float]] = {}
        self.generation = 0
        #: providers (decrypted) and routes, shared by every reply
        self.shared: Any = None
        self.shared_expires = 0.0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_hash: str) -> bytes | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            self.misses += 1
            return None
        data, expires = entry
        if expires <= time.monotonic():
            self._entries.pop(key_hash, None)
            self.misses += 1
            return None
        self.hits += 1
        return data

    def put(self, key_hash: str, data: bytes, generation: int, max_age: float | None = None) -> None:
        if generation != self.generation:
            return  # an invalidation happened while this answer was computed: it may be stale
        ttl = self.ttl if max_age is None else max(0.0, min(self.ttl, max_age))
        if ttl <= 0:
            return
        if key_hash not in self._entries and len(self._entries) >= self.max_entries:
            # Oldest insertion first (dicts keep insertion order): cheap and good enough.
            self._entries.pop(next(iter(self._entries)), None)
        self._entries[key_hash] = (data, time.monotonic() + ttl)

    def get_shared(self) -> Any:
        if self.shared is not None and self.shared_expires > time.monotonic():
            return self.shared
        return None

    def put_shared(self, shared: Any, generation: int) -> None:
        if generation != self.generation:
            return
        self.shared = shared
        self.shared_expires = time.monotonic() + self.ttl

    def invalidate(self, key_hashes: Iterable[str]) -> None:
        self.generation += 1
        for key_hash in key_hashes:
            self._entries.pop(key_hash, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self.shared = None
        self.shared_expires = 0.0
