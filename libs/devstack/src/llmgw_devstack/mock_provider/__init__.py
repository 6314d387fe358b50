"""The mock upstream LLM provider: the only fake in llmgw.

A plain ASGI app (``create_app(MockConfig(...))``) speaking OpenAI's and Anthropic's wire formats
closely enough for the official ``openai`` and ``anthropic`` SDKs. Run it with
``python -m llmgw_devstack.mock_provider --port 9000`` (or ``llmgw-mock-provider``), in a test thread
with :class:`MockProviderServer`, or as a child process with :class:`MockProviderProcess`.

Routes
------
OpenAI (``Authorization: Bearer``): ``POST /v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/responses``, ``/v1/moderations`` (no usage); ``GET /v1/models``, ``/v1/models/{id}``; any other path →
404 ``unknown_url``. Anthropic (``x-api-key`` or ``Authorization: Bearer``): ``POST /v1/messages``,
``/v1/messages/count_tokens``; ``GET /v1/models[/{id}]`` in Anthropic's shape when the request has
an ``anthropic-version`` header. Control API (no auth): ``GET /_mock/calls[?since=SEQ]``,
``DELETE /_mock/calls``, ``GET|POST|DELETE /_mock/faults``, ``POST /_mock/reset``,
``GET|PATCH /_mock/config``, ``GET /_mock/health`` (and ``/healthz``).

Answers
-------
The answer is the fixed text ``MockConfig.answer`` (13 words). **One word = one completion
token.** ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens`` below the word count
truncate it: OpenAI ``finish_reason: "length"`` (Responses: ``status: "incomplete"``), Anthropic
``stop_reason: "max_tokens"``. Legacy ``/v1/completions`` defaults ``max_tokens`` to 16 like OpenAI.
When the request has ``tools`` and ``tool_choice`` is not none, the answer is a call of the chosen
(or first) function tool with arguments built from its JSON schema: every property set to its first
enum value / ``"mock"`` / ``1`` / ``1.5`` / ``true`` / ``[item]`` / nested object.

Token rules (same request → same usage, streamed or not)
---------------------------------------------------------
``chars(x)`` = characters of every string value inside the JSON value ``x`` (keys not counted);
``c4(n)`` = ceil(n / 4).

- Chat / Anthropic messages: ``prompt = 3 + Σ_messages (4 + c4(chars(message))) + c4(chars(tools))``;
  Anthropic also adds ``c4(chars(system))``. The model name and other parameters do not count, so
  a gateway renaming the model or adding ``stream_options`` does not change the count.
- Responses: like chat over ``input`` items (a string input counts as one message), plus
  ``c4(chars(instructions))`` and the tools. Completions: ``max(1, c4(chars(prompt)))``.
  Embeddings: per input ``max(1, c4(len(text)))`` (token arrays: their length).
- Completion: the words sent; a tool call: ``8 + c4(len(name) + len(arguments_json))``.
- Reasoning (models starting with ``o1``, ``o3``, ``o4``, ``gpt-5``): ``MockConfig.reasoning_tokens``
  (32) *added* to ``completion_tokens`` and reported as ``reasoning_tokens``; else 0.
- OpenAI cache hit: ``cached_tokens = prompt // 2`` when the body has ``prompt_cache_key``, or a
  ``system``/``developer`` message (or Responses ``instructions``) longer than 1,000 characters;
  else 0. ``cached_tokens`` is part of ``prompt_tokens``, as at OpenAI.
- Anthropic cache: when ``cache_control`` appears anywhere in the body, of the total ``T``
  ``cache_read_input_tokens = T // 2``, ``cache_creation_input_tokens = T // 4`` and
  ``input_tokens`` = the rest; else ``input_tokens = T``. ``count_tokens`` answers ``T``.
- Streaming Anthropic: ``message_start`` carries the input/cache counts with ``output_tokens: 1``
  (a placeholder, as the real API sends); ``message_delta`` carries the cumulative final usage
  (input, cache and ``output_tokens``) — take the last value, do not add them up.

Recorded calls
--------------
Every model-API call (control API excluded) appends a dict: ``seq``, ``ts``, ``method``, ``path``,
``provider`` (``openai|anthropic``), ``api_key`` (as presented), ``model``, ``stream``, ``status``
(0 when the connection was reset or hung), ``usage`` (what the client was told, normalized:
``prompt_tokens`` (Anthropic: input + cache read + cache creation), ``completion_tokens``,
``total_tokens``, ``cached_tokens``, ``cache_write_tokens``, ``reasoning_tokens``; ``null`` for
errors, faults, models/count_tokens, and OpenAI streams without ``stream_options.include_usage``),
``request_id`` (the client's ``x-request-id``), ``response_id`` (the mock's), ``headers``
(``x-*``, ``anthropic-*``, ``traceparent``, ``tracestate``; never ``authorization``/``x-api-key``),
``body``, ``cut`` (the answer was cut off), ``fault`` (the fault mode applied, if any).
Streams are recorded when they end; hangs and resets when they start.

Faults
------
``POST /_mock/faults`` with one rule or a list: ``{"mode": "status"|"hang"|"reset"|
"reset_mid_stream"|"latency", "status": 500, "count": N|null, "latency_ms": N, "path": prefix,
"model": exact, "stream": bool, "retry_after": seconds, "after_chunks": 2, "message"/"type"/"code":
error-body overrides}``. The first matching rule applies (``count`` calls, then it is gone).
``status`` answers the provider's error body (429 with ``retry-after`` and ``x-ratelimit-*``; 529 →
Anthropic ``overloaded_error``); ``reset`` drops the connection (TCP RST) without answering; ``hang``
never answers until the client disconnects; ``reset_mid_stream`` sends ``after_chunks`` SSE events
(or half a JSON body) and then closes the connection; ``latency`` delays the normal answer.
"""

from .app import MockApp, create_app
from .config import DEFAULT_ANSWER, FaultRule, MockConfig
from .server import MockProviderProcess, MockProviderServer

__all__ = [
    "DEFAULT_ANSWER",
    "FaultRule",
    "MockApp",
    "MockConfig",
    "MockProviderProcess",
    "MockProviderServer",
    "create_app",
]
