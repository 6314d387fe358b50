"""Raw-ASGI helpers for the hot path: header extraction, bounded body reads, answers."""

from __future__ import annotations

from typing import Any

from llmgw_proxy.domain import errors
from llmgw_proxy.domain.ids import new_id

Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"


class Incoming:
    """What the proxy needs from a request's scope, extracted in one pass over the headers."""

    __slots__ = (
        "method", "path", "query", "headers", "token", "content_length", "anthropic_version",
        "request_id", "client_request_id", "traceparent", "client_address", "raw_path",
    )

    def __init__(self, scope: dict[str, Any]) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.raw_path: bytes | None = scope.get("raw_path")
        self.query: bytes = scope.get("query_string") or b""
        self.headers: Headers = scope["headers"]
        client = scope.get("client")
        self.client_address: str = client[0] if client else ""
        token = None
        api_key = None
        content_length = None
        anthropic_version = None
        request_id = None
        traceparent = None
        for name, value in self.headers:
            # names are lower-case per ASGI; check the first byte before comparing whole names
            first = name[:1]
            if first == b"a":
                if name == b"authorization":
                    token = value
                elif name == b"anthropic-version":
                    anthropic_version = value
            elif first == b"x":
                if name == b"x-api-key":
                    api_key = value
                elif name == b"x-request-id":
                    request_id = value
            elif first == b"c":
                if name == b"content-length":
                    content_length = value
            elif first == b"t" and name == b"traceparent":
                traceparent = value
        self.token = _bearer(token) if token is not None else None
        if not self.token and api_key:
            self.token = api_key.decode("latin-1").strip()
        try:
            self.content_length = int(content_length) if content_length is not None else None
        except ValueError:
            self.content_length = None
        self.anthropic_version = anthropic_version
        self.client_request_id = request_id is not None
        if request_id is not None and 0 < len(request_id) <= 200:
            self.request_id = request_id.decode("latin-1")
        else:
            self.request_id = new_id()
            self.client_request_id = False
        self.traceparent = traceparent.decode("latin-1") if traceparent else None


#: never in a forwarded path: encoded separators or NUL (they would change which resource the
#: provider serves once it decodes them) and anything that would break the request line
_UNSAFE_IN_RAW_PATH = (b"%2f", b"%5c", b"%00", b"\\")


def passthrough_target(inc: Incoming) -> str:
    """The path to forward for a pass-through ``/v1/*`` request, exactly as the client encoded it.

    The decoded path is never sent upstream: ``%0D%0A`` would become a header line and ``..`` (plain or
    encoded) would let a virtual key reach paths outside ``/v1`` on the provider with the real key.
    """
    raw = inc.raw_path if inc.raw_path is not None else inc.path.encode("utf-8")
    lowered = raw.lower()
    if any(part in lowered for part in _UNSAFE_IN_RAW_PATH) or any(b <= 0x20 or b >= 0x7F for b in raw):
        raise errors.bad_request("The request path contains encoded separators or characters that are not allowed.")
    if any(segment in (".", "..") for segment in inc.path.split("/")):
        raise errors.bad_request("The request path may not contain '.' or '..' segments.")
    return raw.decode("ascii")


def _bearer(value: bytes) -> str | None:
    text = value.decode("latin-1").strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    return text or None


async def read_body(receive, limit: int) -> bytes:
    """The whole request body; 413 as soon as more than ``limit`` bytes arrived."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise errors.body_too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        if size > limit:
            raise errors.body_too_large(limit)
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if not message.get("more_body"):
            break
    if size > limit:
        raise errors.body_too_large(limit)
    return b"".join(parts)


class ClientGone(Exception):
    """The client disconnected."""


async def send_bytes(send, status: int, body: bytes, headers: Headers, content_type: bytes = JSON) -> None:
    headers.append((b"content-type", content_type))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
