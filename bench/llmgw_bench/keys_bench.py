"""Key lookup cold vs cached, and revocation latency (DELETE returned → every proxy answers 401)."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

from llmgw_bench.loadclient import summarize
from llmgw_bench.procs import say
from llmgw_bench.scenarios import CHAT_PATH, request_body

REVOCATION_TIMEOUT_S = 5.0


class Conn:
    """A keep-alive HTTP/1.1 connection that reconnects when the server closed it."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.will_close:
                    self.close()
                return response.status, data
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


BODY = request_body(False)


def chat(conn: Conn, key: str) -> tuple[int, float]:
    started = time.perf_counter()
    status, _ = conn.request("POST", CHAT_PATH, BODY, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    return status, (time.perf_counter() - started) * 1000


def run_key_bench(stack, proxy_urls: list[str], count: int) -> dict:
    """Creates `count` keys; per key: first request (cold lookup) and second (cached) on proxy 0,
    warm-up on the other proxies, then revocation timing against all of them."""
    say(f"key bench: creating {count} keys…")
    admin = Conn(stack.keys_url)
    admin_headers = {"Authorization": f"Bearer {stack.admin_token}", "Content-Type": "application/json"}
    keys = []
    for index in range(count):
        status, raw = admin.request("POST", "/v1/keys", json.dumps({"name": f"bench-revoke-{index}", "project": "bench"}).encode(),
                                    admin_headers)
        if status != 201:
            raise RuntimeError(f"creating a key answered HTTP {status}: {raw[:200]!r}")
        record = json.loads(raw)
        keys.append((record["id"], record["key"]))

    proxies = [Conn(url) for url in proxy_urls]
    cold, cached, failures = [], [], []
    for key_id, secret in keys:
        status_cold, ms_cold = chat(proxies[0], secret)
        status_cached, ms_cached = chat(proxies[0], secret)
        if status_cold != 200 or status_cached != 200:
            failures.append(f"{key_id}: cold HTTP {status_cold}, cached HTTP {status_cached}")
            continue
        cold.append(ms_cold)
        cached.append(ms_cached)
        for other in proxies[1:]:
            status, _ = chat(other, secret)
            if status != 200:
                failures.append(f"{key_id}: warm-up on another replica HTTP {status}")

    say(f"key bench: revoking {count} keys, polling {len(proxies)} proxy replica(s) for 401…")
    revocation, timeouts, polls = [], 0, 0
    for key_id, secret in keys:
        status, raw = admin.request("DELETE", f"/v1/keys/{key_id}", None, admin_headers)
        returned = time.perf_counter()
        if status not in (200, 204):
            failures.append(f"DELETE {key_id}: HTTP {status} {raw[:200]!r}")
            continue
        pending = set(range(len(proxies)))
        seen_at: dict[int, float] = {}
        while pending and time.perf_counter() - returned < REVOCATION_TIMEOUT_S:
            for replica in list(pending):
                status, _ = chat(proxies[replica], secret)
                polls += 1
                if status == 401:
                    seen_at[replica] = time.perf_counter()
                    pending.discard(replica)
        if pending:
            timeouts += 1
            revocation.append(REVOCATION_TIMEOUT_S * 1000)
        else:
            revocation.append((max(seen_at.values()) - returned) * 1000)
    for conn in (admin, *proxies):
        conn.close()
    return {
        "keys": count,
        "replicas": len(proxies),
        "lookup_cold_ms": summarize(cold),
        "lookup_cached_ms": summarize(cached),
        "revocation_ms": summarize(revocation),
        "revocation_timeouts": timeouts,
        "revocation_polls": polls,
        "failures": failures[:10],
        "failure_count": len(failures),
    }
