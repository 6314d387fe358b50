"""Which other ``/v1/*`` paths a key may have forwarded as-is (``LLMGW_PASSTHROUGH``).

Pass-through requests act on the *provider account* behind the gateway (files, batches, fine-tuning,
…), which every virtual key routed to that provider shares. The contract forwards them all by
default (``all``); an operator can narrow that to ``none`` or to a list of path prefixes, and a key
can carry its own policy in its metadata (``{"passthrough": "none" | "all" | "/v1/audio/,…" | [...]}``),
which replaces the gateway's for that key. A prefix matches whole path segments: ``/v1/audio/`` and
``/v1/audio`` both allow ``/v1/audio`` and everything below it, never ``/v1/audiox``.

A request outside the policy gets 404 in the caller's dialect (OpenAI's ``unknown_url``), after
authentication and before any limit, budget or upstream call.
"""

from __future__ import annotations

import logging

from llmgw_proxy.domain import errors

log = logging.getLogger(__name__)

#: metadata field of a key that overrides LLMGW_PASSTHROUGH for it
METADATA_FIELD = "passthrough"
_CACHE_SIZE = 1024


class PassthroughPolicy:
    __slots__ = ("allow_all", "prefixes", "text")

    def __init__(self, allow_all: bool, prefixes: tuple[str, ...] = (), text: str = "") -> None:
        self.allow_all = allow_all
        #: (exact path, path + "/") pairs flattened: a path is allowed when it equals one of the
        #: exact forms or starts with one of the directory forms
        self.prefixes = prefixes
        self.text = text

    @classmethod
    def parse(cls, value: str | list | tuple) -> PassthroughPolicy:
        """``all`` | ``none`` | comma-separated prefixes (or a list of them); ValueError when invalid."""
        if value is True or value is False:
            return cls(value, (), "all" if value else "none")
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.lower() in ("all", "*"):
                return cls(True, (), "all")
            if stripped.lower() in ("none", ""):
                return cls(False, (), "none")
            items = stripped.split(",")
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            raise ValueError(f"passthrough policy must be 'all', 'none' or path prefixes, not {type(value).__name__}")
        prefixes: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise ValueError(f"passthrough prefix must be a string, not {item!r}")
            item = item.strip()
            if not item:
                continue
            if not item.startswith("/v1/") or len(item) == len("/v1/"):
                raise ValueError(f"passthrough prefix must start with '/v1/' and name a path: {item!r}")
            if any(c in item for c in "?#%\\") or any(seg in (".", "..") for seg in item.split("/")):
                raise ValueError(f"passthrough prefix must be a plain path: {item!r}")
            base = item.rstrip("/")
            prefixes.append(base)
        if not prefixes:
            return cls(False, (), "none")
        return cls(False, tuple(dict.fromkeys(prefixes)), ",".join(dict.fromkeys(prefixes)))

    def allows(self, path: str) -> bool:
        if self.allow_all:
            return True
        for prefix in self.prefixes:
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return True
        return False


#: a key whose metadata policy cannot be read forwards nothing (fail closed)
_DENY_ALL = PassthroughPolicy(False, (), "none")


class PassthroughGuard:
    """The gateway's policy plus per-key overrides (parsed once per distinct metadata value)."""

    def __init__(self, default: str | PassthroughPolicy = "all") -> None:
        self.default = default if isinstance(default, PassthroughPolicy) else PassthroughPolicy.parse(default)
        self._per_key: dict[object, PassthroughPolicy] = {}

    def policy_for(self, metadata: dict | None) -> PassthroughPolicy:
        value = metadata.get(METADATA_FIELD) if metadata else None
        if value is None:
            return self.default
        cache_key = tuple(value) if isinstance(value, list) else value
        try:
            policy = self._per_key.get(cache_key)
        except TypeError:  # unhashable (a dict in the metadata)
            policy, cache_key = None, None
        if policy is None:
            try:
                policy = PassthroughPolicy.parse(value)
            except ValueError as exc:
                log.warning("key metadata 'passthrough' is invalid (%s): nothing is passed through for it", exc)
                policy = _DENY_ALL
            if cache_key is not None:
                if len(self._per_key) >= _CACHE_SIZE:
                    self._per_key.clear()
                self._per_key[cache_key] = policy
        return policy

    def check(self, method: str, path: str, metadata: dict | None) -> None:
        """404 (``unknown_url``) unless the key's policy forwards ``path``."""
        if not self.policy_for(metadata).allows(path):
            raise unknown_url(method, path)


def unknown_url(method: str, path: str) -> errors.ProxyError:
    """What OpenAI answers for a path it does not serve (Anthropic: ``not_found_error``)."""
    return errors.ProxyError(
        404,
        f"Invalid URL ({method} {path}): this gateway does not forward this path.",
        openai_type="invalid_request_error",
        code="unknown_url",
        anthropic_type="not_found_error",
        reason="passthrough_denied",
    )
