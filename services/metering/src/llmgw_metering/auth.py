"""Bearer-token auth for the analyst/admin REST.

1. The bootstrap admin token (``LLMGW_ADMIN_TOKEN`` or the state-dir file), compared in constant time.
2. Otherwise the token's SHA-256 (``hash_secret``) is sent to key-service over NATS
   (``llmgw.v1.auth.verify``); valid answers are cached ``LLMGW_METERING_AUTH_CACHE_SECONDS`` (30 s),
   invalid ones ``…_NEGATIVE_CACHE_SECONDS`` (5 s). No answer -> 503 (the token cannot be checked).
   A revocation is announced on ``llmgw.v1.auth.changed`` and drops the cached answer at once; after
   a NATS reconnect (announcements may have been missed) every cached answer is dropped.
The raw token is never stored, logged or sent anywhere; only its hash travels.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from dataclasses import dataclass

import nats.errors
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from nats.aio.client import Client as NATS

from llmgw_common.contract import (
    SUBJECT_AUTH_CHANGED,
    SUBJECT_AUTH_VERIFY,
    AuthVerifyReply,
    AuthVerifyRequest,
    auth_token_revoked_decoder,
    auth_verify_reply_decoder,
    encode,
    hash_secret,
)
from llmgw_common.telemetry import inject_headers
from llmgw_metering.errors import ApiError
from llmgw_metering.metrics import AUTH_REQUESTS

log = logging.getLogger(__name__)

READ_ROLES = frozenset({"admin", "analyst"})


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    token_id: str | None = None
    bootstrap: bool = False


def bearer_token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class Authenticator:
    def __init__(
        self,
        nc: NATS | None,
        admin_token: str,
        *,
        timeout: float = 1.0,
        cache_seconds: float = 30.0,
        negative_cache_seconds: float = 5.0,
    ) -> None:
        self._nc = nc
        self._admin = admin_token.encode()
        self._timeout = timeout
        self._ttl = cache_seconds
        self._negative_ttl = negative_cache_seconds
        self._cache: dict[str, tuple[float, AuthVerifyReply]] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        self._reconnects = 0
        self._subscription = None

    async def start(self) -> None:
        """Listen for revocations, so a revoked token stops working here at once."""
        if self._nc is not None:
            self._subscription = await self._nc.subscribe(SUBJECT_AUTH_CHANGED, cb=self._on_revoked)

    async def stop(self) -> None:
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except Exception:  # noqa: BLE001 - connection already closed
                pass
            self._subscription = None

    async def _on_revoked(self, msg) -> None:
        try:
            revoked = auth_token_revoked_decoder.decode(msg.data)
        except Exception:  # noqa: BLE001 - not ours to crash on; forget everything to be safe
            self._cache.clear()
            return
        self._cache.pop(revoked.token_hash, None)

    async def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
        if self._admin and hmac.compare_digest(token.encode(), self._admin):
            return Principal("admin", None, True)
        token_hash = hash_secret(token)
        reply = await self._verify(token_hash)
        if not reply.valid or reply.role not in READ_ROLES:
            raise ApiError(401, "invalid token")
        return Principal(reply.role, reply.token_id, False)

    async def _verify(self, token_hash: str) -> AuthVerifyReply:
        now = time.monotonic()
        nc = self._nc
        if nc is not None and nc.stats["reconnects"] != self._reconnects:
            # revocations announced while we were away were missed: re-verify everything
            self._reconnects = nc.stats["reconnects"]
            self._cache.clear()
        cached = self._cache.get(token_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        pending = self._inflight.get(token_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._inflight[token_hash] = future
        try:
            reply = await self._ask(token_hash)
            ttl = self._ttl if reply.valid else self._negative_ttl
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if ttl > 0:
                self._cache[token_hash] = (time.monotonic() + ttl, reply)
            future.set_result(reply)
            return reply
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(token_hash, None)

    async def _ask(self, token_hash: str) -> AuthVerifyReply:
        if self._nc is None or not self._nc.is_connected:
            AUTH_REQUESTS.labels("unavailable").inc()
            raise ApiError(503, "cannot verify the token: the message bus is unavailable", "service_unavailable")
        try:
            msg = await self._nc.request(
                SUBJECT_AUTH_VERIFY,
                encode(AuthVerifyRequest(token_hash=token_hash)),
                timeout=self._timeout,
                headers=inject_headers({}),
            )
            reply = auth_verify_reply_decoder.decode(msg.data)
        except (TimeoutError, nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            AUTH_REQUESTS.labels("unavailable").inc()
            log.warning("token verification: key-service did not answer (%s)", type(exc).__name__)
            raise ApiError(
                503, "cannot verify the token: key-service is not answering", "service_unavailable"
            ) from None
        except Exception as exc:  # noqa: BLE001 - malformed reply, connection closed…
            AUTH_REQUESTS.labels("error").inc()
            log.warning("token verification failed: %s", type(exc).__name__)
            raise ApiError(503, "cannot verify the token", "service_unavailable") from None
        AUTH_REQUESTS.labels("valid" if reply.valid else "invalid").inc()
        return reply


async def _principal(connection: ASGIConnection) -> Principal:
    principal = connection.scope.get("llmgw_principal")
    if principal is None:
        auth: Authenticator = connection.app.state.auth
        principal = await auth.authenticate(bearer_token(connection))
        connection.scope["llmgw_principal"] = principal
    return principal


async def require_reader(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Analyst or admin."""
    principal = await _principal(connection)
    if principal.role not in READ_ROLES:
        raise ApiError(403, "this token may not read usage")


async def require_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    principal = await _principal(connection)
    if principal.role != "admin":
        raise ApiError(403, "admin role required")
