"""``python -m llmgw_keys migrate | serve | rotate-encryption``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from llmgw_common.logging import configure_logging
from llmgw_common.serving import serve

from llmgw_keys.settings import Settings

log = logging.getLogger("llmgw_keys")


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.service_name, level=settings.log_level)


def cmd_migrate(settings: Settings) -> int:
    from llmgw_keys.migrate import migrate

    asyncio.run(migrate(settings))
    print("key-service database is up to date")
    return 0


def cmd_serve(settings: Settings) -> int:
    # Resolve the dev-only generated secrets once, here, before any worker starts: workers
    # creating the same state-dir file at once would race.
    from llmgw_keys.crypto import EncryptionKeyError, build_cipher

    try:
        build_cipher(settings)
    except EncryptionKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings.resolved_admin_token()
    log.info(
        "bootstrap admin token: %s",
        "from LLMGW_ADMIN_TOKEN"
        if settings.admin_token
        else f"generated, kept in {settings.state_dir / 'admin_token'}",
    )
    if settings.auto_migrate:
        # In the parent, before uvicorn spawns workers; guarded by the advisory lock, so replicas
        # starting together are fine. LLMGW_AUTO_MIGRATE=0 when a migrations Job does it.
        from llmgw_keys.migrate import migrate

        asyncio.run(migrate(settings))
    serve("llmgw_keys.app:create_app", settings, service="key-service", port=settings.keys_port,
          workers=settings.keys_workers)
    return 0


def cmd_rotate_encryption(settings: Settings) -> int:
    """Re-encrypt every stored provider API key with the first LLMGW_ENCRYPTION_KEY."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from llmgw_keys.crypto import EncryptionKeyError, build_cipher
    from llmgw_keys.db import create_session_factory
    from llmgw_keys.services.providers import rotate_encryption

    try:
        cipher = build_cipher(settings)
    except EncryptionKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    async def run() -> tuple[int, list[str]]:
        engine = create_async_engine(settings.async_database_url, poolclass=NullPool, hide_parameters=True)
        try:
            return await rotate_encryption(create_session_factory(engine), cipher)
        finally:
            await engine.dispose()

    count, failed = asyncio.run(run())
    if failed:
        print(
            "error: these providers' API keys cannot be decrypted with any configured LLMGW_ENCRYPTION_KEY: "
            + ", ".join(failed)
            + ". Nothing was changed. Add the key they were encrypted with to LLMGW_ENCRYPTION_KEY "
            "(after the new one) and run again.",
            file=sys.stderr,
        )
        return 1
    print(f"re-encrypted {count} provider API key(s) with the first LLMGW_ENCRYPTION_KEY")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmgw_keys", description="llmgw key-service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations (schema `keys`) and exit")
    sub.add_parser("serve", help="serve the admin REST API and the NATS responders (migrates first)")
    sub.add_parser("rotate-encryption", help="re-encrypt provider API keys with the first LLMGW_ENCRYPTION_KEY")
    args = parser.parse_args(argv)

    settings = Settings()
    _configure_logging(settings)
    if not settings.database_url:
        print("error: LLMGW_DATABASE_URL is not set", file=sys.stderr)
        return 2
    commands = {"migrate": cmd_migrate, "serve": cmd_serve, "rotate-encryption": cmd_rotate_encryption}
    return commands[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
