"""Structured logging for every llmgw service: one JSON object per line, secrets masked.

``configure_logging(service)`` once at start (each service's ``create_app`` and ``__main__`` do):

- ``LLMGW_LOG_LEVEL`` (default ``INFO``) sets the root level;
- ``LLMGW_LOG_FORMAT`` = ``json`` (default) or ``text`` (a human-readable line for a terminal);
- every line carries ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, ``service``, the
  active span's ``trace_id``/``span_id`` when there is one (or the ones a caller passes in
  ``extra``), every other ``extra={...}`` field, and ``exc`` for exceptions;
- secrets are masked (a redaction filter on the handler, and the formatters redact the whole
  line): anything that looks like ``sk-…``, ``sk-ant-…``, ``llmgw-admin-…``, ``llmgw-at-…``,
  ``Bearer …``, ``api_key=…``, a password in a URL — in the message, the extra fields and
  tracebacks. A last line of defence: the code never logs secrets in the first place;
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

import msgspec

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
    | {"message", "asctime", "taskName", "service", "llmgw_fields", "llmgw_sanitized", "color_message"}
)

_encode = msgspec.json.Encoder(enc_hook=lambda value: _json_default(value)).encode

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

# --- redaction ------------------------------------------------------------------------------------
# Cheap substring checks first; each pattern starts with a literal so the regex engine searches for
# it fast. The value classes never swallow a quote or a backslash: redacting a JSON line keeps it
# valid JSON.
_MASK = "***"
#: sk-… (OpenAI, llmgw virtual keys sk-llmgw-…), sk-ant-… (Anthropic)
_SK = re.compile(r"sk-(ant-)?[A-Za-z0-9_\-]{4,}")
#: the bootstrap admin token and API-created admin/analyst tokens
_LLMGW = re.compile(r"llmgw-(admin|at)-[A-Za-z0-9_\-]+")
#: Authorization header values, whatever the token looks like
_BEARER = re.compile(r"([Bb]earer|BEARER)(\s+)[A-Za-z0-9._~+/=\-]{4,}")
_BASIC = re.compile(r"Basic(\s+)[A-Za-z0-9+/]{8,}=*")
#: user:password@ in URLs (database, NATS)
_URL = re.compile(r"(://[^/\s:@\"'\\]*:)[^@\s/\"'\\]+@")
#: credential-like names in key=value / "key": "value" forms (matched on the lower-cased text)
_NAMES = (
    "key", "apikey", "api_key", "api-key", "authorization", "password", "passwd", "secret", "client_secret",
    "access_token", "refresh_token", "admin_token", "token", "encryption_key",
)
_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
_VALUE_STOP = frozenset(" \t\r\n\"'\\,;&}")


def _sk(match: re.Match) -> str:
    start = match.start()
    text = match.string
    if start and (text[start - 1].isalnum() or text[start - 1] == "_"):
        return match.group()  # inside a longer word (e.g. "task-…"): not a key
    return ("sk-ant-" if match.group(1) else "sk-") + _MASK


def _pairs(text: str) -> str:
    low = text.lower()
    spans: list[tuple[int, int]] = []
    size = len(low)
    for name in _NAMES:
        at = low.find(name)
        while at != -1:
            end = at + len(name)
            if (at == 0 or low[at - 1] not in _WORD) and (end == size or low[end] not in _WORD):
                i = end
                if i < size and low[i] in "\"'":
                    i += 1
                while i < size and low[i] in " \t":
                    i += 1
                if i < size and low[i] in ":=":
                    i += 1
                    while i < size and low[i] in " \t":
                        i += 1
                    if i < size and low[i] in "\"'":
                        i += 1
                    j = i
                    while j < size and low[j] not in _VALUE_STOP:
                        j += 1
                    if j - i >= 3 and not text.startswith(_MASK, i):
                        spans.append((i, j))
            at = low.find(name, end)
    if not spans:
        return text
    spans.sort()
    out, last = [], 0
    for i, j in spans:
        if i < last:
            continue
        out.append(text[last:i])
        out.append(_MASK)
        last = j
    out.append(text[last:])
    return "".join(out)


def redact(text: str) -> str:
    """``text`` with everything that looks like a credential masked."""
    if "sk-" in text:
        text = _SK.sub(_sk, text)
    if "llmgw-" in text:
        text = _LLMGW.sub(lambda m: f"llmgw-{m.group(1)}-{_MASK}", text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + _MASK, text)
    if "Basic" in text:
        text = _BASIC.sub(lambda m: "Basic" + m.group(1) + _MASK, text)
    if "://" in text and "@" in text:
        text = _URL.sub(lambda m: m.group(1) + _MASK + "@", text)
    if ":" in text or "=" in text:
        text = _pairs(text)
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
    """Masks secrets in a record's message and exception text (installed on the handler, so it sees
    every record that reaches it, whichever logger made it).

    ``extra`` fields are masked too, unless the handler's formatter is llmgw's (JSON/text): those
    redact the whole formatted line in one pass, which is cheaper than field by field."""

    def __init__(self, name: str = "", *, extras: bool = True) -> None:
        super().__init__(name)
        self.extras = extras

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if self.extras:
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


_second = [-1, ""]


def _timestamp(created: float) -> str:
    seconds = int(created)
    cached = _second
    if cached[0] != seconds:  # strftime once per second, not per line
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        cached[0] = seconds
    return f"{cached[1]}.{int((created - seconds) * 1000):03d}Z"


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _dumps(entry: dict[str, Any]) -> str:
    try:
        return _encode(entry).decode()
    except (TypeError, ValueError, OverflowError):  # something msgspec cannot encode: the slow way
        return json.dumps(entry, default=_json_default, ensure_ascii=False, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def __init__(self, service: str = "llmgw") -> None:
        super().__init__()
        self.service = service

    def _entry(self, created: float, levelname: str, logger: str, message: str) -> dict[str, Any]:
        return {"ts": _timestamp(created), "level": levelname, "logger": logger, "message": message, "service": self.service}

    def format(self, record: logging.LogRecord) -> str:
        entry = self._entry(record.created, record.levelname, record.name, record.getMessage())
        extra = record.__dict__
        fields = extra.get("llmgw_fields")
        if fields is not None:  # a producer's pre-built fields (one attribute instead of many)
            entry.update(fields)
        if "trace_id" not in entry and "trace_id" not in extra:
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
        line = _dumps(entry)
        # The whole line in one pass (message, extra fields, traceback), unless the producer
        # already masked every value that could carry one (``llmgw_sanitized``, the proxy's
        # request line: a hot path).
        return line if extra.get("llmgw_sanitized") else redact(line)

    def format_fields(self, created: float, levelname: str, logger: str, message: str, fields: dict) -> str:
        """The line :meth:`format` makes for a record carrying already-masked ``llmgw_fields``."""
        entry = self._entry(created, levelname, logger, message)
        entry.update(fields)
        return _dumps(entry)


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <service> <logger>: <message> key=value…`` for people at a terminal."""

    def __init__(self, service: str = "llmgw") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record.created), record.levelname, self.service, f"{record.name}:", record.getMessage()]
        extra = dict(record.__dict__.get("llmgw_fields") or {})
        extra.update((k, v) for k, v in record.__dict__.items() if k not in _RESERVED)
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
        return redact(line)

    def format_fields(self, created: float, levelname: str, logger: str, message: str, fields: dict) -> str:
        pairs = " ".join(f"{k}={v}" for k, v in fields.items())
        return " ".join((_timestamp(created), levelname, self.service, f"{logger}:", message, pairs))


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
    handler.addFilter(RedactingFilter(extras=False))  # the formatters redact the whole line
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
        "filters": {"redact": {"()": "llmgw_common.logging.RedactingFilter", "extras": False}},
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


