"""The mock provider as a plain ASGI application (no framework: it is the floor in benchmarks)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from . import anthropic_api, openai_api
from .base import ANTHROPIC, OPENAI, ApiError, Reply, decode, encode, error_body, mask_key, status_error
from .config import FaultRule, MockConfig

log = logging.getLogger("llmgw_devstack.mock_provider")

_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")
_NO_CACHE = (b"cache-control", b"no-cache")
_OPENAI_VERSION = (b"openai-version", b"2020-10-01")
_END = {"type": "http.response.body", "body": b"", "more_body": False}

Handler = Callable[..., Reply]

_OPENAI_POST: dict[str, Handler] = {
    "/v1/chat/completions": openai_api.chat_completions,
    "/v1/completions": openai_api.completions,
    "/v1/embeddings": openai_api.embeddings,
    "/v1/responses": openai_api.responses,
    "/v1/moderations": openai_api.moderations,
}
_ANTHROPIC_POST: dict[str, Handler] = {
    "/v1/messages": anthropic_api.messages,
    "/v1/messages/count_tokens": anthropic_api.count_tokens,
}
_STREAMABLE = {"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"}


class Call:
    """One model-API request while it is handled."""

    __slots__ = ("method", "path", "provider", "api_key", "headers", "request_id", "raw", "model", "stream", "rid", "t0")

    def __init__(self, method: str, path: str, provider: str, t0: float) -> None:
        self.method = method
        self.path = path
        self.provider = provider
        self.t0 = t0
        self.api_key: str | None = None
        self.headers: dict[str, str] = {}
        self.request_id: str | None = None
        self.raw = b""
        self.model: Any = None
        self.stream = False
        self.rid = ""


def _loads(raw: bytes) -> Any:
    try:
        return decode(raw)
    except Exception:
        return raw.decode("utf-8", "replace")


def _cycle(send: Any) -> Any:
    """uvicorn's per-request cycle object behind ``send`` (gives the transport for resets)."""
    return getattr(send, "__self__", None)


