"""Route resolution (public model name -> ordered upstream deployments) and circuit breakers.

- The route for a model: the route whose ``model`` equals it, else the first route (in the order
  key-service sends them) whose glob matches it.
- Deployments are tried by ``priority`` (lower first); inside one priority, a weighted random order.
- A deployment whose provider speaks another dialect than the caller is used through a translator
  (:data:`TRANSLATORS`, ``(caller dialect, provider kind)`` -> :class:`Translation`), only on the
  endpoints that have a counterpart (:data:`TRANSLATED_PATHS`: ``/v1/chat/completions`` ⇄
  ``/v1/messages``). On any other endpoint such deployments are skipped; a route left with none
  answers 400 ``translation_not_supported`` (docs/translation.md).
- Upstream model ``*`` means "the name the client asked for".
"""

from __future__ import annotations

import random
import time
from fnmatch import fnmatchcase

from llmgw_common.contract import ProviderCredential
from llmgw_proxy.domain import errors
from llmgw_proxy.domain.auth.key_cache import KeyEntry
from llmgw_proxy.domain.translation import ANTHROPIC_CALLER_TO_OPENAI, OPENAI_CALLER_TO_ANTHROPIC, Translation

DIALECT_KINDS = {"openai": ("openai", "openai-compatible"), "anthropic": ("anthropic",)}

#: (caller dialect, provider kind) -> the translation used for a deployment of the other dialect
TRANSLATORS: dict[tuple[str, str], Translation] = {
    ("openai", "anthropic"): OPENAI_CALLER_TO_ANTHROPIC,
    ("anthropic", "openai"): ANTHROPIC_CALLER_TO_OPENAI,
    ("anthropic", "openai-compatible"): ANTHROPIC_CALLER_TO_OPENAI,
}

#: caller dialect -> the one endpoint translated for it (the others have no counterpart)
TRANSLATED_PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


class Candidate:
    __slots__ = ("provider", "upstream_model", "weight", "priority", "name", "translator")

    def __init__(self, provider: ProviderCredential, upstream_model: str, weight: int, priority: int, translator=None):
        self.provider = provider
        self.upstream_model = upstream_model
        self.weight = max(int(weight), 0)
        self.priority = priority
        #: "<provider>/<upstream model>": the usage event's ``deployment`` and the breaker key
        self.name = f"{provider.name}/{upstream_model}"
        self.translator = translator


class Resolution:
    __slots__ = ("groups", "single")

    def __init__(self, groups: list[list[Candidate]]) -> None:
        self.groups = groups
        self.single = groups[0][0] if len(groups) == 1 and len(groups[0]) == 1 else None

    def ordered(self) -> list[Candidate]:
        if self.single is not None:
            return [self.single]
        out: list[Candidate] = []
        for group in self.groups:
            if len(group) == 1:
                out.extend(group)
            else:
                out.extend(_weighted_order(group))
        return out


def _weighted_order(group: list[Candidate]) -> list[Candidate]:
    """A random permutation where each next pick is proportional to weight (zero weights last)."""
    pool = [c for c in group if c.weight > 0]
    out: list[Candidate] = []
    while pool:
        total = sum(c.weight for c in pool)
        pick = random.random() * total
        for i, c in enumerate(pool):
            pick -= c.weight
            if pick < 0:
                out.append(pool.pop(i))
                break
        else:  # float rounding
            out.append(pool.pop())
    out.extend(c for c in group if c.weight <= 0)
    return out


def resolve(entry: KeyEntry, model: str, dialect: str, path: str | None = None) -> Resolution:
    """Cached per key entry; raises ProxyError 404 (no route/provider) or 400 (needs a translation
    this endpoint does not have). ``path`` = the endpoint: deployments of the other dialect are
    usable only when it is the dialect's translated endpoint (``None``: the translated one)."""
    translate = path is None or TRANSLATED_PATHS.get(dialect) == path
    key = (model, dialect, translate)
    hit = entry.resolutions.get(key)
    if hit is not None:
        if isinstance(hit, errors.ProxyError):
            raise hit
        return hit
    try:
        result: Resolution | errors.ProxyError = _resolve(entry, model, dialect, translate, path)
    except errors.ProxyError as exc:
        result = exc
    if len(entry.resolutions) > 1000:
        entry.resolutions.clear()
    entry.resolutions[key] = result
    if isinstance(result, errors.ProxyError):
        raise result
    return result


