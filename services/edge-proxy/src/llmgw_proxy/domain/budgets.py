"""Budget reservations against the shared ledger in JetStream KV (bucket ``llmgw_budget``).

Entry ``<key_id>.<period_key>`` holds :class:`~llmgw_common.contract.BudgetState`
(``spend_usd``: stored by metering; ``reserved_usd``: estimates of requests in flight).

Before dispatch the proxy adds the request's estimated cost to ``reserved_usd`` by
compare-and-set on the entry's revision (retrying on conflicts, creating the entry when missing),
and refuses with 429 ``insufficient_quota`` when ``spend + reserved + estimate > budget`` (or
``spend + reserved >= budget``). The usage event carries the estimate (``reserved_usd``) and the
period (``budget_period_key``); metering, when it stores the event, moves it from reserved to
spend at its real cost. A request that dies before any upstream attempt gets its reservation
released here. So the ledger never admits more estimated cost than the budget, cluster-wide;
real spend can exceed the budget only by the estimation error of in-flight requests (see
docs/edge-proxy.md for the bound).

Within one replica the CAS loop is serialised per entry (an asyncio lock) and the last revision
is cached, so a replica pays one KV round trip per reservation unless another replica or
metering wrote in between.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from llmgw_common.contract import BudgetState, KeyRecord, budget_kv_key, budget_period_key, budget_state_decoder
from llmgw_proxy.domain import errors
from llmgw_proxy.domain.kv import KV_OP_TIMEOUT

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
EPSILON = 1e-12


class Reservation:
    __slots__ = ("kv_key", "period_key", "amount", "released")

    def __init__(self, kv_key: str, period_key: str, amount: float) -> None:
        self.kv_key = kv_key
        self.period_key = period_key
        self.amount = amount
        self.released = False


class _Slot:
    __slots__ = ("lock", "users", "state", "revision")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.state: BudgetState | None = None
        self.revision: int | None = None


class BudgetGuard:
    def __init__(self, metrics=None) -> None:
        self.kv = None
        self.nc = None
        self.metrics = metrics
        self._slots: dict[str, _Slot] = {}
        #: last state seen per entry, for enforcing (not reserving) while NATS is unreachable
        self._last_seen: dict[str, BudgetState] = {}

    def _available(self) -> bool:
        return self.kv is not None and self.nc is not None and self.nc.is_connected

    async def reserve(self, record: KeyRecord, estimate_usd: float, now: datetime) -> Reservation | None:
        """Reserve ``estimate_usd`` for this request, or raise 429; None when the key has no budget."""
        budget = record.budget_usd
        if budget is None:
            return None
        period_key = budget_period_key(record.budget_period, now)
        kv_key = budget_kv_key(record.id, period_key)
        estimate = max(0.0, float(estimate_usd))
        if not self._available():
            return self._reserve_degraded(kv_key, period_key, budget, estimate)
        slot = self._slots.get(kv_key)
        if slot is None:
            slot = self._slots[kv_key] = _Slot()
        slot.users += 1
        try:
            async with slot.lock:
                return await asyncio.wait_for(self._reserve_cas(slot, kv_key, period_key, budget, estimate), KV_OP_TIMEOUT * 3)
        except errors.ProxyError:
            raise
        except Exception as exc:  # noqa: BLE001 - NATS trouble
            log.warning("budget KV unavailable (%s); enforcing the last known state only", type(exc).__name__)
            slot.state = slot.revision = None
            return self._reserve_degraded(kv_key, period_key, budget, estimate)
        finally:
            slot.users -= 1
            if slot.users == 0 and len(self._slots) > 10_000:
                self._slots.pop(kv_key, None)

    async def _reserve_cas(self, slot: _Slot, kv_key: str, period_key: str, budget: float, estimate: float) -> Reservation:
        def add(state: BudgetState, fresh: bool) -> BudgetState | None:
            committed = state.spend_usd + state.reserved_usd
            if committed >= budget - EPSILON or committed + estimate > budget + EPSILON:
                if not fresh:  # metering may have settled reservations since we last read
                    return None
                self._last_seen[kv_key] = state
                self._refuse(budget, state)
            return BudgetState(
                spend_usd=state.spend_usd, reserved_usd=state.reserved_usd + estimate, released_usd=state.released_usd
            )

        await self._cas(slot, kv_key, add)
        return Reservation(kv_key, period_key, estimate)

    async def _cas(self, slot: _Slot, kv_key: str, change) -> None:
        """Apply ``change(state, fresh) -> new state | None (= re-read first)`` by compare-and-set,
        starting from the slot's cached revision, re-reading after a conflict."""
        kv = self.kv
        fresh = False
        for _ in range(100):
            if slot.state is None:
                slot.state, slot.revision = await self._read(kv_key)
                fresh = True
            new = change(slot.state, fresh)
            if new is None:
                slot.state = None
                continue
            try:
                if slot.revision is None:
                    revision = await kv.create(kv_key, _encode(new))
                else:
                    revision = await kv.update(kv_key, _encode(new), last=slot.revision)
            except KeyWrongLastSequenceError:
                slot.state = None  # someone else (another replica, metering) wrote: read again
                fresh = False
                continue
            slot.state, slot.revision = new, revision
            self._last_seen[kv_key] = new
            return
        raise TimeoutError("budget ledger update kept conflicting")

    async def _read(self, kv_key: str) -> tuple[BudgetState, int | None]:
        try:
            entry = await self.kv.get(kv_key)
        except KeyNotFoundError:
            return BudgetState(), None
        if not entry.value:
            return BudgetState(), entry.revision
        return budget_state_decoder.decode(entry.value), entry.revision

    def _reserve_degraded(self, kv_key: str, period_key: str, budget: float, estimate: float) -> Reservation:
        state = self._last_seen.get(kv_key)
        if state is not None and state.spend_usd + state.reserved_usd + estimate > budget + EPSILON:
            self._refuse(budget, state)
        # Nothing was added to the ledger, so nothing may be taken back out of it.
        return Reservation(kv_key, period_key, 0.0)

    def _refuse(self, budget: float, state: BudgetState) -> None:
        if self.metrics is not None:
            self.metrics.rejected("budget")
        remaining = max(0.0, budget - state.spend_usd - state.reserved_usd)
        raise errors.budget_exceeded(
            f"This key's budget is exhausted for the current period: budget ${budget:.4f}, "
            f"spent ${state.spend_usd:.4f}, reserved by requests in flight ${state.reserved_usd:.4f}, "
            f"remaining ${remaining:.4f} is less than this request's estimated cost.",
            [],
        )

    async def release(self, reservation: Reservation | None) -> None:
        """Give back a reservation whose request never reached an upstream (no usage event)."""
        if reservation is None or reservation.released or reservation.amount <= 0:
            return
        reservation.released = True
        if not self._available():
            log.warning("cannot release a budget reservation of $%.6f: NATS unavailable", reservation.amount)
            return
        slot = self._slots.get(reservation.kv_key)
        if slot is None:
            slot = self._slots[reservation.kv_key] = _Slot()
        amount = reservation.amount

        def take_back(state: BudgetState, fresh: bool) -> BudgetState:
            return BudgetState(
                spend_usd=state.spend_usd,
                reserved_usd=max(0.0, state.reserved_usd - amount),
                released_usd=state.released_usd,
            )

        try:
            async with slot.lock:
                await asyncio.wait_for(self._cas(slot, reservation.kv_key, take_back), KV_OP_TIMEOUT * 3)
        except Exception as exc:  # noqa: BLE001
            log.warning("budget release failed: %s", type(exc).__name__)
            slot.state = None

    async def state(self, record: KeyRecord, now: datetime) -> tuple[str, BudgetState | None]:
        period_key = budget_period_key(record.budget_period, now)
        kv_key = budget_kv_key(record.id, period_key)
        if not self._available():
            return period_key, self._last_seen.get(kv_key)
        try:
            state, _ = await asyncio.wait_for(self._read(kv_key), KV_OP_TIMEOUT)
        except Exception:  # noqa: BLE001
            return period_key, self._last_seen.get(kv_key)
        return period_key, state
