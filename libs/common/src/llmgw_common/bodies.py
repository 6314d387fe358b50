"""Request bodies that cannot be decoded at all: the caller's fault (400), never a 500.

Litestar turns msgspec's ``DecodeError`` into a 400 itself, but a body that is not UTF-8 raises
``UnicodeDecodeError`` and one nested deeper than the decoder's recursion limit raises
``RecursionError`` from the same ``request.json()`` call; both REST services map them here.
"""

from __future__ import annotations

UNDECODABLE_BODY_ERRORS: tuple[type[Exception], ...] = (UnicodeDecodeError, RecursionError)


def undecodable_body_message(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "request body is nested too deeply"
    return "request body is not valid UTF-8 JSON"
