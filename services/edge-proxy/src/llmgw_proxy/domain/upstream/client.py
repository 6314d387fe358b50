"""The upstream hop: one keep-alive pool per provider origin (see :mod:`.http1`), the header rules
and the URL mapping.

URLs: OpenAI-kind base URLs end with ``/v1`` (as the openai SDK takes them), so the client's path
after ``/v1`` is appended; Anthropic base URLs have no ``/v1`` (as the anthropic SDK takes them),
so the whole path is appended.
"""

from __future__ import annotations

import logging

from llmgw_common.contract import ProviderCredential
from llmgw_proxy.domain.upstream.http1 import HostPool, Origin, Response, build_request, parse_base_url

log = logging.getLogger(__name__)

DEFAULT_ANTHROPIC_VERSION = b"2023-06-01"

#: request headers never forwarded: hop-by-hop, the client's credentials, what the proxy sets itself
_DROP_REQUEST = frozenset(
    {
        b"host", b"content-length", b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization",
        b"proxy-connection", b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"expect",
        b"authorization", b"x-api-key", b"api-key", b"cookie", b"openai-organization", b"openai-project",
        b"accept-encoding", b"x-request-id", b"forwarded", b"x-forwarded-for", b"x-forwarded-host",
        b"x-forwarded-proto", b"x-real-ip", b"traceparent", b"tracestate",
    }
)

#: upstream response headers returned to the client (everything else stays behind, e.g.
#: ``openai-organization`` or ``set-cookie`` of the real account)
_KEEP_RESPONSE = frozenset(
    {b"content-type", b"content-disposition", b"retry-after", b"retry-after-ms", b"openai-processing-ms", b"openai-version"}
)
_KEEP_RESPONSE_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-")
_UPSTREAM_ID = frozenset({b"x-request-id", b"request-id"})


class UpstreamPool:
    def __init__(self, settings) -> None:
        self.connect_timeout = settings.upstream_connect_timeout
        self.read_timeout = settings.upstream_read_timeout
        self.limit = settings.upstream_connection_limit
        self.keepalive = settings.upstream_keepalive_seconds
        self._pools: dict[str, HostPool] = {}

    def pool(self, origin: Origin) -> HostPool:
        pool = self._pools.get(origin.key)
        if pool is None:
            pool = self._pools[origin.key] = HostPool(
                origin, limit=self.limit, connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
                keepalive=self.keepalive,
            )
        return pool

    async def request(
        self, provider: ProviderCredential, method: str, path: str, query: bytes, headers: list[bytes], body: bytes | None
    ) -> Response:
        """Send one request to ``provider``; returns when the response headers arrived."""
        origin, prefix = _target(provider)
        target = prefix + path[3:] if provider.kind != "anthropic" else prefix + path
        if query:
            target += "?" + query.decode("latin-1")
        data = build_request(method, target, origin.host_header, headers, body)
        return await self.pool(origin).request(data, head=method == "HEAD")

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()


_targets: dict[tuple[str, str], tuple[Origin, str]] = {}


def _target(provider: ProviderCredential) -> tuple[Origin, str]:
    key = (provider.base_url, provider.kind)
    hit = _targets.get(key)
    if hit is None:
        origin, path = parse_base_url(provider.base_url)
        if provider.kind != "anthropic" and not path.endswith("/v1"):
            # an OpenAI-compatible base URL without /v1 (e.g. ".../api"): keep the client's /v1
            path = path + "/v1"
        hit = _targets[key] = (origin, path)
    return hit


_auth_lines: dict[tuple[str, str], list[bytes]] = {}


def _credential_lines(provider: ProviderCredential) -> list[bytes]:
    key = (provider.api_key, provider.kind)
    lines = _auth_lines.get(key)
    if lines is None:
        secret = provider.api_key.encode("latin-1", "replace")
        if b"\r" in secret or b"\n" in secret:
            raise ValueError(f"provider {provider.name!r} has an API key with line breaks")
        if not secret:
            lines = []
        elif provider.kind == "anthropic":
            lines = [b"x-api-key: " + secret + b"\r\n"]
        else:
            lines = [b"authorization: Bearer " + secret + b"\r\n"]
        if len(_auth_lines) > 1000:
            _auth_lines.clear()
        _auth_lines[key] = lines
    return lines


def upstream_headers(
    client_headers: list[tuple[bytes, bytes]],
    provider: ProviderCredential,
    request_id: str,
    traceparent: str | None,
) -> list[bytes]:
    """The client's headers minus hop-by-hop and credentials, plus the provider's key."""
    lines: list[bytes] = []
    has_version = False
    for name, value in client_headers:
        if name in _DROP_REQUEST or name.startswith(b"x-llmgw-"):
            continue
        if name == b"anthropic-version":
            has_version = True
        lines.append(name + b": " + value + b"\r\n")
    lines.extend(_credential_lines(provider))
    if provider.kind == "anthropic" and not has_version:
        lines.append(b"anthropic-version: " + DEFAULT_ANTHROPIC_VERSION + b"\r\n")
    lines.append(b"accept-encoding: identity\r\nx-request-id: " + request_id.encode("latin-1") + b"\r\n")
    if traceparent:
        lines.append(b"traceparent: " + traceparent.encode("latin-1") + b"\r\n")
    return lines


def relay_headers(raw_headers: list[tuple[bytes, bytes]], foreign: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """The upstream response headers the client gets (names are lower-case already).

    The upstream's request id (``x-request-id`` or ``request-id``; Anthropic sends both, same
    value) becomes one ``x-upstream-request-id``. ``foreign``: a name prefix left out, on a
    translation path the other API's own headers (``openai-`` for an Anthropic caller,
    ``anthropic-`` for an OpenAI caller)."""
    out = []
    upstream_id = False
    for name, value in raw_headers:
        if name in _KEEP_RESPONSE or name.startswith(_KEEP_RESPONSE_PREFIXES):
            if foreign is None or not name.startswith(foreign):
                out.append((name, value))
        elif name in _UPSTREAM_ID and not upstream_id:
            upstream_id = True
            out.append((b"x-upstream-request-id", value))
    return out
