"""
The Redis store, for bouncers on several hosts sharing one Redis (or
Valkey): C{--store redis://HOST:PORT/DB}.
"""

from twisted_keycard.store.redis._blocking import RedisReplyError, startupCheck
from twisted_keycard.store.redis._connection import (
    RedisURL,
    StoreUnavailable,
    isRedisURL,
    parseRedisURL,
)
from twisted_keycard.store.redis._store import FAILURES_KEPT, RedisStore, ReplicasBehind

__all__ = [
    "FAILURES_KEPT",
    "RedisReplyError",
    "RedisStore",
    "RedisURL",
    "ReplicasBehind",
    "StoreUnavailable",
    "isRedisURL",
    "parseRedisURL",
    "startupCheck",
]
