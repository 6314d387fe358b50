"""Configuration of the mock provider and its fault rules."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

DEFAULT_ANSWER = "Hello! This is the llmgw mock provider. Your request was received and answered."

#: Keys the shared pytest fixtures configure (test-only values).
MOCK_OPENAI_KEY = "sk-mock-openai-0123456789abcdef"
MOCK_ANTHROPIC_KEY = "sk-ant-mock-0123456789abcdef"

DEFAULT_OPENAI_MODELS: tuple[str, ...] = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)

DEFAULT_ANTHROPIC_MODELS: tuple[str, ...] = (
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5-20251001",
)


@dataclass
class MockConfig:
    """How the mock provider behaves. Every field has a default that suits tests."""

    #: When set, OpenAI-dialect calls must carry ``Authorization: Bearer <openai_key>``.
    openai_key: str | None = None
    #: When set, Anthropic-dialect calls must carry it in ``x-api-key`` or ``Authorization: Bearer``.
    anthropic_key: str | None = None
    #: Added before every model-API answer (time to first byte).
    latency_ms: float = 0.0
    #: Content pieces a streamed answer is split into; ``None`` = one piece per word.
    stream_chunks: int | None = None
    #: Pause between two SSE events of a stream.
    chunk_delay_ms: float = 0.0
    #: The fixed answer text; one word = one completion token.
    answer: str = DEFAULT_ANSWER
    #: Reasoning tokens reported for reasoning models (``o1*``, ``o3*``, ``o4*``, ``gpt-5*``).
    reasoning_tokens: int = 32
    #: Recorded calls kept in memory (oldest dropped first); 0 turns recording off.
    record_limit: int = 100_000
    openai_models: tuple[str, ...] = DEFAULT_OPENAI_MODELS
    anthropic_models: tuple[str, ...] = DEFAULT_ANTHROPIC_MODELS


FAULT_MODES = ("status", "hang", "reset", "reset_mid_stream", "latency")


@dataclass
class FaultRule:
    """One fault-injection rule, matched against model-API calls (never the ``/_mock`` control API).

    ``count``: the next N matching calls take the fault (then the rule is gone); ``None`` = until cleared.
    Filters: ``path`` (prefix of the request path), ``model`` (exact), ``stream`` (bool).
    """

    mode: str = "status"
    status: int = 500
    count: int | None = None
    latency_ms: float = 0.0
    path: str | None = None
    model: str | None = None
    stream: bool | None = None
    retry_after: float | None = None
    #: reset_mid_stream: SSE events (or, for a non-streaming call, half the body) sent before the cut.
    after_chunks: int = 2
    #: Optional overrides of the error body for ``status`` faults.
    message: str | None = None
    type: str | None = None
    code: str | None = None
    #: Calls this rule has hit so far.
    hits: int = field(default=0)

    def __post_init__(self) -> None:
        if self.mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
        if not isinstance(self.status, int) or not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise ValueError("count must be a positive integer or null")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultRule:
        if not isinstance(data, dict):
            raise ValueError("a fault rule must be a JSON object")
        known = {f.name for f in fields(cls)} - {"hits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault rule fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    def matches(self, path: str, model: Any, stream: bool) -> bool:
        if self.path is not None and not path.startswith(self.path):
            return False
        if self.model is not None and model != self.model:
            return False
        if self.stream is not None and stream is not self.stream:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
