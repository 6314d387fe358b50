"""Upstream error bodies translated into the caller's dialect."""

from __future__ import annotations

import json

import pytest

from llmgw_proxy.domain.translation import anthropic_error_to_openai, openai_error_to_anthropic


def anthropic_error(etype: str, message: str = "boom") -> dict:
    return {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_1"}


@pytest.mark.parametrize(
    ("status", "etype", "otype", "code"),
    [
        (400, "invalid_request_error", "invalid_request_error", None),
        (401, "authentication_error", "invalid_request_error", "invalid_api_key"),
        (402, "billing_error", "insufficient_quota", "insufficient_quota"),
        (403, "permission_error", "permission_error", "permission_denied"),
        (404, "not_found_error", "invalid_request_error", "not_found"),
        (413, "request_too_large", "invalid_request_error", "request_too_large"),
        (429, "rate_limit_error", "requests", "rate_limit_exceeded"),
        (500, "api_error", "server_error", None),
        (504, "timeout_error", "server_error", "timeout"),
        (529, "overloaded_error", "server_error", "overloaded"),
    ],
)
def test_anthropic_to_openai(status: int, etype: str, otype: str, code: str | None) -> None:
    expected = {"error": {"message": "boom", "type": otype, "param": None, "code": code}}
    assert anthropic_error_to_openai(status, anthropic_error(etype)) == expected
    assert anthropic_error_to_openai(status, json.dumps(anthropic_error(etype)).encode()) == expected
    # no usable type: derived from the status
    assert anthropic_error_to_openai(status, {"error": {"message": "boom"}})["error"]["type"] == otype


@pytest.mark.parametrize(
    ("status", "body", "atype"),
    [
        (400, {"error": {"message": "boom", "type": "invalid_request_error", "param": None, "code": None}}, "invalid_request_error"),
        (401, {"error": {"message": "boom", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}, "authentication_error"),
        (403, {"error": {"message": "boom", "type": "permission_error", "param": None, "code": None}}, "permission_error"),
        (404, {"error": {"message": "boom", "type": "invalid_request_error", "param": None, "code": "model_not_found"}}, "not_found_error"),
        (413, {"error": {"message": "boom", "type": "invalid_request_error"}}, "request_too_large"),
        (422, {"error": {"message": "boom"}}, "invalid_request_error"),
        (429, {"error": {"message": "boom", "type": "requests", "code": "rate_limit_exceeded"}}, "rate_limit_error"),
        (429, {"error": {"message": "boom", "type": "insufficient_quota", "code": "insufficient_quota"}}, "billing_error"),
        (500, {"error": {"message": "boom", "type": "server_error"}}, "api_error"),
        (502, {"error": {"message": "boom"}}, "api_error"),
        (503, {"error": {"message": "boom", "type": "server_error"}}, "overloaded_error"),
        (504, {"error": {"message": "boom"}}, "timeout_error"),
        (418, {"error": {"message": "boom"}}, "invalid_request_error"),
        (599, {"error": {"message": "boom"}}, "api_error"),
    ],
)
def test_openai_to_anthropic(status: int, body: dict, atype: str) -> None:
    assert openai_error_to_anthropic(status, body) == {"type": "error", "error": {"type": atype, "message": "boom"}}


def test_param_is_kept_in_the_message() -> None:
    body = {"error": {"message": "Invalid value for 'temperature'.", "type": "invalid_request_error", "param": "temperature", "code": None}}
    assert openai_error_to_anthropic(400, body)["error"]["message"] == "Invalid value for 'temperature'."
    body["error"]["message"] = "Invalid value."
    assert openai_error_to_anthropic(400, body)["error"]["message"] == "Invalid value. (param: temperature)"


@pytest.mark.parametrize("body", [None, b"", b"<html>Bad Gateway</html>", "upstream said no", {"unexpected": True}, b"[1,2]"])
def test_non_json_or_odd_bodies(body) -> None:
    a = openai_error_to_anthropic(502, body)
    assert a["type"] == "error" and a["error"]["type"] == "api_error" and a["error"]["message"]
    o = anthropic_error_to_openai(503, body)
    assert o["error"]["type"] == "server_error" and o["error"]["message"]
    if isinstance(body, bytes) and body.startswith(b"<html>"):
        assert a["error"]["message"] == "<html>Bad Gateway</html>"


def test_translation_bundles_answer_in_the_callers_dialect() -> None:
    from llmgw_proxy.domain.translation import (
        ANTHROPIC_CALLER_TO_OPENAI,
        OPENAI_CALLER_TO_ANTHROPIC,
        TranslationError,
    )

    exc = TranslationError("top_k", "no equivalent")
    assert OPENAI_CALLER_TO_ANTHROPIC.error_body(exc)["error"]["param"] == "top_k"
    assert ANTHROPIC_CALLER_TO_OPENAI.error_body(exc)["type"] == "error"
    assert dict(OPENAI_CALLER_TO_ANTHROPIC.upstream_headers)["anthropic-version"] == "2023-06-01"
    assert (OPENAI_CALLER_TO_ANTHROPIC.upstream_path, ANTHROPIC_CALLER_TO_OPENAI.upstream_path) == ("/v1/messages", "/v1/chat/completions")
    assert OPENAI_CALLER_TO_ANTHROPIC.upstream_error(529, anthropic_error("overloaded_error"))["error"]["code"] == "overloaded"
    stream = OPENAI_CALLER_TO_ANTHROPIC.new_stream("gpt-4o", True)
    assert stream.feed(b"") == b"" and not stream.done
    assert ANTHROPIC_CALLER_TO_OPENAI.new_stream("claude", False).close().startswith(b"event: error")