class MockApp:
    """ASGI app. Also the in-process API of the recorded calls and the fault rules."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.config = config or MockConfig()
        limit = self.config.record_limit
        self._calls: deque[dict[str, Any]] | None = deque(maxlen=limit) if limit else None
        self._seq = itertools.count(1)
        self._faults: list[FaultRule] = []
        self._fault_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(5).hex()
        self._words = self.config.answer.split()
        self._text_cache: dict[int, str] = {}
        self._piece_cache: dict[tuple[int, int | None], list[str]] = {}
        self._cache: dict[Any, Any] = {}
        self._stopping = False

    # --- public in-process API ------------------------------------------------------------------

    def calls(self, since: int | None = None) -> list[dict[str, Any]]:
        """Recorded calls, oldest first (``since``: only those with a larger ``seq``)."""
        items = list(self._calls) if self._calls is not None else []
        if since is not None:
            items = [c for c in items if c["seq"] > since]
        # bodies are kept raw (no GC-tracked objects pile up under load) and parsed on demand
        return [{**c, "body": _loads(c["body"]) if c["body"] else None} for c in items]

    def clear_calls(self) -> int:
        if self._calls is None:
            return 0
        n = len(self._calls)
        self._calls.clear()
        return n

    def add_fault(self, rule: FaultRule | dict[str, Any] | None = None, **kwargs: Any) -> FaultRule:
        if rule is None:
            rule = FaultRule.from_dict(kwargs)
        elif isinstance(rule, dict):
            rule = FaultRule.from_dict({**rule, **kwargs})
        with self._fault_lock:
            self._faults.append(rule)
        return rule

    def faults(self) -> list[FaultRule]:
        with self._fault_lock:
            return list(self._faults)

    def clear_faults(self) -> None:
        with self._fault_lock:
            self._faults.clear()

    def reset(self) -> None:
        self.clear_calls()
        self.clear_faults()

    def begin_shutdown(self) -> None:
        """Make hanging requests give up (their connections are reset) so the server can stop."""
        self._stopping = True

    # --- helpers for the dialect modules --------------------------------------------------------

    def new_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):014x}"

    def answer_length(self, limit: int | None) -> tuple[int, bool]:
        n = len(self._words)
        if limit is not None and limit < n:
            return limit, True
        return n, False

    def text(self, n: int) -> str:
        text = self._text_cache.get(n)
        if text is None:
            text = self._text_cache[n] = " ".join(self._words[:n])
        return text

    def cached(self, key: Any, build: Callable[[], Any]) -> Any:
        """A value built once per ``key`` (pre-encoded answer parts)."""
        value = self._cache.get(key)
        if value is None:
            value = self._cache[key] = build()
        return value

    def pieces(self, n: int) -> list[str]:
        key = (n, self.config.stream_chunks)
        pieces = self._piece_cache.get(key)
        if pieces is None:
            words = self._words[:n]
            k = min(self.config.stream_chunks or n, n)
            pieces = []
            if k:
                size, extra = divmod(n, k)
                i = 0
                for j in range(k):
                    step = size + (1 if j < extra else 0)
                    piece = " ".join(words[i : i + step])
                    pieces.append(piece if j == 0 else " " + piece)
                    i += step
            self._piece_cache[key] = pieces
        return pieces

    # --- ASGI -----------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path.startswith("/_mock/") or path == "/healthz":
                await self._control(scope, receive, send, path)
            else:
                await self._api(scope, receive, send, path)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    @staticmethod
    async def _read_body(receive: Callable) -> bytes | None:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        while message.get("more_body"):
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
        return body

    async def _api(self, scope: dict, receive: Callable, send: Callable, path: str) -> None:
        t0 = time.perf_counter()
        raw = await self._read_body(receive)
        if raw is None:
            return
        method = scope["method"]
        auth = x_api_key = None
        rec_headers: dict[str, str] = {}
        anthropic_version = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"x-api-key":
                x_api_key = value.decode("latin-1")
            elif name.startswith((b"x-", b"anthropic-")) or name in (b"traceparent", b"tracestate"):
                key = name.decode("latin-1")
                rec_headers[key] = value.decode("latin-1")
                if name == b"anthropic-version":
                    anthropic_version = rec_headers[key]
        if path.startswith("/v1/messages") or (anthropic_version is not None and path.startswith("/v1/models")):
            provider = ANTHROPIC
        else:
            provider = OPENAI
        call = Call(method, path, provider, t0)
        call.headers = rec_headers
        call.request_id = rec_headers.get("x-request-id")
        call.rid = "req_" + self.new_id()
        call.raw = raw
        bearer = auth[7:].strip() if auth is not None and auth[:7].lower() == "bearer " else None
        call.api_key = (x_api_key or bearer) if provider == ANTHROPIC else bearer

        rule: FaultRule | None = None
        try:
            self._authorize(call)
            handler, arg = self._route(call, method, path, scope)
            if arg is None:
                data = self._parse(call, raw)
                arg = data
            if self._faults:
                rule = self._take_fault(call)
                if rule is not None:
                    if rule.mode == "status":
                        raise self._fault_error(call, rule)
                    if rule.mode == "latency":
                        await asyncio.sleep(rule.latency_ms / 1000)
                    elif rule.mode == "reset":
                        self._record(call, 0, None, fault="reset")
                        await self._close(send, receive, reset=True)
                        return
                    elif rule.mode == "hang":
                        self._record(call, 0, None, fault="hang")
                        await self._hang(send, receive)
                        return
            if self.config.latency_ms:
                await asyncio.sleep(self.config.latency_ms / 1000)
            reply = handler(self, call, arg)
        except ApiError as err:
            await self._send_error(call, err, send)
            self._record(call, err.status, None, fault=rule.mode if rule is not None else None)
            return
        except Exception:  # a bug in the mock: answer like a provider would, keep serving
            log.exception("mock provider failed on %s %s", method, path)
            err = status_error(provider, 500)
            await self._send_error(call, err, send)
            self._record(call, 500, None)
            return
        cut_rule = rule if rule is not None and rule.mode == "reset_mid_stream" else None
        if reply.events is not None:
            await self._send_stream(call, reply, send, receive, cut_rule)
        else:
            await self._send_json(call, reply, send, receive, cut_rule)

    def _authorize(self, call: Call) -> None:
        expected = self.config.anthropic_key if call.provider == ANTHROPIC else self.config.openai_key
        if expected is None or call.api_key == expected:
            return
        if call.provider == ANTHROPIC:
            message = "x-api-key header is required" if not call.api_key else "invalid x-api-key"
            raise ApiError(401, message, type="authentication_error")
        if not call.api_key:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                type="invalid_request_error",
            )
        raise ApiError(
            401,
            f"Incorrect API key provided: {mask_key(call.api_key)}. "
            "You can find your API key at https://platform.openai.com/account/api-keys.",
            type="invalid_request_error",
            code="invalid_api_key",
        )

    def _route(self, call: Call, method: str, path: str, scope: dict) -> tuple[Handler, Any]:
        """(handler, argument); argument None means "the parsed JSON body"."""
        if method == "POST":
            table = _ANTHROPIC_POST if call.provider == ANTHROPIC else _OPENAI_POST
            handler = table.get(path)
            if handler is not None:
                return handler, None
        elif method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
            model_id = path[len("/v1/models/") :] if path != "/v1/models" else ""
            if call.provider == ANTHROPIC:
                if not model_id:
                    query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
                    return anthropic_api.list_models, query
                return anthropic_api.get_model, model_id
            if not model_id:
                return openai_api.list_models, {}
            return openai_api.get_model, model_id
        if call.provider == ANTHROPIC:
            raise ApiError(404, f"Not found: {method} {path}", type="not_found_error")
        raise ApiError(404, f"Invalid URL ({method} {path})", type="invalid_request_error", code="unknown_url")

    def _parse(self, call: Call, raw: bytes) -> dict[str, Any]:
        anthropic = call.provider == ANTHROPIC
        try:
            data = decode(raw) if raw else None
        except Exception:
            data = None
        if not isinstance(data, dict):
            if anthropic:
                raise ApiError(400, "There was an error parsing the body of your request.", type="invalid_request_error")
            raise ApiError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
                "JSON.)",
                type="invalid_request_error",
            )
        dialect = anthropic_api if anthropic else openai_api
        call.model = data.get("model")
        if call.path == "/v1/moderations" and call.model is None:
            call.model = "omni-moderation-latest"  # optional there
        else:
            call.model = dialect.require_model(data)
        if call.path in _STREAMABLE:
            call.stream = dialect.check_stream(data)
        return data

    # --- faults ---------------------------------------------------------------------------------

    def _take_fault(self, call: Call) -> FaultRule | None:
        with self._fault_lock:
            for rule in self._faults:
                if rule.matches(call.path, call.model, call.stream):
                    rule.hits += 1
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self._faults.remove(rule)
                    return rule
        return None

    def _fault_error(self, call: Call, rule: FaultRule) -> ApiError:
        err = status_error(call.provider, rule.status, message=rule.message, type=rule.type, code=rule.code)
        if rule.status == 429:
            retry = rule.retry_after if rule.retry_after is not None else 1
            retry_s = str(int(retry)) if float(retry).is_integer() else str(retry)
            err.headers = [
                (b"retry-after", retry_s.encode()),
                (b"x-ratelimit-limit-requests", b"60"),
                (b"x-ratelimit-remaining-requests", b"0"),
                (b"x-ratelimit-reset-requests", f"{retry_s}s".encode()),
                (b"x-ratelimit-limit-tokens", b"150000"),
                (b"x-ratelimit-remaining-tokens", b"0"),
                (b"x-ratelimit-reset-tokens", f"{retry_s}s".encode()),
            ]
            if call.provider == ANTHROPIC:
                reset_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + float(retry))).encode()
                err.headers += [
                    (b"anthropic-ratelimit-requests-limit", b"60"),
                    (b"anthropic-ratelimit-requests-remaining", b"0"),
                    (b"anthropic-ratelimit-requests-reset", reset_at),
                ]
        elif rule.retry_after is not None:
            err.headers = [(b"retry-after", str(rule.retry_after).encode())]
        return err

    async def _close(self, send: Callable, receive: Callable, reset: bool) -> None:
        """Drop the connection: ``reset`` = RST right away, else FIN after what was sent is flushed."""
        transport = getattr(_cycle(send), "transport", None)
        if transport is None:
            raise RuntimeError("the mock provider needs uvicorn to drop connections")
        if reset:
            sock = transport.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except (OSError, AttributeError):
                pass
            transport.abort()
        else:
            for _ in range(400):
                if not transport.get_write_buffer_size():
                    break
                await asyncio.sleep(0.005)
            transport.close()
        try:  # let the server notice the disconnect before the app returns
            await asyncio.wait_for(receive(), 1.0)
        except (asyncio.TimeoutError, Exception):
            pass

    async def _hang(self, send: Callable, receive: Callable) -> None:
        """No answer until the client gives up (or the server stops)."""
        waiter = asyncio.ensure_future(receive())
        try:
            while not waiter.done() and not self._stopping:
                await asyncio.wait({waiter}, timeout=0.05)
        finally:
            if not waiter.done():
                waiter.cancel()
                await self._close(send, receive, reset=True)

    # --- sending --------------------------------------------------------------------------------

    def _headers(self, call: Call, content_type: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        rid = call.rid.encode()
        headers = [content_type, (b"x-request-id", rid)]
        if call.provider == ANTHROPIC:
            headers.append((b"request-id", rid))
        else:
            ms = int((time.perf_counter() - call.t0) * 1000)
            headers.append((b"openai-processing-ms", str(ms).encode()))
            headers.append(_OPENAI_VERSION)
        return headers

    async def _send_error(self, call: Call, err: ApiError, send: Callable) -> None:
        body = error_body(call.provider, err, call.rid)
        headers = self._headers(call, _JSON)
        headers.append((b"content-length", str(len(body)).encode()))
        headers.extend(err.headers)
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_json(
        self, call: Call, reply: Reply, send: Callable, receive: Callable, cut: FaultRule | None
    ) -> None:
        body = reply.body or b""
        headers = self._headers(call, _JSON)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if cut is not None:
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            self._record(call, reply.status, None, cut=True, fault=cut.mode)
            await self._close(send, receive, reset=False)
            return
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self._record(call, reply.status, reply.usage)

    async def _send_stream(
        self, call: Call, reply: Reply, send: Callable, receive: Callable, cut: FaultRule | None
    ) -> None:
        events = reply.events or []
        headers = self._headers(call, _SSE)
        headers.append(_NO_CACHE)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        stop_at = len(events)
        if cut is not None:
            stop_at = max(1, min(cut.after_chunks, len(events) - 2))
        delay = self.config.chunk_delay_ms / 1000
        cycle = _cycle(send)
        for i in range(stop_at):
            if delay and i:
                await asyncio.sleep(delay)
            if getattr(cycle, "disconnected", False):
                break
            await send({"type": "http.response.body", "body": events[i], "more_body": True})
        if cut is not None:
            self._record(call, reply.status, None, cut=True, fault=cut.mode)
            await self._close(send, receive, reset=False)
            return
        await send(_END)
        if getattr(cycle, "disconnected", False):
            self._record(call, reply.status, None, cut=True, client_disconnected=True)
        else:
            self._record(call, reply.status, reply.usage)

    def _record(self, call: Call, status: int, usage: dict[str, int] | None, **extra: Any) -> None:
        if self._calls is None:
            return
        record = {
            "seq": next(self._seq),
            "ts": time.time(),
            "method": call.method,
            "path": call.path,
            "provider": call.provider,
            "api_key": call.api_key,
            "model": call.model,
            "stream": call.stream,
            "status": status,
            "usage": usage,
            "request_id": call.request_id,
            "response_id": call.rid,
            "headers": call.headers,
            "body": call.raw,
            "cut": False,
            "fault": None,
        }
        if extra:
            record.update(extra)
        self._calls.append(record)

    # --- control API ----------------------------------------------------------------------------

    async def _control(self, scope: dict, receive: Callable, send: Callable, path: str) -> None:
        raw = await self._read_body(receive)
        if raw is None:
            return
        method = scope["method"]
        status, payload = 200, None
        try:
            if path in ("/healthz", "/_mock/health"):
                payload = {"status": "ok"}
            elif path == "/_mock/calls" and method == "GET":
                query = parse_qs(scope["query_string"].decode("latin-1"))
                since = int(query["since"][-1]) if "since" in query else None
                payload = {"data": self.calls(since)}
            elif path == "/_mock/calls" and method == "DELETE":
                payload = {"deleted": self.clear_calls()}
            elif path == "/_mock/faults" and method == "GET":
                payload = {"data": [r.to_dict() for r in self.faults()]}
            elif path == "/_mock/faults" and method == "POST":
                data = decode(raw)
                rules = [FaultRule.from_dict(d) for d in (data if isinstance(data, list) else [data])]
                for rule in rules:
                    self.add_fault(rule)
                payload = {"data": [r.to_dict() for r in self.faults()]}
            elif path == "/_mock/faults" and method == "DELETE":
                self.clear_faults()
                payload = {"data": []}
            elif path == "/_mock/reset" and method == "POST":
                self.reset()
                payload = {"status": "ok"}
            elif path == "/_mock/config" and method in ("GET", "PATCH"):
                if method == "PATCH":
                    self._patch_config(decode(raw))
                cfg = self.config
                payload = {
                    "latency_ms": cfg.latency_ms,
                    "chunk_delay_ms": cfg.chunk_delay_ms,
                    "stream_chunks": cfg.stream_chunks,
                    "openai_auth": cfg.openai_key is not None,
                    "anthropic_auth": cfg.anthropic_key is not None,
                }
            else:
                status, payload = 404, {"error": {"type": "not_found", "message": f"no control route {method} {path}"}}
        except Exception as exc:  # malformed control request
            status, payload = 400, {"error": {"type": "invalid_request", "message": str(exc)}}
        body = encode(payload)
        headers = [_JSON, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def _patch_config(self, data: Any) -> None:
        if not isinstance(data, dict):
            raise ValueError("config patch must be a JSON object")
        allowed = {"latency_ms", "chunk_delay_ms", "stream_chunks"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"cannot change: {', '.join(sorted(unknown))}")
        for key, value in data.items():
            if key == "stream_chunks":
                if value is not None and (not isinstance(value, int) or value < 1):
                    raise ValueError("stream_chunks must be a positive integer or null")
            elif not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{key} must be a non-negative number")
            setattr(self.config, key, value)


def create_app(config: MockConfig | None = None) -> MockApp:
    """The mock provider ASGI app for ``config`` (defaults: no auth, no latency)."""
    return MockApp(config or MockConfig())
