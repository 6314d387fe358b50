"""Structured logging for every llmgw service: one JSON object per line, secrets masked.

``configure_logging(service)`` once at start (each service's ``create_app`` and ``__main__`` do):

- ``LLMGW_LOG_LEVEL`` (default ``INFO``) sets the root level;
- ``LLMGW_LOG_FORMAT`` = ``json`` (default) or ``text`` (a human-readable line for a terminal);
- every line carries ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``service``, the
  active span's ``trace_id``/``span_id`` when there is one (or the ones a caller passes in
  ``extra``), every other ``extra={...}`` field, and ``exc`` for exceptions;
- a redaction filter on the handler masks anything that looks like a secret (``sk-…``,
  ``sk-ant-…``, ``llmgw-admin-…``, ``llmgw-at-…``, ``Bearer …``, ``api_key=…``, passwords in URLs) in the message,
  the extra fields and tracebacks: a last line of defence, code should never log secrets anyway;
- uvicorn's loggers (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``) lose their own handlers and
  propagate to the root, so their lines are JSON too (pass :func:`uvicorn_log_config` as
  ``log_config`` to ``uvicorn.run`` so the workers it spawns start that way).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from typing import Any

__all__ = [
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "logging_configured",
    "redact",
    "uvicorn_log_config",
]

#: LogRecord attributes that are not "extra" fields
_RESERVED = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName", "service"}
)

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

# --- redaction ------------------------------------------------------------------------------------
_MASK = "***"
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Anthropic-style first (more specific than sk-)
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{4,}"), "sk-ant-" + _MASK),
    # OpenAI-style and llmgw virtual keys (sk-llmgw-…), sk-proj-…, any other sk-…
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + _MASK),
    # the bootstrap admin token and API-created admin/analyst tokens
    (re.compile(r"\bllmgw-(admin|at)-[A-Za-z0-9_\-]+"), r"llmgw-\1-" + _MASK),
    # Authorization headers, whatever the token looks like
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]{4,}"), r"\1 " + _MASK),
    (re.compile(r"\b(Basic)\s+[A-Za-z0-9+/]{8,}=*"), r"\1 " + _MASK),
    # key=value / "key": "value" forms of credential-like names
    (
        re.compile(
            r"(?i)(\b(?:key|api[_-]?key|x-api-key|authorization|password|passwd|secret|client_secret|access_token"
            r"|refresh_token|admin_token|token|encryption_key)\b[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)([^\s\"',;&}]{3,})"
        ),
        r"\1" + _MASK,
    ),
    # user:password@host in URLs (database, NATS)
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^/\s:@]*:)[^@\s/]+@"), r"\1" + _MASK + "@"),
]
_TRIGGERS = ("sk-", "llmgw-", "earer", "asic", "key", "KEY", "Key", "auth", "Auth", "AUTH", "pass", "PASS",
             "ecret", "ECRET", "oken", "OKEN", "://")


def redact(text: str) -> str:
    """``text`` with everything that looks like a credential masked."""
    if not any(trigger in text for trigger in _TRIGGERS):
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {k: _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return redact(bytes(value).decode("utf-8", "replace"))
    return value


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message, arguments, extra fields and exception text.

    Installed on the handler, so it sees every record that reaches it, whichever logger made it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for name, value in list(record.__dict__.items()):
            if name not in _RESERVED and isinstance(value, (str, dict, list, tuple, bytes)):
                record.__dict__[name] = _redact_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# --- formatting -----------------------------------------------------------------------------------
def _span_ids() -> tuple[str | None, str | None]:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover
        return None, None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _timestamp(created: float) -> str:
    seconds = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((created - seconds) * 1000):03d}Z"


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def __init__(self, service: str = "llmgw") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        extra = record.__dict__
        if "trace_id" not in extra:
            trace_id, span_id = _span_ids()
            if trace_id is not None:
                entry["trace_id"] = trace_id
                entry["span_id"] = span_id
        for name, value in extra.items():
            if name not in _RESERVED and name not in entry:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=_json_default, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <service> <logger>: <message> key=value…`` for people at a terminal."""

    def __init__(self, service: str = "llmgw") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record.created), record.levelname, self.service, f"{record.name}:", record.getMessage()]
        extra = {k: v for k, v in record.__dict__.items() if k not in _RESERVED}
        if "trace_id" not in extra:
            trace_id, _ = _span_ids()
            if trace_id is not None:
                extra["trace_id"] = trace_id
        if extra:
            parts.append(" ".join(f"{k}={v}" for k, v in extra.items()))
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


# --- set-up ---------------------------------------------------------------------------------------
def _level(level: str | None) -> int:
    name = (level or os.environ.get("LLMGW_LOG_LEVEL") or "INFO").strip().upper()
    value = logging.getLevelName(name)
    return value if isinstance(value, int) else logging.INFO


def _format(fmt: str | None) -> str:
    value = (fmt or os.environ.get("LLMGW_LOG_FORMAT") or "json").strip().lower()
    return value if value in ("json", "text") else "json"


def _handler(service: str, fmt: str, stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(TextFormatter(service) if fmt == "text" else JsonFormatter(service))
    handler.addFilter(RedactingFilter())
    handler._llmgw = True  # type: ignore[attr-defined] - marks the handler configure_logging owns
    return handler


def configure_logging(service: str, *, level: str | None = None, fmt: str | None = None, stream=None) -> None:
    """Route every log record of this process through one redacting JSON (or text) handler.

    Idempotent: calling it again (a second ``create_app`` in the same process) replaces the handler.
    ``level``/``fmt`` default to ``LLMGW_LOG_LEVEL`` / ``LLMGW_LOG_FORMAT``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_handler(service, _format(fmt), stream))
    numeric = _level(level)
    root.setLevel(numeric)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    # Third-party chatter that would drown the service's own lines at INFO/DEBUG.
    for name in ("asyncio", "nats.aio.client", "aiohttp.access"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def uvicorn_log_config(service: str, *, level: str | None = None, fmt: str | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.run(log_config=...)``: uvicorn's loggers (and
    the root) write through the same redacting formatter, in the parent and in every worker."""
    formatter = "llmgw_common.logging.TextFormatter" if _format(fmt) == "text" else "llmgw_common.logging.JsonFormatter"
    level_name = logging.getLevelName(_level(level))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "llmgw_common.logging.RedactingFilter"}},
        "formatters": {"llmgw": {"()": formatter, "service": service}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "llmgw",
                "filters": ["redact"],
            }
        },
        "root": {"handlers": ["default"], "level": level_name},
        "loggers": {name: {"handlers": [], "propagate": True} for name in UVICORN_LOGGERS},
    }


def logging_configured() -> bool:
    """True when the root logger already writes through the redacting handler (``serve`` set it up
    through :func:`uvicorn_log_config`, or :func:`configure_logging` ran)."""
    return any(
        any(isinstance(f, RedactingFilter) for f in handler.filters) for handler in logging.getLogger().handlers
    )
