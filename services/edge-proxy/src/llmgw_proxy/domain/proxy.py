"""The request pipeline: authenticate → read + validate → allow-list → route → limits → budget →
dispatch (retries, fallback, circuit breakers) → relay (bytes untouched, SSE chunk by chunk) →
usage event (background) → metrics.

Plain ASGI on purpose (see router.py): this is the hot path, so it parses only what it must
(one msgspec pass into a struct of the handful of fields it checks), forwards the client's
original bytes (the only rewrites: ``stream_options.include_usage`` for OpenAI streams and the
upstream model name when a route renames it), and hands the usage event to a background task.
A deployment of the other API format goes through a translation path (``translated.py``); an
opted-in non-streaming request may be answered from the shared response cache
(``response_cache.py``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Status, StatusCode

from llmgw_common import pricing
from llmgw_common.contract import UsageEvent, hash_secret, usage_subject
from llmgw_proxy import observability
from llmgw_proxy.domain import errors, routing, translated
from llmgw_proxy.domain.ids import new_id
from llmgw_proxy.domain.auth.failed_attempts import FailedAuthLimiter
from llmgw_proxy.domain.auth.key_cache import KeyCache, KeyEntry
from llmgw_proxy.domain.budgets import BudgetGuard
from llmgw_proxy.domain.http import ClientGone, Incoming, passthrough_target, read_body, send_bytes
from llmgw_proxy.domain.limits import RateLimiter
from llmgw_proxy.domain.passthrough import PassthroughGuard
from llmgw_proxy.domain.response_cache import CachePlan, ResponseCache
from llmgw_proxy.domain.streaming import SSEUsage
from llmgw_proxy.domain.upstream.client import UpstreamPool, relay_headers, upstream_headers
from llmgw_proxy.domain.upstream.http1 import ConnectTimeout, Response, UpstreamError
from llmgw_proxy.domain.usage import tokens as usage_tokens
from llmgw_proxy.domain.usage.publisher import UsagePublisher

log = logging.getLogger(__name__)

perf_counter = time.perf_counter

#: an upstream error body (429/5xx) kept for relaying is read up to this size
MAX_ERROR_BODY = 1024 * 1024
#: non-streamed answers up to this size are read whole (usage parsed); larger/binary ones stream
MAX_BUFFERED_BODY = 64 * 1024 * 1024

#: a request whose upstream part lasts longer than this starts watching for the client's disconnect
WATCH_DELAY = 0.25

_STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
#: on a translation path, the upstream's dialect-specific headers the caller's SDK would not expect
_FOREIGN = {"anthropic": b"openai-", "openai": b"anthropic-"}


class Endpoint:
    """A proxied route: how to validate its body and read its usage."""

    __slots__ = ("path", "dialect", "validate", "needs_messages", "inject_usage", "stream_mode", "priced", "completion")

    def __init__(
        self,
        path: str,
        dialect: str,
        *,
        validate: bool = True,
        needs_messages: bool = False,
        inject_usage: bool = False,
        stream_mode: str | None = "openai",
        priced: bool = True,
        completion: bool = True,
    ) -> None:
        self.path = path
        self.dialect = dialect
        #: JSON body with a string ``model`` (thin validation); False = passthrough
        self.validate = validate
        self.needs_messages = needs_messages
        #: OpenAI streams: ask the upstream for usage when the client did not
        self.inject_usage = inject_usage
        #: how usage is read from an SSE answer: openai | responses | anthropic
        self.stream_mode = stream_mode
        #: reserves budget (count_tokens does not cost anything)
        self.priced = priced
        #: the answer has completion tokens (embeddings do not)
        self.completion = completion


class _Probe(msgspec.Struct):
    """The only request fields the proxy looks at; everything else is skipped unparsed."""

    model: Any = msgspec.UNSET
    stream: Any = msgspec.UNSET
    messages: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    stream_options: Any = msgspec.UNSET
    max_tokens: Any = msgspec.UNSET
    max_completion_tokens: Any = msgspec.UNSET
    max_output_tokens: Any = msgspec.UNSET


_probe_decoder = msgspec.json.Decoder(_Probe)
_any_decoder = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode
_INJECTED_USAGE = b',"stream_options":{"include_usage":true}}'


class Ctx:
    """Everything one request accumulates on its way through the pipeline."""

    __slots__ = (
        "inc", "endpoint", "path", "dialect", "t0", "ts", "entry", "body", "model", "stream", "inject", "max_tokens",
        "admission", "reservation", "attempts", "candidate", "up_start", "up_headers", "up_end", "first_byte",
        "t_end", "status", "status_code", "error_type", "client_gone", "done", "sse", "tokens", "streamed",
        "watcher", "forwarded", "overhead", "span", "span_token", "traceparent", "route", "parsed", "prepared", "cache",
    )

    def __init__(self, inc: Incoming, endpoint: Endpoint | None, dialect: str) -> None:
        self.inc = inc
        self.endpoint = endpoint
        self.path = endpoint.path if endpoint is not None else inc.path
        #: the metrics label: bounded (never a client-chosen path)
        self.route = endpoint.path if endpoint is not None else "passthrough"
        self.dialect = dialect
        self.t0 = perf_counter()
        self.ts = datetime.now(UTC)
        self.entry: KeyEntry | None = None
        self.body = b""
        self.model = ""
        self.stream = False
        self.inject = False
        self.max_tokens: int | None = None
        self.admission = None
        self.reservation = None
        self.attempts = 0
        self.candidate: routing.Candidate | None = None
        self.up_start: float | None = None
        self.up_headers: float | None = None
        self.up_end: float | None = None
        self.first_byte: float | None = None
        self.t_end: float | None = None
        self.status = "ok"
        self.status_code = 200
        self.error_type: str | None = None
        self.client_gone = False
        self.done = False
        self.sse: SSEUsage | None = None
        self.tokens: usage_tokens.Tokens | None = None
        self.streamed = False
        self.watcher: asyncio.TimerHandle | asyncio.Task | None = None
        self.forwarded = False
        self.overhead: float | None = None
        #: the request's server span (tracing on)
        self.span = None
        #: the span made current for this request's task (key lookups open their spans under it)
        self.span_token = None
        self.traceparent: str | None = inc.traceparent
        #: translation paths: the caller's body as a dict, and (candidate, translated bytes) made early
        self.parsed: dict | None = None
        self.prepared: tuple | None = None
        #: the response cache's plan for this request (None: not cached)
        self.cache: CachePlan | None = None


class Answer:
    __slots__ = ("resp", "body", "candidate", "stream")

    def __init__(self, resp: Response, body: bytes | None, candidate: routing.Candidate, stream: bool):
        self.resp = resp
        self.body = body
        self.candidate = candidate
        self.stream = stream


class ProxyService:
    def __init__(
        self,
        settings,
        keys: KeyCache,
        limits: RateLimiter,
        budgets: BudgetGuard,
        pool: UpstreamPool,
        breakers: routing.Breakers,
        publisher: UsagePublisher,
        metrics,
        tracer=None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.limits = limits
        self.budgets = budgets
        self.pool = pool
        self.breakers = breakers
        self.publisher = publisher
        self.metrics = metrics
        self.tracer = tracer
        self.max_body = settings.max_body_bytes
        self.failed_auth = FailedAuthLimiter(
            settings.auth_failures_per_minute, trusted_proxies=getattr(settings, "trusted_proxies", "")
        )
        #: LLMGW_PASSTHROUGH (+ per-key metadata overrides) for other /v1/* paths
        self.passthrough = PassthroughGuard(getattr(settings, "passthrough", "all"))
        self.max_attempts = settings.upstream_max_attempts
        self.retry_base = settings.upstream_retry_base
        self.retry_max_wait = settings.upstream_retry_max_wait
        self.default_completion = settings.estimate_completion_tokens
        #: a client gone after the generation finished: how long the upstream is still read for its usage
        self.usage_drain = getattr(settings, "stream_usage_drain_seconds", 5.0)
        #: one JSON log line per request (LLMGW_PROXY_ACCESS_LOG)
        self.access_log = getattr(settings, "proxy_access_log", True)
        #: set by the runtime (None: no response cache)
        self.cache: ResponseCache | None = None
        self._background: set[asyncio.Task] = set()

    # --- entry points -------------------------------------------------------------------------
    async def forward(self, scope, receive, send, endpoint: Endpoint | None, dialect: str | None = None) -> None:
        """Proxy one request; ``endpoint`` None = passthrough of any other ``/v1/*`` path."""
        inc = Incoming(scope)
        ctx = Ctx(inc, endpoint, dialect or (endpoint.dialect if endpoint is not None else "openai"))
        if self.tracer is not None:
            self._start_span(ctx)
        elif ctx.traceparent is None:
            ctx.traceparent = observability.new_traceparent()  # log correlation across the services
        self.metrics.inflight += 1
        task = asyncio.current_task()
        try:
            await self._forward(ctx, receive, send)
        except errors.ProxyError as exc:
            await self._send_error(send, ctx, exc)
        except asyncio.CancelledError:
            if not ctx.client_gone:
                ctx.status, ctx.error_type, ctx.status_code = "incomplete", "cancelled", 499
                raise
            task.uncancel()
            ctx.status, ctx.error_type, ctx.status_code = "incomplete", "client_disconnect", 499
        except ClientGone:
            ctx.status, ctx.error_type, ctx.status_code = "incomplete", "client_disconnect", 499
        except Exception:  # noqa: BLE001 - answer something, never a hanging client
            log.exception("proxy request failed")
            if not ctx.done and not ctx.streamed:
                await self._send_error(send, ctx, errors.internal_error())
            ctx.status, ctx.error_type = "error", "internal_error"
        finally:
            self.metrics.inflight -= 1
            watcher = ctx.watcher
            if watcher is not None:
                watcher.cancel()  # the timer, or the watching task
            self._finish(ctx)

    async def authenticate(self, ctx: Ctx, receive) -> KeyEntry:
        """401/503/413 or the caller's key entry, with the request body read into ``ctx.body``."""
        inc = ctx.inc
        if not inc.token:
            raise errors.missing_key()
        if inc.content_length is not None and inc.content_length > self.max_body:
            raise errors.body_too_large(self.max_body)
        now = time.time()
        key_hash = hash_secret(inc.token)
        failed = self.failed_auth
        # Keys already known here keep working, so guessers behind a shared address (a load
        # balancer, a NAT) cannot lock out the clients with real keys; and while nobody fails,
        # the client address (X-Forwarded-For behind LLMGW_TRUSTED_PROXIES) is never worked out.
        if failed.active and not self.keys.knows(key_hash):
            blocked_for = failed.retry_after(failed.address(inc), now)
            if blocked_for is not None:
                raise errors.too_many_failed_attempts(blocked_for)
        try:
            entry = await self.keys.get(key_hash)
        except errors.ProxyError as error:
            # Only guesses count: a key that exists but is revoked/expired is not brute force.
            if error.status == 401:
                failed.record_failure(failed.address(inc), now)
            raise
        entry.check_usable(now)
        ctx.entry = entry
        ctx.body = await read_body(receive, self.max_body)
        return entry

    async def local(self, scope, receive, send, dialect: str, route: str, answer) -> None:
        """An authenticated endpoint answered by the proxy itself (``answer(ctx) -> (status, body)``)."""
        inc = Incoming(scope)
        ctx = Ctx(inc, None, dialect)
        ctx.route = route
        if self.tracer is not None:
            self._start_span(ctx)
        elif ctx.traceparent is None:
            ctx.traceparent = observability.new_traceparent()
        try:
            await self.authenticate(ctx, receive)
            status, body = await answer(ctx)
            ctx.status_code = status
            headers = self._own_headers(ctx, perf_counter() - ctx.t0)
            ctx.done = True
            await send_bytes(send, status, body, headers)
        except errors.ProxyError as exc:
            await self._send_error(send, ctx, exc)
        except Exception:  # noqa: BLE001
            log.exception("local endpoint failed")
            if not ctx.done:
                await self._send_error(send, ctx, errors.internal_error())
        finally:
            now = perf_counter()
            if ctx.span is not None:
                self._end_span(ctx)
            self.metrics.request(ctx.route, "", ctx.status_code, now - ctx.t0, None)
            if self.access_log:
                observability.access_log(ctx, usage_tokens.Tokens(), now)

    # --- pipeline -------------------------------------------------------------------------------
    async def _forward(self, ctx: Ctx, receive, send) -> None:
        if ctx.endpoint is None:
            # before authentication: a hostile path is refused without costing a key lookup
            ctx.inc.path = ctx.path = passthrough_target(ctx.inc)
        entry = await self.authenticate(ctx, receive)
        if ctx.endpoint is None:  # LLMGW_PASSTHROUGH / the key's metadata: 404 before any upstream call
            self.passthrough.check(ctx.inc.method, ctx.path, entry.record.metadata)
        endpoint = ctx.endpoint
        if endpoint is not None and endpoint.validate:
            self._validate(ctx, endpoint)
        else:
            self._sniff(ctx)
        if ctx.model and not entry.model_allowed(ctx.model):
            raise errors.model_not_allowed(ctx.model)
        if endpoint is not None and endpoint.validate:
            candidates = routing.resolve(entry, ctx.model, ctx.dialect, ctx.path).ordered()
            first = candidates[0]
            if first.translator is not None and all(c.translator is first.translator for c in candidates):
                # Every deployment needs this translation: an unmappable parameter is a 400 now,
                # before limits, budget or any upstream call.
                ctx.prepared = (first, self._body_for(ctx, first))
            cache = self.cache
            if cache is not None and not ctx.stream:
                record = entry.record
                ctx.cache = cache.plan(ctx.inc.headers, record.metadata, record.project, ctx.path, ctx.model, ctx.body)
        else:
            provider = routing.passthrough_provider(entry, ctx.dialect)
            if provider is None:
                raise errors.not_found(f"No {ctx.dialect} provider is configured for '{ctx.inc.path}'.")
            candidates = [routing.Candidate(provider, ctx.model, 1, 0)]
        record = entry.record
        if record.rpm_limit is not None or record.tpm_limit is not None or record.max_parallel_requests is not None:
            ctx.admission = await self.limits.admit(record, self._estimate_tokens(ctx))
        if ctx.cache is not None and await self.cache.lookup(ctx.cache) is not None:
            await self._send_cached(ctx, send)  # no upstream call, no budget (priced at zero)
            return
        if record.budget_usd is not None and (endpoint is None or endpoint.priced):
            ctx.reservation = await self.budgets.reserve(record, self._estimate_usd(ctx, candidates[0]), ctx.ts)
        # Client-disconnect watch, started only if the upstream part lasts (an instant answer
        # never pays for the extra task).
        ctx.watcher = asyncio.get_running_loop().call_later(
            WATCH_DELAY, _start_watch, receive, ctx, asyncio.current_task(), self.usage_drain
        )
        answer = await self._dispatch(ctx, candidates)
        if answer.stream:
            await self._relay_stream(ctx, send, answer)
        else:
            await self._relay_body(ctx, send, answer)

    def _validate(self, ctx: Ctx, endpoint: Endpoint) -> None:
        try:
            probe = _probe_decoder.decode(ctx.body)
        except msgspec.ValidationError as exc:
            why = str(exc)  # msgspec names the JSON path, never a value (e.g. a number out of range)
            message = "The request body must be a JSON object." if "Expected `object`" in why else f"Invalid request body: {why}."
            raise errors.bad_request(message, "invalid_json") from None
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise errors.bad_request(
                "We could not parse the JSON body of your request: it is not valid JSON (UTF-8).", "invalid_json"
            ) from None
        except RecursionError:
            raise errors.bad_request("The JSON body of your request is nested too deeply.", "invalid_json") from None
        model = probe.model
        if model is msgspec.UNSET:
            raise errors.bad_request("You must provide a 'model' parameter.", "missing_model")
        if type(model) is not str or not model:
            raise errors.bad_request("'model' must be a non-empty string.", "invalid_model")
        ctx.model = model
        stream = probe.stream
        if stream is not msgspec.UNSET and stream is not None:
            if type(stream) is not bool:
                raise errors.bad_request("'stream' must be a boolean.", "invalid_stream")
            ctx.stream = stream
        if endpoint.needs_messages:
            messages = probe.messages
            if messages is msgspec.UNSET:
                raise errors.bad_request("'messages' is required.", "missing_messages")
            if memoryview(messages)[:1] != b"[":
                raise errors.bad_request("'messages' must be a list.", "invalid_messages")
        for value in (probe.max_tokens, probe.max_completion_tokens, probe.max_output_tokens):
            if type(value) is int and value >= 0:
                ctx.max_tokens = value
                break
        if endpoint.inject_usage and ctx.stream:
            options = probe.stream_options
            if not (type(options) is dict and options.get("include_usage") is True):
                ctx.inject = True

    def _sniff(self, ctx: Ctx) -> None:
        """Passthrough: learn the model (allow-list, usage event) when the body is a JSON object."""
        body = ctx.body
        if body[:1] == b"{":
            try:
                probe = _probe_decoder.decode(body)
            except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
                return  # forwarded as-is: the provider judges it
            if type(probe.model) is str:
                ctx.model = probe.model
            if probe.stream is True:
                ctx.stream = True

    def _estimate_tokens(self, ctx: Ctx) -> int:
        """Offline estimate (no tokenizer downloads): body bytes / 4 + max_tokens (or the default)."""
        prompt = len(ctx.body) // 4
        endpoint = ctx.endpoint
        if endpoint is None or not endpoint.priced:
            return prompt if endpoint is None else 0
        if not endpoint.completion:
            return prompt
        return prompt + (ctx.max_tokens if ctx.max_tokens is not None else self.default_completion)

    def _estimate_usd(self, ctx: Ctx, candidate: routing.Candidate) -> float:
        prompt = len(ctx.body) // 4
        endpoint = ctx.endpoint
        completion = 0
        if endpoint is not None and endpoint.completion:
            completion = ctx.max_tokens if ctx.max_tokens is not None else self.default_completion
        try:
            price = pricing.price(
                candidate.provider.name,
                candidate.upstream_model or ctx.model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                aliases=(ctx.model,) if ctx.model else (),
            )
        except Exception:  # noqa: BLE001 - pricing must never break the hot path
            log.exception("pricing failed")
            return 0.0
        return float(price.cost_usd)

    def _body_for(self, ctx: Ctx, candidate: routing.Candidate) -> bytes:
        """The original bytes, unless the usage injection or a model rename needs a rewrite, or the
        translated request for a deployment of the other API format."""
        translator = candidate.translator
        if translator is not None:
            prepared = ctx.prepared
            if prepared is not None and prepared[0] is candidate:
                return prepared[1]
            if ctx.parsed is None:
                ctx.parsed = translated.parse_body(ctx.body)
            return translated.request_body(translator, ctx.parsed, candidate.upstream_model)
        rename = candidate.upstream_model != ctx.model and ctx.endpoint is not None and ctx.endpoint.validate
        if not rename and not ctx.inject:
            return ctx.body
        if not rename:
            body = ctx.body.rstrip()
            if b'"stream_options"' not in body and body.endswith(b"}"):
                return body[:-1] + _INJECTED_USAGE
        try:
            obj = _any_decoder.decode(ctx.body)
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
            raise errors.bad_request("The JSON body of your request could not be rewritten for its route.", "invalid_json") from None
        if rename:
            obj["model"] = candidate.upstream_model
        if ctx.inject:
            options = obj.get("stream_options")
            options = dict(options) if isinstance(options, dict) else {}
            options["include_usage"] = True
            obj["stream_options"] = options
        return _encode(obj)

    # --- upstream ---------------------------------------------------------------------------------
    async def _dispatch(self, ctx: Ctx, candidates: list[routing.Candidate]) -> Answer:
        """Try deployments in order, retrying each up to ``max_attempts``; never after streaming began."""
        inc = ctx.inc
        method = inc.method
        last_failure: tuple | None = None  # ("status", resp, body, cand) | ("timeout"|"connect", detail)
        skipped: list[str] = []
        refused: errors.TranslationRefused | None = None
        metrics = self.metrics
        pool = self.pool
        server_span = ctx.span
        # tracing on and this request sampled: each attempt's own span goes upstream as the
        # traceparent (added per attempt). Unsampled (head sampling drops most requests): no
        # attempt spans, nothing would record them; the request's unsampled traceparent goes up.
        tracer = self.tracer if server_span is not None and server_span.get_span_context().trace_flags.sampled else None
        traceparent = ctx.traceparent if tracer is None else None
        for candidate in candidates:
            if not self.breakers.allow(candidate.name):
                skipped.append(candidate.name)
                continue
            provider = candidate.provider
            translator = candidate.translator
            if translator is None:
                headers = upstream_headers(inc.headers, provider, inc.request_id, traceparent)
                path, query = inc.path, inc.query
                data = self._body_for(ctx, candidate)
            else:
                try:
                    data = self._body_for(ctx, candidate)
                except errors.TranslationRefused as exc:
                    refused = refused or exc  # this deployment cannot take the request: the next one
                    continue
                headers = translated.request_headers(inc.headers, provider, inc.request_id, traceparent, translator)
                path, query = translator.upstream_path, b""
            if not data and method in ("GET", "HEAD", "DELETE", "OPTIONS"):
                data = None
            for attempt in range(self.max_attempts):
                ctx.attempts += 1
                ctx.candidate = candidate
                ctx.forwarded = True
                started = perf_counter()
                if ctx.up_start is None:
                    ctx.up_start = started
                retry_after = None
                span = up_status = up_error = None
                sent = headers
                if tracer is not None:
                    span = observability.upstream_span(
                        tracer, observability.parent_context(ctx.span), method, provider, candidate.name, path, attempt
                    )
                    sent = headers + [observability.traceparent_line(span)]
                try:
                    resp = await pool.request(provider, method, path, query, sent, data)
                    status = up_status = resp.status
                    if status == 401:
                        # The provider refused our credential: the same key cannot succeed on a
                        # retry, and its error body may quote the key's end. Next deployment.
                        try:
                            await resp.read(MAX_ERROR_BODY)
                        except UpstreamError:
                            pass
                        resp.release()
                        log.warning("provider %r rejected the gateway's credentials (HTTP 401)", provider.name)
                        last_failure = ("credentials", provider.name)
                        metrics.upstream_attempt(provider.name, "http_401", perf_counter() - started)
                        self.breakers.failure(candidate.name)
                        break
                    if status == 429 or status >= 500:
                        try:
                            body = await resp.read(MAX_ERROR_BODY)
                        except UpstreamError:
                            body = b""
                        resp.release()
                        retry_after = _retry_after(resp)
                        last_failure = ("status", resp, body, candidate)
                        metrics.upstream_attempt(provider.name, "http_429" if status == 429 else "http_5xx", perf_counter() - started)
                    else:
                        ctx.up_headers = perf_counter()
                        ctype = resp.content_type
                        if ctype.startswith("text/event-stream") or not _bufferable(resp, ctype):
                            self.breakers.success(candidate.name)
                            metrics.upstream_attempt(provider.name, "ok", ctx.up_headers - started)
                            return Answer(resp, None, candidate, True)
                        body = await resp.read()
                        resp.release()
                        ctx.up_end = perf_counter()
                        self.breakers.success(candidate.name)
                        metrics.upstream_attempt(provider.name, "ok", ctx.up_end - started)
                        return Answer(resp, body, candidate, False)
                except UpstreamError as exc:
                    up_error = exc.kind
                    last_failure = (exc.kind, _describe(exc, provider.name))
                    metrics.upstream_attempt(provider.name, exc.kind, None)
                except ValueError as exc:  # a provider URL/key the upstream client cannot use
                    up_error = "connect_error"
                    last_failure = ("connect_error", f"provider '{provider.name}' is misconfigured: {exc}")
                    metrics.upstream_attempt(provider.name, "connect_error", None)
                finally:
                    if span is not None:
                        observability.end_upstream_span(span, up_status, up_error)
                self.breakers.failure(candidate.name)
                if attempt + 1 >= self.max_attempts or not self.breakers.allow(candidate.name):
                    break
                wait = self.retry_base * (2**attempt) * (0.5 + random.random())
                if retry_after is not None:
                    if retry_after > self.retry_max_wait:
                        break  # this deployment asks for a longer pause: try the next one
                    wait = max(wait, retry_after)
                await asyncio.sleep(min(wait, self.retry_max_wait))
        ctx.up_end = perf_counter()
        if last_failure is None and refused is not None and not skipped:
            raise refused
        if last_failure is None:
            retry = max(1, math.ceil(self.breakers.retry_after(skipped)))
            raise errors.ProxyError(
                502,
                f"Every deployment for '{ctx.model or ctx.inc.path}' is cooling down after repeated failures.",
                openai_type="api_error",
                code="upstream_unavailable",
                anthropic_type="api_error",
                headers=[(b"retry-after", str(retry).encode())],
                reason="circuit_open",
            )
        if last_failure[0] == "status":
            _, resp, body, candidate = last_failure
            ctx.candidate = candidate
            return Answer(resp, body, candidate, False)
        if last_failure[0] == "credentials":
            raise errors.upstream_credentials_rejected(last_failure[1])
        if last_failure[0] == "timeout":
            raise errors.upstream_timeout(last_failure[1])
        raise errors.upstream_unreachable(last_failure[1])

    # --- relaying ---------------------------------------------------------------------------------
    async def _relay_body(self, ctx: Ctx, send, answer: Answer) -> None:
        resp = answer.resp
        body = answer.body
        ctx.status_code = status = resp.status
        anthropic = answer.candidate.provider.kind == "anthropic"
        ctx.tokens = usage_tokens.from_body(body, anthropic)  # the upstream's own answer, normalised
        translator = answer.candidate.translator
        if translator is not None:
            body = translated.response_body(translator, status, body, ctx.model)
        if status >= 400:
            ctx.status = "error"
            ctx.error_type = f"upstream_{status}"
        now = perf_counter()
        upstream = (ctx.up_end or now) - (ctx.up_start or now)
        overhead = (now - ctx.t0) - upstream
        headers = relay_headers(resp.raw_headers, _FOREIGN[ctx.dialect] if translator is not None else None)
        if translator is not None:
            headers = [h for h in headers if h[0] != b"content-type"]
        headers += self._own_headers(ctx, overhead)
        headers.append((b"content-length", b"%d" % len(body)))
        if not any(name == b"content-type" for name, _ in headers):
            headers.append((b"content-type", b"application/json"))
        plan = ctx.cache
        if plan is not None:
            headers.append((b"x-llmgw-cache", b"miss"))
        ctx.done = True
        ctx.first_byte = now
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if plan is not None and status == 200:
            ctype = "application/json" if translator is not None else resp.content_type
            self._spawn(self.cache.store(plan, body, ctype, answer.candidate, ctx.tokens))

    async def _send_cached(self, ctx: Ctx, send) -> None:
        """A response-cache hit: the stored answer, one usage event (``cached``), no upstream call."""
        hit = ctx.cache.hit
        ctx.forwarded = True  # served: it gets its usage event
        ctx.status_code = hit.status
        ctx.tokens = hit.tokens()
        now = perf_counter()
        headers = self._own_headers(ctx, now - ctx.t0)
        headers += [
            (b"content-type", hit.content_type.encode("latin-1")),
            (b"content-length", b"%d" % len(hit.body)),
            (b"x-llmgw-cache", b"hit"),
            (b"age", b"%d" % max(0, int(time.time() - hit.created))),
        ]
        ctx.done = True
        ctx.first_byte = now
        await send({"type": "http.response.start", "status": hit.status, "headers": headers})
        await send({"type": "http.response.body", "body": hit.body})

    async def _relay_stream(self, ctx: Ctx, send, answer: Answer) -> None:
        resp = answer.resp
        ctx.status_code = resp.status
        ctx.streamed = True
        is_sse = resp.content_type.startswith("text/event-stream")
        endpoint = ctx.endpoint
        mode = None
        translator = answer.candidate.translator
        if is_sse:
            if answer.candidate.provider.kind == "anthropic":
                mode = "anthropic"
            else:
                mode = endpoint.stream_mode if endpoint is not None and endpoint.stream_mode else "openai"
        if translator is not None and is_sse:
            # the caller's stream, written by the translator (include_usage = what the client asked)
            sse = ctx.sse = translated.TranslatedSSE(translator.new_stream(ctx.model, not ctx.inject), ctx.dialect)
        else:
            sse = ctx.sse = SSEUsage(mode, strip=ctx.inject) if mode else None
        now = perf_counter()
        overhead = (now - ctx.t0) - ((ctx.up_headers or now) - (ctx.up_start or now))
        headers = relay_headers(resp.raw_headers, _FOREIGN[ctx.dialect] if translator is not None else None)
        headers += self._own_headers(ctx, overhead)
        if is_sse:
            headers += _STREAM_HEADERS
        clean_end = False
        try:
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            try:
                async for chunk in resp.iter_chunks():
                    out = sse.feed(chunk) if sse is not None else chunk
                    # (client gone after the generation finished: read on for the usage, send nothing)
                    if out and not ctx.client_gone:
                        if ctx.first_byte is None:
                            ctx.first_byte = perf_counter()
                        await send({"type": "http.response.body", "body": out, "more_body": True})
                tail = sse.finish() if sse is not None else b""
                clean_end = True
            except UpstreamError as exc:
                # Cut by the upstream: usage so far is recorded; the client gets an error event.
                timeout = exc.kind == "timeout"
                ctx.status = "incomplete"
                ctx.error_type = "upstream_timeout" if timeout else "upstream_disconnect"
                if translator is not None and sse is not None:
                    # the translator ends the caller's stream (an error event in the caller's
                    # dialect when it was cut before the end)
                    tail = sse.cut(timeout)
                else:
                    tail = sse.finish() if sse is not None and not sse.strip else b""
                    if is_sse:
                        tail += self._stream_error_event(ctx)
            ctx.up_end = perf_counter()
            if ctx.first_byte is None:
                ctx.first_byte = ctx.up_end
            ctx.done = True
            if ctx.client_gone:
                # the client left after the generation finished; the usage was read (or the
                # upstream broke off first): metered as what it is, a disconnected stream
                ctx.status, ctx.error_type, ctx.status_code = "incomplete", "client_disconnect", 499
                return
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            if clean_end and sse is not None and sse.error_seen:
                ctx.status, ctx.error_type = "error", "upstream_stream_error"
            elif clean_end and resp.status >= 400:
                ctx.status, ctx.error_type = "error", f"upstream_{resp.status}"
        finally:
            if clean_end:
                resp.release()
            else:
                resp.close()  # aborts the upstream request (client gone or upstream broken)

    def _stream_error_event(self, ctx: Ctx) -> bytes:
        return errors.stream_cut(ctx.error_type == "upstream_timeout").stream_event(ctx.dialect)

    def _own_headers(self, ctx: Ctx, overhead: float) -> list[tuple[bytes, bytes]]:
        ctx.overhead = overhead
        request_id = ctx.inc.request_id.encode("latin-1")
        headers = [
            (b"x-request-id", request_id),
            (b"x-llmgw-overhead-ms", f"{max(overhead, 0.0) * 1000:.3f}".encode()),
        ]
        if ctx.dialect == "anthropic":
            headers.append((b"request-id", request_id))  # what the anthropic SDK reads (``_request_id``)
        return headers

    async def _send_error(self, send, ctx: Ctx, exc: errors.ProxyError) -> None:
        ctx.status_code = exc.status
        ctx.status = "error"
        ctx.error_type = exc.reason
        if ctx.done or ctx.streamed:
            return
        now = perf_counter()
        upstream = (ctx.up_end - ctx.up_start) if ctx.up_start is not None and ctx.up_end is not None else 0.0
        headers = self._own_headers(ctx, (now - ctx.t0) - upstream)
        headers.extend(exc.headers)
        ctx.done = True
        ctx.first_byte = now
        await send_bytes(send, exc.status, exc.body(ctx.dialect), headers)

    # --- accounting (after the answer went out) -------------------------------------------------
    def _finish(self, ctx: Ctx) -> None:
        now = perf_counter()
        tokens = ctx.tokens
        if tokens is None:
            tokens = ctx.sse.tokens if ctx.sse is not None else usage_tokens.Tokens()
        if ctx.admission is not None:
            # a cache hit used no provider tokens
            self.limits.release(ctx.admission, 0 if ctx.cache is not None and ctx.cache.hit is not None else tokens.total)
        entry = ctx.entry
        if ctx.forwarded and entry is not None:
            self._emit(ctx, tokens, now)
        elif ctx.reservation is not None and ctx.reservation.amount > 0:
            self._spawn(self.budgets.release(ctx.reservation))
        if ctx.span is not None:
            self._end_span(ctx)
        self.metrics.request(ctx.route, ctx.model, ctx.status_code, now - ctx.t0, ctx.overhead)
        if tokens.total or tokens.prompt or tokens.completion:
            self._count_tokens(ctx, tokens)
        if self.access_log:
            observability.access_log(ctx, tokens, now)

    def _emit(self, ctx: Ctx, tokens: usage_tokens.Tokens, now: float) -> None:
        record = ctx.entry.record
        candidate = ctx.candidate
        t0 = ctx.t0
        reservation = ctx.reservation
        hit = ctx.cache.hit if ctx.cache is not None else None
        if hit is not None:  # the deployment that produced the cached answer
            provider, upstream_model, deployment = hit.provider, hit.upstream_model, hit.deployment
        elif candidate is not None:
            provider, upstream_model, deployment = candidate.provider.name, candidate.upstream_model, candidate.name
        else:
            provider = upstream_model = deployment = ""
        event = UsageEvent(
            event_id=new_id(),
            request_id=ctx.inc.request_id,
            ts=ctx.ts,
            key_id=record.id,
            project=record.project,
            provider=provider,
            model=ctx.model,
            upstream_model=upstream_model,
            deployment=deployment,
            endpoint=ctx.path,
            streamed=ctx.streamed or ctx.stream,  # the answer was streamed, or the client asked for a stream
            status=ctx.status,
            status_code=ctx.status_code,
            error_type=ctx.error_type,
            attempts=ctx.attempts,
            cached=hit is not None,
            prompt_tokens=tokens.prompt,
            cached_tokens=tokens.cached,
            cache_write_tokens=tokens.cache_write,
            completion_tokens=tokens.completion,
            reasoning_tokens=tokens.reasoning,
            total_tokens=tokens.total,
            latency_ms=(now - t0) * 1000,
            ttfb_ms=(ctx.first_byte - t0) * 1000 if ctx.first_byte is not None else None,
            upstream_latency_ms=(ctx.up_end - ctx.up_start) * 1000
            if ctx.up_end is not None and ctx.up_start is not None
            else None,
            reserved_usd=reservation.amount if reservation is not None else 0.0,
            budget_period_key=reservation.period_key if reservation is not None else None,
        )
        # (the sampled flag, not is_recording(): the server span may have ended with the response)
        if self.tracer is not None and ctx.span is not None and ctx.span.get_span_context().trace_flags.sampled:
            headers = observability.publish_headers(
                self.tracer, observability.parent_context(ctx.span), usage_subject(event.provider), event.event_id
            )
        else:
            headers = {"traceparent": ctx.traceparent} if ctx.traceparent else None
        self.publisher.submit(event, headers)

    def _count_tokens(self, ctx: Ctx, tokens: usage_tokens.Tokens) -> None:
        """Token and (list-price) cost counters by model and provider."""
        hit = ctx.cache.hit if ctx.cache is not None else None
        if hit is not None:
            return  # served from the response cache: no provider tokens were used
        candidate = ctx.candidate
        provider = candidate.provider.name if candidate is not None else "unknown"
        self.metrics.tokens(ctx.model, provider, tokens)
        try:
            price = pricing.price(
                provider,
                (candidate.upstream_model if candidate is not None else "") or ctx.model,
                prompt_tokens=tokens.prompt,
                cached_tokens=tokens.cached,
                cache_write_tokens=tokens.cache_write,
                completion_tokens=tokens.completion,
                aliases=(ctx.model,) if ctx.model else (),
            )
        except Exception:  # noqa: BLE001 - pricing must never break the hot path
            return
        if price.cost_usd:
            self.metrics.cost(ctx.model, provider, float(price.cost_usd))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- tracing (only when an exporter is configured) -------------------------------------------
    def _start_span(self, ctx: Ctx) -> None:
        """The request's SERVER span, started here rather than by a generic ASGI middleware: an
        unsampled request (most of them under head sampling) pays for one sampler decision and
        nothing else; URL attributes are written only on recorded spans, credentials masked."""
        inc = ctx.inc
        parent = propagate.extract({"traceparent": inc.traceparent}) if inc.traceparent else None
        route = ctx.path if ctx.endpoint is not None else (ctx.route if ctx.route.startswith("/v1/") else "/v1/*")
        span = self.tracer.start_span(f"{inc.method} {route}", context=parent, kind=trace.SpanKind.SERVER)
        ctx.span = span
        if span.is_recording():
            observability.server_span_attributes(span, inc, route)
        ctx.span_token = otel_context.attach(trace.set_span_in_context(span))
        # W3C traceparent of the span, as the propagator would write it (without its dict round trip)
        sc = span.get_span_context()
        ctx.traceparent = f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{sc.trace_flags:02x}"

    def _end_span(self, ctx: Ctx) -> None:
        span = ctx.span
        if span.is_recording():  # head sampling drops most requests: nothing to write on those
            if ctx.entry is not None:
                span.set_attribute("llmgw.key_id", ctx.entry.record.id)
            if ctx.model:
                span.set_attribute("llmgw.model", ctx.model)
            span.set_attribute("http.response.status_code", ctx.status_code)
            span.set_attribute("llmgw.attempts", ctx.attempts)
            if ctx.candidate is not None:
                span.set_attribute("llmgw.deployment", ctx.candidate.name)
            if ctx.status != "ok":
                span.set_status(Status(StatusCode.ERROR, ctx.error_type or ctx.status))
        span.end()
        if ctx.span_token is not None:
            otel_context.detach(ctx.span_token)
            ctx.span_token = None

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _start_watch(receive, ctx: Ctx, task: asyncio.Task, drain: float) -> None:
    if not ctx.done:
        ctx.watcher = asyncio.ensure_future(_watch_disconnect(receive, ctx, task, drain))


async def _watch_disconnect(receive, ctx: Ctx, task: asyncio.Task, drain: float) -> None:
    """Cancels the request's task when the client goes away (which aborts the upstream call).

    Exception: a stream whose upstream already finished generating (``sse.over``: the OpenAI
    ``finish_reason`` chunk, a responses output's ``*.done``) has only its usage report and end
    left; the relay keeps reading it (sending nothing) for at most ``drain`` seconds so the
    provider-reported usage is metered, then the task is cancelled if it is still running."""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not ctx.done:
                    ctx.client_gone = True
                    sse = ctx.sse
                    if drain > 0 and sse is not None and sse.over:
                        # the request's finally cancels this timer (ctx.watcher) when the relay ends first
                        ctx.watcher = asyncio.get_running_loop().call_later(drain, _cancel_unless_done, ctx, task)
                    else:
                        task.cancel()
                return
    except Exception:  # noqa: BLE001
        return


def _cancel_unless_done(ctx: Ctx, task: asyncio.Task) -> None:
    if not ctx.done:
        task.cancel()


def _describe(exc: UpstreamError, provider: str) -> str:
    if isinstance(exc, ConnectTimeout):
        return f"connecting to provider '{provider}' timed out"
    if exc.kind == "timeout":
        return f"provider '{provider}' did not answer in time"
    return f"provider '{provider}': {exc}"


def _retry_after(resp: Response) -> float | None:
    value = resp.header(b"retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = resp.header(b"retry-after")
    if value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _bufferable(resp: Response, ctype: str) -> bool:
    """JSON/text answers of known, sane size are read whole (usage parsed); others are streamed."""
    if "json" not in ctype and not ctype.startswith("text/"):
        return False
    length = resp.content_length
    return length is None or length <= MAX_BUFFERED_BODY
