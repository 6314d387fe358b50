"""``python -m llmgw_devstack.mock_provider`` / ``llmgw-mock-provider``: serve the mock provider."""

from __future__ import annotations

import argparse
import logging
import os

from .app import create_app
from .config import MockConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="llmgw-mock-provider",
        description="OpenAI- and Anthropic-compatible mock LLM provider (fixed answers, deterministic usage).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--openai-key", default=os.environ.get("LLMGW_MOCK_OPENAI_KEY"), help="require this OpenAI key (default: any)"
    )
    parser.add_argument(
        "--anthropic-key",
        default=os.environ.get("LLMGW_MOCK_ANTHROPIC_KEY"),
        help="require this Anthropic key (default: any)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument(
        "--stream-chunks", type=int, default=None, help="content pieces per streamed answer (default: one per word)"
    )
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="pause between SSE events")
    parser.add_argument(
        "--record-limit", type=int, default=100_000, help="recorded calls kept in memory (0 = record nothing)"
    )
    parser.add_argument("--log-level", default=os.environ.get("LLMGW_LOG_LEVEL", "warning").lower())
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = MockConfig(
        openai_key=args.openai_key,
        anthropic_key=args.anthropic_key,
        latency_ms=args.latency_ms,
        stream_chunks=args.stream_chunks,
        chunk_delay_ms=args.chunk_delay_ms,
        record_limit=args.record_limit,
    )
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=args.log_level,
        timeout_graceful_shutdown=2,
        timeout_keep_alive=75,  # longer than client pools keep idle connections (no reuse races)
    )


if __name__ == "__main__":
    main()