def direct_handler(logger: logging.Logger, level: int) -> logging.StreamHandler | None:
    """The one llmgw stream handler a ``level`` record of ``logger`` would reach, when that is all
    it would reach (no handler of its own, only the redacting filter): a hot path with pre-masked
    fields can then format and write the line itself (:func:`write_fields`), skipping LogRecord
    creation, caller lookup and the filter chain (~4x cheaper). None: log the ordinary way."""
    if logger.handlers or not logger.propagate or logger.filters or not logger.isEnabledFor(level):
        return None
    parent = logger.parent
    while parent is not None and not parent.handlers and parent.propagate and not parent.filters:
        parent = parent.parent
    if parent is None or parent.parent is not None or parent.filters:  # must end at the root
        return None
    handlers = parent.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (
        type(handler) is not logging.StreamHandler
        or level < handler.level
        or not hasattr(handler.formatter, "format_fields")
        or any(not isinstance(f, RedactingFilter) for f in handler.filters)
    ):
        return None
    return handler


def write_fields(handler: logging.StreamHandler, levelname: str, logger: str, message: str, fields: dict) -> None:
    """Writes the line the handler's formatter makes of already-masked ``fields``."""
    line = handler.formatter.format_fields(time.time(), levelname, logger, message, fields)  # type: ignore[union-attr]
    with handler.lock:  # type: ignore[union-attr]
        stream = handler.stream
        stream.write(line + "\n")
        stream.flush()


def logging_configured() -> bool:
    """True when the root logger already writes through the redacting handler (``serve`` set it up
    through :func:`uvicorn_log_config`, or :func:`configure_logging` ran)."""
    return any(
        any(isinstance(f, RedactingFilter) for f in handler.filters) for handler in logging.getLogger().handlers
    )