def find_route(entry: KeyEntry, model: str):
    for route in entry.routes:
        if route.model == model:
            return route
    for route in entry.routes:
        if any(ch in route.model for ch in "*?[") and fnmatchcase(model, route.model):
            return route
    return None


def _resolve(entry: KeyEntry, model: str, dialect: str, translate: bool = True, path: str | None = None) -> Resolution:
    route = find_route(entry, model)
    if route is None:
        raise errors.model_not_found(model)
    kinds = DIALECT_KINDS[dialect]
    usable: list[Candidate] = []
    foreign_kind = None
    for dep in route.deployments:
        provider = entry.providers.get(dep.provider)
        if provider is None:
            continue
        upstream_model = model if dep.model in ("*", "") else dep.model
        translator = None
        if provider.kind not in kinds:
            translator = TRANSLATORS.get((dialect, provider.kind)) if translate else None
            if translator is None:
                foreign_kind = provider.kind
                continue
        usable.append(Candidate(provider, upstream_model, dep.weight, dep.priority, translator))
    if not usable:
        caller = "OpenAI" if dialect == "openai" else "Anthropic"
        if foreign_kind is not None and not translate:
            raise errors.translation_not_supported(model, caller, foreign_kind, path or "", TRANSLATED_PATHS[dialect])
        if foreign_kind is not None:
            raise errors.translation_not_enabled(model, caller, foreign_kind)
        raise errors.model_not_found(model, " (no provider is configured for its route)")
    priorities = sorted({c.priority for c in usable})
    return Resolution([[c for c in usable if c.priority == p] for p in priorities])


def passthrough_provider(entry: KeyEntry, dialect: str = "openai") -> ProviderCredential | None:
    """The provider other ``/v1/*`` paths go to: the key's first provider of the dialect's kinds."""
    for kind in DIALECT_KINDS[dialect]:
        for provider in entry.providers.values():
            if provider.kind == kind:
                return provider
    return None


class _Breaker:
    __slots__ = ("failures", "open_until", "probe_started")

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.probe_started = 0.0


class Breakers:
    """Per-deployment circuit breakers: ``threshold`` consecutive failures open it for ``cooldown``
    seconds; then one request probes (half-open): success closes it, failure re-opens it."""

    def __init__(self, threshold: int, cooldown: float, metrics=None) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.metrics = metrics
        self._state: dict[str, _Breaker] = {}

    def allow(self, name: str) -> bool:
        state = self._state.get(name)
        if state is None or state.open_until == 0.0:
            return True
        now = time.monotonic()
        if now < state.open_until:
            return False
        if state.probe_started and now - state.probe_started < self.cooldown:
            return False  # a probe is in flight
        state.probe_started = now
        return True

    def retry_after(self, names: list[str]) -> float:
        now = time.monotonic()
        waits = [s.open_until - now for n in names if (s := self._state.get(n)) is not None and s.open_until > now]
        return min(waits) if waits else self.cooldown

    def success(self, name: str) -> None:
        if name in self._state:
            del self._state[name]

    def failure(self, name: str) -> None:
        state = self._state.get(name)
        if state is None:
            if len(self._state) > 10_000:
                self._state.clear()
            state = self._state[name] = _Breaker()
        state.failures += 1
        if state.probe_started or state.failures >= self.threshold:
            state.open_until = time.monotonic() + self.cooldown
            state.probe_started = 0.0
            if self.metrics is not None:
                self.metrics.breaker_opened(name)

    def is_open(self, name: str) -> bool:
        state = self._state.get(name)
        return state is not None and state.open_until > time.monotonic()
