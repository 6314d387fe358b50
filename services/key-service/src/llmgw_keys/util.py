"""Small helpers shared by the services."""

from __future__ import annotations

import base64
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec

from llmgw_keys.errors import Invalid, NotFound

MAX_METADATA_BYTES = 64 * 1024


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None, field: str = "expires_at") -> datetime | None:
    """ISO 8601 without an offset is UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Invalid(f"{field}: out of range") from None


def new_id() -> str:
    return str(uuid.uuid4())


def check_path_id(value: str, what: str = "key") -> str:
    """Ids are server-generated: anything unprintable or oversized simply does not exist."""
    if not value or len(value) > 64 or "\x00" in value:
        raise NotFound(f"{what} not found")
    return value


def check_json_value(value: Any, field: str, *, max_bytes: int = MAX_METADATA_BYTES) -> None:
    """What PostgreSQL's jsonb refuses, refused with a 422 first: NUL characters, NaN/Infinity."""

    def walk(node: Any) -> None:
        if isinstance(node, str):
            if "\x00" in node:
                raise Invalid(f"{field}: strings must not contain NUL characters")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise Invalid(f"{field}: numbers must be finite")
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(key)
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    if len(msgspec.json.encode(value)) > max_bytes:
        raise Invalid(f"{field}: larger than {max_bytes} bytes")


def dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def encode_cursor(payload: list[Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(payload)).decode().rstrip("=")


def decode_cursor(cursor: str, shape: tuple[type, ...]) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = msgspec.json.decode(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(payload, list) or len(payload) != len(shape):
            raise ValueError
        for item, kind in zip(payload, shape, strict=True):
            if not isinstance(item, kind) or (isinstance(item, str) and "\x00" in item):
                raise ValueError
        return payload
    except (ValueError, UnicodeError, msgspec.DecodeError, TypeError):
        raise Invalid("cursor: not a cursor this API returned") from None
