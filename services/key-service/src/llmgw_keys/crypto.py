"""Provider API keys at rest: Fernet (AES-128-CBC + HMAC-SHA256) through MultiFernet.

``LLMGW_ENCRYPTION_KEY`` may list several keys, comma-separated: the first encrypts, every one
decrypts. Rotation: put a new key first, run ``python -m llmgw_keys rotate-encryption`` (which
re-encrypts every row with the first key), then drop the old key.
"""

from __future__ import annotations

import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from llmgw_common.settings import read_or_create_secret

from llmgw_keys.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["InvalidToken", "build_cipher", "mask_secret"]


class EncryptionKeyError(RuntimeError):
    pass


def _parse_keys(raw: str) -> list[Fernet]:
    keys = [part.strip() for part in raw.split(",") if part.strip()]
    if not keys:
        raise EncryptionKeyError("LLMGW_ENCRYPTION_KEY is empty")
    fernets = []
    for index, key in enumerate(keys):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError):
            # Never echo the key itself.
            raise EncryptionKeyError(
                f"LLMGW_ENCRYPTION_KEY entry #{index + 1} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes; generate one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None
    return fernets


def build_cipher(settings: Settings) -> MultiFernet:
    raw = settings.encryption_key
    if not raw:
        raw = read_or_create_secret(settings.state_dir, "encryption_key", lambda: Fernet.generate_key().decode())
        log.warning(
            "LLMGW_ENCRYPTION_KEY is not set: provider API keys are encrypted with a key generated in %s. "
            "That is for local development only; production MUST set LLMGW_ENCRYPTION_KEY (and keep it safe: "
            "without it the stored provider keys cannot be decrypted).",
            settings.state_dir / "encryption_key",
        )
    return MultiFernet(_parse_keys(raw))


def mask_secret(secret: str | None) -> str:
    """``sk-...abcd``: enough to recognise a key, never enough to use it."""
    if not secret:
        return ""
    if len(secret) < 12:
        return "..." + secret[-2:] if len(secret) >= 8 else "***"
    return f"{secret[:3]}...{secret[-4:]}"
