"""Async HTTP load client (aiohttp + uvloop), run as its own process by the benchmark.

Records, per request, the time to the first body byte (TTFB) and the total time, so it serves the
streaming scenarios (wrk cannot measure TTFB) and is the fallback for every scenario when wrk is
missing. Standalone on purpose: it imports nothing from the project, so it runs as a plain script.

    python loadclient.py --url URL --body-file F [--header 'K: V'] --concurrency 64 --duration 15
                         [--max-requests N] [--warmup 2] [--stream]

Prints one JSON line (prefixed ``BENCHJSON ``) with counts, status codes and percentiles in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, int(round(q / 100.0 * len(sorted_values) + 0.5 - 1e-9)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": sum(values) / len(values),
        "max": values[-1],
    }


async def run(args: argparse.Namespace) -> dict:
    import aiohttp

    body = open(args.body_file, "rb").read()
    headers = {"Content-Type": "application/json"}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()

    latencies: list[float] = []
    ttfbs: list[float] = []
    statuses: dict[str, int] = {}
    failures: dict[str, int] = {}
    recording = False

    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False, enable_cleanup_closed=False)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:

        async def one() -> None:
            start = time.perf_counter()
            first = None
            try:
                async with session.post(args.url, data=body, headers=headers) as response:
                    received = bytearray()
                    while True:
                        chunk = await response.content.readany()
                        if not chunk:
                            break
                        if first is None:
                            first = time.perf_counter()
                        if args.stream:
                            received += chunk[-64:] if len(chunk) > 64 else chunk
                            del received[:-64]
                    end = time.perf_counter()
                    status = response.status
            except Exception as error:  # noqa: BLE001 - every failure is counted, never hidden
                if recording:
                    name = type(error).__name__
                    failures[name] = failures.get(name, 0) + 1
                return
            if not recording:
                return
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if 200 <= status < 300 and args.stream and b"[DONE]" not in bytes(received):
                failures["stream_without_DONE"] = failures.get("stream_without_DONE", 0) + 1
                return
            latencies.append((end - start) * 1000.0)
            if first is not None:
                ttfbs.append((first - start) * 1000.0)

        async def worker(deadline: float, budget: list[int]) -> None:
            while time.perf_counter() < deadline:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
                await one()

        if args.warmup > 0:
            warm_deadline = time.perf_counter() + args.warmup
            await asyncio.gather(*(worker(warm_deadline, [10**12]) for _ in range(args.concurrency)))

        recording = True
        budget = [args.max_requests if args.max_requests > 0 else 10**12]
        started = time.perf_counter()
        deadline = started + args.duration
        await asyncio.gather(*(worker(deadline, budget) for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started

    completed = sum(statuses.values())
    ok = sum(count for code, count in statuses.items() if code.startswith("2"))
    errors = completed - ok + sum(failures.values())
    return {
        "tool": "python-aiohttp",
        "concurrency": args.concurrency,
        "duration_s": elapsed,
        "requests": completed + sum(failures.values()),
        "ok": len(latencies),
        "errors": errors,
        "statuses": statuses,
        "failures": failures,
        "rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": summarize(latencies),
        "ttfb_ms": summarize(ttfbs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=0)
    parser.add_argument("--warmup", type=float, default=0.0)
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args))
    print("BENCHJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
