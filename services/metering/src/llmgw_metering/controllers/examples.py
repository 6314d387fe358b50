"""Examples shown in the OpenAPI document (/schema)."""

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

from llmgw_metering.schemas import ErrorResponse

USAGE_EXAMPLE = {
    "data": [
        {
            "key_id": "key_01JD3K9",
            "model": "gpt-4o",
            "bucket": "2026-11-23T00:00:00Z",
            "requests": 1520,
            "errors": 3,
            "prompt_tokens": 1843200,
            "cached_tokens": 512000,
            "cache_write_tokens": 0,
            "completion_tokens": 301233,
            "reasoning_tokens": 0,
            "total_tokens": 2144433,
            "cost_usd": 6.7332,
            "latency_ms_p50": 812.5,
            "latency_ms_p95": 2410.0,
            "latency_ms_p99": 4102.7,
            "ttfb_ms_p50": 301.2,
            "ttfb_ms_p95": 790.1,
            "ttfb_ms_p99": 1200.4,
        }
    ],
    "group_by": ["key", "model", "day"],
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-12-01T00:00:00Z",
}

EVENT_EXAMPLE = {
    "event_id": "01JD3M2Q8W6Y1B9T0R5C4N7K2P",
    "request_id": "req_7f3a",
    "ts": "2026-11-23T10:15:02.512000Z",
    "key_id": "key_01JD3K9",
    "project": "search",
    "provider": "openai",
    "model": "gpt-4o",
    "upstream_model": "gpt-4o-2024-08-06",
    "deployment": "openai/gpt-4o-2024-08-06",
    "endpoint": "/v1/chat/completions",
    "streamed": True,
    "status": "ok",
    "status_code": 200,
    "error_type": None,
    "attempts": 1,
    "cached": False,
    "prompt_tokens": 1200,
    "cached_tokens": 200,
    "cache_write_tokens": 0,
    "completion_tokens": 300,
    "reasoning_tokens": 0,
    "total_tokens": 1500,
    "latency_ms": 1840.2,
    "ttfb_ms": 312.0,
    "upstream_latency_ms": 1831.0,
    "reserved_usd": 0.02,
    "budget_period_key": "m202611",
    "v": 1,
    "cost_usd": 0.00575,
    "price_known": True,
    "price_version": "genai-prices-0.2.3",
    "ingested_at": "2026-11-23T10:15:02.731000Z",
}

KEY_EXAMPLE = {
    "key_id": "key_01JD3K9",
    "totals": {
        "requests": 48211,
        "errors": 52,
        "prompt_tokens": 61200331,
        "cached_tokens": 10233100,
        "cache_write_tokens": 0,
        "completion_tokens": 9023311,
        "reasoning_tokens": 120331,
        "total_tokens": 70223642,
        "cost_usd": 214.1022175,
        "first_day": "2026-09-02T00:00:00Z",
        "last_event_at": "2026-11-23T10:15:02.512000Z",
    },
    "budget_period": {
        "period": "monthly",
        "period_key": "m202611",
        "spend_usd": 81.22,
        "requests": 17220,
        "released_reserved_usd": 120.5,
        "updated_at": "2026-11-23T10:15:03Z",
        "kv": {"spend_usd": 81.22, "reserved_usd": 0.04, "revision": 18231},
    },
}

OVERRIDE_EXAMPLE = {
    "model": "gpt-4o*",
    "provider": "azure-eu",
    "input_usd_per_mtok": 2.0,
    "cached_input_usd_per_mtok": 1.0,
    "cache_write_usd_per_mtok": None,
    "output_usd_per_mtok": 8.0,
    "note": "negotiated rate, contract 2026-07",
    "created_at": "2026-11-20T09:00:00Z",
    "updated_at": "2026-11-20T09:00:00Z",
}


def error_spec(description: str, type_: str, message: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=ErrorResponse,
        description=description,
        generate_examples=False,
        examples=[Example(summary=type_, value={"error": {"type": type_, "message": message}})],
    )


AUTH_ERRORS = {
    401: error_spec("Missing or invalid bearer token", "authentication_error", "invalid token"),
    403: error_spec("The token's role may not do this", "permission_error", "admin role required"),
    503: error_spec(
        "key-service did not answer (API-created tokens cannot be checked)",
        "service_unavailable",
        "cannot verify the token: key-service is not answering",
    ),
}
INVALID = {
    422: error_spec("Bad parameters", "invalid_request_error", "'from' is not an ISO 8601 date-time: 'yesterday'")
}
