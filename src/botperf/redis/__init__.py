"""botperf's primitives on Redis, for bots that run in more than one process.

Needs redis-py (``pip install 'botperf[redis]'``) and asyncio: redis-py's asyncio
client does not run on trio.
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401  (checked here to name the extra to install)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "botperf.redis needs redis-py, which is not installed: "
        "pip install 'botperf[redis]' (or pip install 'redis>=5.0')"
    ) from exc

from ._codec import Codec as Codec
from ._codec import JsonCodec as JsonCodec
from ._dedup import RedisDeduplicator as RedisDeduplicator
from ._dedup import RedisDedupStats as RedisDedupStats
from ._dedup import deduplicate as deduplicate
from ._errors import RedisRemoteError as RedisRemoteError
from ._errors import RedisUnavailableError as RedisUnavailableError
from ._history import RedisHistoryStore as RedisHistoryStore
from ._ratelimit import RedisRateLimiter as RedisRateLimiter
from ._sink import RedisStreamSink as RedisStreamSink

__all__ = [
    "Codec",
    "JsonCodec",
    "RedisDedupStats",
    "RedisDeduplicator",
    "RedisHistoryStore",
    "RedisRateLimiter",
    "RedisRemoteError",
    "RedisStreamSink",
    "RedisUnavailableError",
    "deduplicate",
]
