"""JetStream KV buckets the proxy shares with its peer replicas (and, for budgets, metering)."""

from __future__ import annotations

import asyncio
import logging

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

#: per key per UTC minute: the requests/tokens every replica has leased (see limits.py)
KV_BUCKET_RATELIMIT = "llmgw_ratelimit"

#: how long one KV operation may take before the caller degrades (NATS trouble)
KV_OP_TIMEOUT = 1.0


async def ensure_bucket(js: JetStreamContext, bucket: str, ttl: float | None = None) -> KeyValue:
    """Bind the bucket, creating it when missing (idempotent, safe from many replicas at once)."""
    try:
        return await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    try:
        return await js.create_key_value(KeyValueConfig(bucket=bucket, history=1, ttl=ttl, storage=StorageType.FILE))
    except Exception:  # noqa: BLE001 - another replica created it first
        await asyncio.sleep(0.05)
        return await js.key_value(bucket)
