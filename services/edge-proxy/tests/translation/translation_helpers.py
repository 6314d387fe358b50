"""Helpers for the translation tests: a tiny local HTTP server the official SDKs talk to."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Answer:
    """What the test server sends back: a status, a content type and body pieces (each written and
    flushed separately, so a client sees them as separate network reads)."""

    def __init__(self, status: int, content_type: str, pieces: Iterable[bytes], headers: dict[str, str] | None = None):
        self.status = status
        self.content_type = content_type
        self.pieces = pieces
        self.headers = headers or {}


Handler = Callable[[str, dict[str, Any], dict[str, str]], Answer]


class SDKServer:
    """``http://127.0.0.1:<port>``; each test installs ``handler(path, json_body, headers) -> Answer``."""

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[BaseException] = []
        server = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # body ends when the connection closes: fine for streams

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append((self.path, body))
                try:
                    assert server.handler is not None, "no handler installed"
                    answer = server.handler(self.path, body, {k.lower(): v for k, v in self.headers.items()})
                except BaseException as exc:  # surfaced by the fixture after the test
                    server.errors.append(exc)
                    answer = Answer(599, "text/plain", [repr(exc).encode()])
                self.send_response(answer.status)
                self.send_header("content-type", answer.content_type)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for piece in answer.pieces:
                    if piece:
                        self.wfile.write(piece)
                        self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="sdk-test-server", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def split_every(data: bytes, size: int) -> list[bytes]:
    """``data`` in pieces of ``size`` bytes (to cut SSE events at arbitrary places)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
