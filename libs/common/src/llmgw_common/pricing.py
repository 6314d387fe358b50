"""What a request cost, in exact decimal USD, from the ``genai-prices`` package's bundled data.

Shared by metering (the ledger prices every usage event at ingest) and the edge proxy (budget
estimates before dispatch). Offline only: the price data is the snapshot that ships inside the
installed ``genai-prices`` wheel; nothing is ever fetched at run time, so the price of an event is
reproducible from ``price_version``.

API (small on purpose)::

    from llmgw_common.pricing import price, Pricer, PriceOverride, Price, PRICE_DATA_VERSION

    p = price("openai", "gpt-4o", prompt_tokens=1200, cached_tokens=200, completion_tokens=300)
    p.cost_usd       # Decimal('0.00575')  exact
    p.known          # False when neither an override nor genai-prices knows the model (cost is then 0)
    p.price_version  # "genai-prices-0.2.3", or "override:<model glob>[@provider]:<version>"

Token arguments follow the usage-event contract (CONTRACT.md): ``prompt_tokens`` counts ALL input
tokens, cache reads (``cached_tokens``) and cache writes (``cache_write_tokens``) included;
``completion_tokens`` includes reasoning tokens. A ``prompt_tokens`` smaller than
``cached_tokens + cache_write_tokens`` (a producer that forgot to add them) is raised to that sum.

Resolution order for ``(provider, model)``:

1. the first matching :class:`PriceOverride` (admin-configured negotiated / self-hosted prices;
   globs on the model name, optionally restricted to one provider; provider-specific and exact
   patterns win over wildcards, longer patterns over shorter);
2. genai-prices, with ``provider`` as its provider id (``"openai"``, ``"anthropic"``, ``"azure"`` … and
   anything genai-prices maps to those, e.g. ``"anthropic-eu"``); a gateway provider name genai-prices
   does not know (``"mock"``, ``"vllm-local"``) falls back to genai-prices' own model-name matching;
3. otherwise ``Price(cost_usd=0, known=False)`` - an unknown model is flagged, never an error.

``aliases`` are other names of the same model (metering passes the public model name when it prices
the upstream one); they are tried, in order, after ``model`` at each step.

Speed: ``genai_prices.calc_price`` costs ~200 µs per call, too slow for an ingest path of 20k events/s.
Within one price "bucket" (a model's price record at a point in time, and one tier band of the
total input tokens) genai-prices' price is an affine function of the four token counts, so
:class:`Pricer` asks genai-prices for the function's five coefficients once per bucket (using
genai-prices' own calculation on unit usages) and then evaluates it with exact ``Decimal``
arithmetic: the result equals ``genai_prices.calc_price`` exactly (the test-suite checks it over
every model of the main providers and across tier boundaries) at ~2 µs per call.
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal, Inexact, InvalidOperation, Rounded
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import NamedTuple

__all__ = [
    "preload",
    "PRICE_DATA_VERSION",
    "Price",
    "PriceOverride",
    "Pricer",
    "price",
]

try:
    _GENAI_VERSION = _dist_version("genai-prices")
except PackageNotFoundError:  # pragma: no cover - declared dependency
    _GENAI_VERSION = "unknown"

#: Identifies the bundled price data every genai-prices price was computed from.
PRICE_DATA_VERSION = f"genai-prices-{_GENAI_VERSION}"

ZERO = Decimal(0)
MTOK = Decimal(1_000_000)
#: decimal context for exact re-scaling (never rounds at these sizes)
_EXACT = Context(prec=100, traps=[Inexact, Rounded, InvalidOperation])


class Price(NamedTuple):
    cost_usd: Decimal
    #: False when no override and no genai-prices entry matched (cost_usd is then 0).
    known: bool
    #: Where the unit prices came from: ``genai-prices-<version>`` or ``override:<glob>[@provider]:<version>``.
    price_version: str


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """An admin-set price for models matching ``model`` (a glob, e.g. ``gpt-4o*``), in USD per million tokens.

    ``cached_input_usd_per_mtok`` / ``cache_write_usd_per_mtok`` default to the input price when None.
    ``provider`` None (or "") applies to every provider.
    """

    model: str
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    cached_input_usd_per_mtok: Decimal | None = None
    cache_write_usd_per_mtok: Decimal | None = None
    provider: str | None = None
    #: recorded in ``price_version`` (metering uses the override's update time)
    version: str = ""

    def matches(self, provider: str, model: str) -> bool:
        if self.provider and self.provider != provider:
            return False
        return fnmatch.fnmatchcase(model.lower(), self.model.lower())

    def specificity(self) -> tuple[int, int, int]:
        """Sort key, most specific first: provider-bound, then exact (no glob), then longer patterns."""
        exact = not any(ch in self.model for ch in "*?[")
        return (0 if self.provider else 1, 0 if exact else 1, -len(self.model))

    def cost(self, prompt: int, cached: int, cache_write: int, completion: int) -> Decimal:
        inp = Decimal(self.input_usd_per_mtok)
        cached_price = inp if self.cached_input_usd_per_mtok is None else Decimal(self.cached_input_usd_per_mtok)
        write_price = inp if self.cache_write_usd_per_mtok is None else Decimal(self.cache_write_usd_per_mtok)
        total = (
            (prompt - cached - cache_write) * inp
            + cached * cached_price
            + cache_write * write_price
            + completion * Decimal(self.output_usd_per_mtok)
        )
        return total / MTOK

    @property
    def price_version(self) -> str:
        where = f"@{self.provider}" if self.provider else ""
        return f"override:{self.model}{where}:{self.version}" if self.version else f"override:{self.model}{where}"


# --- genai-prices fast path -----------------------------------------------------------------------

_MISSING = object()


@dataclass(slots=True)
class _Coefficients:
    """cost = (base + uncached*a + cached*b + cache_write*c + completion*d) * 10**-scale, in exact integers.

    Integer arithmetic keeps the hot path at ~1 µs; the result is the same decimal number genai-prices
    computes (it is exact in both).
    """

    scale: int
    base: int
    uncached_input: int
    cached_input: int
    cache_write: int
    output: int

    @classmethod
    def from_decimals(cls, base: Decimal, a: Decimal, b: Decimal, c: Decimal, d: Decimal) -> _Coefficients:
        values = (base, a, b, c, d)
        scale = max(0, *(-v.as_tuple().exponent for v in values))
        ints = [int(v.scaleb(scale, _EXACT)) for v in values]
        return cls(scale, *ints)

    def cost(self, prompt: int, cached: int, cache_write: int, completion: int) -> Decimal:
        n = (
            self.base
            + (prompt - cached - cache_write) * self.uncached_input
            + cached * self.cached_input
            + cache_write * self.cache_write
            + completion * self.output
        )
        return Decimal(f"{n}E-{self.scale}") if self.scale else Decimal(n)


class _GenaiPrices:
    """Looks models up in genai-prices' bundled snapshot and caches affine price coefficients."""

    def __init__(self) -> None:
        from genai_prices import data_snapshot

        # The bundled snapshot only: get_snapshot() would prefer one set by genai-prices'
        # UpdatePrices (remote data); we never start that, and never read it either.
        self._snapshot = data_snapshot._bundled_snapshot()
        self._models: dict[tuple[str, str], object] = {}
        #: id(ModelPrice) -> (ModelPrice, tier starts, {band: coefficients | None})
        self._prices: dict[int, tuple[object, tuple[int, ...], dict[int, _Coefficients | None]]] = {}
        self._lock = threading.Lock()

    def find(self, provider: str, model: str):
        """(genai Provider, ModelInfo) or None."""
        key = (provider, model)
        found = self._models.get(key, _MISSING)
        if found is not _MISSING:
            return found
        found = self._lookup(provider, model)
        with self._lock:
            if len(self._models) > 50_000:  # bounded: model names come from clients
                self._models.clear()
            self._models[key] = found
        return found

    def _lookup(self, provider: str, model: str):
        snapshot = self._snapshot
        if not model:
            return None
        provider_id: str | None = provider or None
        if provider_id is not None:
            try:
                snapshot.find_provider(None, provider_id, None)
            except LookupError:
                provider_id = None  # a gateway provider name genai-prices does not know: match on the model
        try:
            return snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            return None

    def cost(self, found, at: datetime, prompt: int, cached: int, cache_write: int, completion: int) -> Decimal:
        genai_provider, model_info = found
        model_price = model_info.get_prices(at)
        entry = self._prices.get(id(model_price))
        if entry is None or entry[0] is not model_price:
            entry = self._register(model_price)
        starts, bands = entry[1], entry[2]
        band = 0
        for start in starts:
            if prompt > start:
                band += 1
        if band in bands:
            c = bands[band]
        else:
            c = self._derive(genai_provider, model_info, at, starts, band)
            with self._lock:
                bands[band] = c
        if c is None:  # a one-token-wide band: not worth caching, ask genai-prices
            return self._calc(genai_provider, model_info, at, prompt, cached, cache_write, completion)
        return c.cost(prompt, cached, cache_write, completion)

    def _register(self, model_price):
        from genai_prices.types import TieredPrices

        starts = tuple(
            sorted(
                {
                    tier.start
                    for value in vars(model_price).values()
                    if isinstance(value, TieredPrices)
                    for tier in value.tiers
                }
            )
        )
        entry = (model_price, starts, {})
        with self._lock:
            self._prices[id(model_price)] = entry
        return entry

    @staticmethod
    def _calc(genai_provider, model_info, at, prompt, cached, cache_write, completion) -> Decimal:
        from genai_prices import Usage

        usage = Usage(
            input_tokens=prompt,
            cache_read_tokens=cached,
            cache_write_tokens=cache_write,
            output_tokens=completion,
        )
        return model_info.calc_price(usage, genai_provider, genai_request_timestamp=at).total_price

    def _derive(self, genai_provider, model_info, at, starts: tuple[int, ...], band: int) -> _Coefficients | None:
        """The affine function's coefficients inside tier band ``band``, from genai-prices' own numbers.

        Band k holds the prompt sizes p with ``starts[k-1] < p <= starts[k]`` (tiers apply when the
        total input is strictly above their start). Two adjacent prompt sizes inside the band give the
        per-input-token slope; one more token of each kind on top gives the other slopes.
        """
        low = 0 if band == 0 else starts[band - 1] + 1
        high = starts[band] if band < len(starts) else None
        if high is not None and low + 1 > high:
            return None
        r1, r2 = low, low + 1

        def f(prompt: int, cached: int = 0, write: int = 0, out: int = 0) -> Decimal:
            return self._calc(genai_provider, model_info, at, prompt, cached, write, out)

        f1 = f(r1)
        f2 = f(r2)
        a = f2 - f1  # per uncached input token
        base = f1 - r1 * a
        return _Coefficients.from_decimals(
            base,
            a,
            f(r2, cached=1) - f2 + a,
            f(r2, write=1) - f2 + a,
            f(r1, out=1) - f1,
        )


