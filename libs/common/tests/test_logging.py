"""llmgw_common.logging: JSON lines, trace ids, extra fields, levels, redaction, uvicorn routing."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
from opentelemetry.sdk.trace import TracerProvider

from llmgw_common.logging import configure_logging, direct_handler, redact, uvicorn_log_config, write_fields


@pytest.fixture()
def stream():
    buffer = io.StringIO()
    yield buffer
    configure_logging("reset", level="WARNING", stream=io.StringIO())


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_json_line_has_the_fields(stream):
    configure_logging("svc", level="INFO", fmt="json", stream=stream)
    logging.getLogger("llmgw.test").info("hello %s", "world", extra={"key_id": "k_1", "latency_ms": 1.5})
    (entry,) = lines(stream)
    assert entry["message"] == "hello world"
    assert entry["level"] == "INFO" and entry["logger"] == "llmgw.test" and entry["service"] == "svc"
    assert entry["ts"].endswith("Z") and "T" in entry["ts"]
    assert entry["key_id"] == "k_1" and entry["latency_ms"] == 1.5
    assert "trace_id" not in entry


def test_level_from_env_and_text_format(stream, monkeypatch):
    monkeypatch.setenv("LLMGW_LOG_LEVEL", "warning")
    monkeypatch.setenv("LLMGW_LOG_FORMAT", "text")
    configure_logging("svc", stream=stream)
    logging.getLogger("x").info("not shown")
    logging.getLogger("x").warning("shown", extra={"model": "m"})
    text = stream.getvalue()
    assert "not shown" not in text
    assert "WARNING svc x: shown model=m" in text


def test_active_span_ids_are_in_the_line(stream):
    configure_logging("svc", level="INFO", stream=stream)
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        logging.getLogger("x").info("inside")
    (entry,) = lines(stream)
    assert entry["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert entry["span_id"] == format(span.get_span_context().span_id, "016x")


def test_explicit_trace_id_wins(stream):
    configure_logging("svc", level="INFO", stream=stream)
    logging.getLogger("x").info("r", extra={"trace_id": "ab" * 16})
    assert lines(stream)[0]["trace_id"] == "ab" * 16


SECRETS = [
    "sk-llmgw-" + "A1b2C3d4" * 4,
    "sk-ant-api03-" + "Zz9_" * 8,
    "sk-proj-" + "x" * 40,
    "llmgw-admin-" + "Q" * 30,
    "llmgw-at-" + "R2d2" * 8,
]


@pytest.mark.parametrize("secret", SECRETS)
def test_secrets_are_masked_everywhere(stream, secret):
    configure_logging("svc", level="DEBUG", stream=stream)
    log = logging.getLogger("x")
    log.info("key %s used", secret)
    log.info("header", extra={"headers": {"authorization": f"Bearer {secret}"}, "items": [secret]})
    try:
        raise ValueError(f"bad key {secret}")
    except ValueError:
        log.exception("failed")
    out = stream.getvalue()
    assert secret not in out
    assert secret[len(secret) // 2 :] not in out
    assert len(lines(stream)) == 3


def test_redact_patterns():
    assert redact("Authorization: Bearer abc.def-ghi") .count("abc.def-ghi") == 0
    assert redact("bearer xyz12345") == "bearer ***"
    assert redact('{"api_key": "hunter22"}') == '{"api_key": "***"}'
    assert redact("x-api-key=abcdef") == "x-api-key=***"
    assert redact("postgresql://user:s3cret@db:5432/x") == "postgresql://user:***@db:5432/x"
    assert redact("password=p4ssw0rd!") == "password=***"
    assert redact("/v1/models?key=AIzaSyA-abc&limit=5") == "/v1/models?key=***&limit=5"
    assert redact("/v1/models?api-key=abc123def") == "/v1/models?api-key=***"
    # ordinary lines stay as they are
    for text in ("prompt_tokens=12 total_tokens=30", "key_id=k_123 model=gpt-4o", "basic auth is off", "GET /healthz"):
        assert redact(text) == text


def test_uvicorn_loggers_go_through_the_handler(stream, capsys):
    configure_logging("svc", level="INFO", stream=stream)
    logging.getLogger("uvicorn.error").info("Started server process")
    (entry,) = lines(stream)
    assert entry["logger"] == "uvicorn.error" and entry["service"] == "svc"


def test_uvicorn_log_config_is_a_valid_dict_config(capsys):
    config = uvicorn_log_config("svc", level="INFO", fmt="json")
    logging.config.dictConfig(config)
    logging.getLogger("uvicorn.error").info("token=abcdef123 ready")
    err = capsys.readouterr().err
    entry = json.loads(err.strip().splitlines()[-1])
    assert entry["service"] == "svc" and entry["message"] == "token=*** ready"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_direct_write_makes_the_line_the_logging_path_makes(stream, fmt):
    """The proxy's request line skips the logging machinery when only llmgw's handler would see it:
    the line must be the one ``logger.info(..., extra={"llmgw_fields": ...})`` writes."""
    configure_logging("svc", level="INFO", fmt=fmt, stream=stream)
    logger = logging.getLogger("llmgw.test.direct")
    fields = {"request_id": "r1", "trace_id": "ab" * 16, "status": 200, "latency_ms": 1.25, "model": None}
    logger.info("request", extra={"llmgw_fields": fields, "llmgw_sanitized": True})
    handler = direct_handler(logger, logging.INFO)
    assert handler is not None
    write_fields(handler, "INFO", logger.name, "request", fields)
    first, second = stream.getvalue().splitlines()
    strip_ts = (lambda line: {k: v for k, v in json.loads(line).items() if k != "ts"}) if fmt == "json" else (
        lambda line: line.split(" ", 1)[1])
    assert strip_ts(first) == strip_ts(second)


def test_direct_write_is_refused_when_another_handler_or_level_would_see_it(stream):
    configure_logging("svc", level="INFO", stream=stream)
    logger = logging.getLogger("llmgw.test.direct2")
    assert direct_handler(logger, logging.DEBUG) is None  # below the level: not written at all
    capture = logging.Handler()
    logger.addHandler(capture)
    try:
        assert direct_handler(logger, logging.INFO) is None  # a handler of its own (a test capture)
    finally:
        logger.removeHandler(capture)
    root = logging.getLogger()
    extra = logging.StreamHandler(io.StringIO())
    root.addHandler(extra)
    try:
        assert direct_handler(logger, logging.INFO) is None  # two handlers at the root
    finally:
        root.removeHandler(extra)
    assert direct_handler(logger, logging.INFO) is not None
