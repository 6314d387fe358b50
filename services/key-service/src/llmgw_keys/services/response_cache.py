"""Stats and purge of the edge proxies' shared response cache.

The cache is the JetStream KV bucket ``llmgw_response_cache`` (``contract.KV_BUCKET_RESPONSE_CACHE``):
the proxies create it and write its entries; key-service, which owns the admin REST API, only reads
the bucket's stream state and purges it. Entry keys start with the project's token
(``contract.response_cache_project_token``), so one project's entries are the subjects
``$KV.llmgw_response_cache.<token>.>`` and can be counted and purged alone.
"""

from __future__ import annotations

import json
import logging

from llmgw_common import contract
from nats.js.errors import NotFoundError

from llmgw_keys.errors import Unavailable
from llmgw_keys.runtime import Principal, Runtime
from llmgw_keys.schemas import CachePurged, CacheStats
from llmgw_keys.services import audit

log = logging.getLogger(__name__)

BUCKET = contract.KV_BUCKET_RESPONSE_CACHE
STREAM = contract.kv_stream_name(BUCKET)
#: JetStream API calls: short, an admin waits on them
TIMEOUT = 5.0


def _subjects(project: str | None) -> str:
    if project is None:
        return f"$KV.{BUCKET}.>"
    return f"$KV.{BUCKET}.{contract.response_cache_project_token(project)}.>"


def _require_nats(runtime: Runtime) -> None:
    if runtime.js is None or not runtime.nats_ok():
        raise Unavailable("NATS is not connected; the response cache cannot be reached")


async def stats(runtime: Runtime, project: str | None) -> CacheStats:
    _require_nats(runtime)
    try:
        info = await runtime.js.stream_info(STREAM, subjects_filter=_subjects(project) if project is not None else None)
    except NotFoundError:
        return CacheStats(bucket=BUCKET, exists=False, project=project, entries=0, bytes=0 if project is None else None)
    except Exception as exc:  # noqa: BLE001 - NATS timeouts and the like
        raise Unavailable(f"the response cache did not answer ({type(exc).__name__})") from None
    state = info.state
    if project is None:
        entries, size = state.messages, state.bytes
    else:
        entries, size = sum((state.subjects or {}).values()), None
    config = info.config
    max_bytes = config.max_bytes if config.max_bytes is not None and config.max_bytes > 0 else None
    max_age = config.max_age if config.max_age else None
    return CacheStats(
        bucket=BUCKET, exists=True, project=project, entries=entries, bytes=size, max_bytes=max_bytes,
        max_age_seconds=max_age,
    )


async def purge(runtime: Runtime, principal: Principal, project: str | None) -> CachePurged:
    """Remove every entry (or one project's) at once, for every proxy replica."""
    _require_nats(runtime)
    request = {"filter": _subjects(project)} if project is not None else {}
    try:
        msg = await runtime.nc.request(f"$JS.API.STREAM.PURGE.{STREAM}", json.dumps(request).encode(), timeout=TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        raise Unavailable(f"the response cache did not answer ({type(exc).__name__})") from None
    answer = json.loads(msg.data or b"{}")
    error = answer.get("error")
    if error:
        if error.get("err_code") == 10059 or error.get("code") == 404:  # stream not found: nothing cached yet
            purged = 0
        else:
            raise Unavailable(f"purging the response cache failed: {error.get('description', 'unknown error')}")
    else:
        purged = int(answer.get("purged", 0))
    async with runtime.transaction() as tx:
        audit.record(
            tx.session, principal.id, "response_cache.purged", "response_cache", project,
            {"purged": purged, "project": project},
        )
    log.info("response cache purged (%s): %d entries", f"project {project!r}" if project else "all", purged)
    return CachePurged(bucket=BUCKET, project=project, purged=purged)