_genai: _GenaiPrices | None = None
_genai_lock = threading.Lock()


def preload() -> None:
    """Load genai-prices' bundled data now (~0.4 s of CPU) instead of inside the first request or
    batch that needs a price; idempotent. Services call it while starting."""
    _genai_prices()


def _genai_prices() -> _GenaiPrices:
    global _genai
    if _genai is None:
        with _genai_lock:
            if _genai is None:
                _genai = _GenaiPrices()
    return _genai


# --- public API ---------------------------------------------------------------------------------


@dataclass
class Pricer:
    """Prices usage with a fixed set of overrides; reuse one instance (it caches override matches)."""

    overrides: Sequence[PriceOverride] = ()
    _sorted: list[PriceOverride] = field(init=False, repr=False)
    _matches: dict[tuple[str, str], PriceOverride | None] = field(init=False, repr=False, default_factory=dict)
    _resolved: dict[tuple, tuple[str, object]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._sorted = sorted(self.overrides, key=PriceOverride.specificity)

    def override_for(self, provider: str, model: str) -> PriceOverride | None:
        if not self._sorted:
            return None
        key = (provider, model)
        hit = self._matches.get(key, _MISSING)
        if hit is _MISSING:
            hit = next((o for o in self._sorted if o.matches(provider, model)), None)
            if len(self._matches) > 50_000:
                self._matches.clear()
            self._matches[key] = hit
        return hit

    def price(
        self,
        provider: str,
        model: str,
        *,
        prompt_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        completion_tokens: int = 0,
        aliases: Iterable[str] = (),
        at: datetime | None = None,
    ) -> Price:
        if prompt_tokens < 0 or cached_tokens < 0 or cache_write_tokens < 0 or completion_tokens < 0:
            raise ValueError("token counts must not be negative")
        prompt = prompt_tokens
        if cached_tokens + cache_write_tokens > prompt:
            prompt = cached_tokens + cache_write_tokens
        aliases = tuple(aliases)
        key = (provider, model, aliases)
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolve(provider, model, aliases)
            if len(self._resolved) > 50_000:
                self._resolved.clear()
            self._resolved[key] = resolved
        kind, what = resolved
        if kind == "genai":
            when = at or datetime.now(tz=UTC)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            cost = _genai_prices().cost(what, when, prompt, cached_tokens, cache_write_tokens, completion_tokens)
            return Price(cost, True, PRICE_DATA_VERSION)
        if kind == "override":
            return Price(
                what.cost(prompt, cached_tokens, cache_write_tokens, completion_tokens), True, what.price_version
            )
        return Price(ZERO, False, PRICE_DATA_VERSION)

    def _resolve(self, provider: str, model: str, aliases: tuple[str, ...]) -> tuple[str, object]:
        names = (model, *[a for a in aliases if a and a != model])
        for name in names:
            override = self.override_for(provider, name)
            if override is not None:
                return ("override", override)
        genai = _genai_prices()
        for name in names:
            found = genai.find(provider, name)
            if found is not None:
                return ("genai", found)
        return ("unknown", None)


_default_pricer = Pricer()


def price(
    provider: str,
    model: str,
    *,
    prompt_tokens: int,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    completion_tokens: int = 0,
    overrides: Sequence[PriceOverride] | None = None,
    aliases: Iterable[str] = (),
    at: datetime | None = None,
) -> Price:
    """The exact USD cost of one request's tokens (see the module docstring).

    ``at``: when the request happened (prices can change over time); default now.
    Pass ``overrides`` for admin prices; callers pricing many requests with the same overrides
    should keep one :class:`Pricer` instead (it caches the override matching).
    """
    pricer = _default_pricer if not overrides else Pricer(overrides)
    return pricer.price(
        provider,
        model,
        prompt_tokens=prompt_tokens,
        cached_tokens=cached_tokens,
        cache_write_tokens=cache_write_tokens,
        completion_tokens=completion_tokens,
        aliases=aliases,
        at=at,
    )
