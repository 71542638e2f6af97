"""
The Redis store, for bouncers on several hosts sharing one Redis (or
Valkey): C{--store redis://HOST:PORT/DB}.
"""

from twisted_keycard.store.redis._connection import StoreUnavailable
from twisted_keycard.store.redis._revocations import ReplicasBehind
from twisted_keycard.store.redis._store import RedisStore
from twisted_keycard.store.redis._url import RedisURL, isRedisURL, parseRedisURL

__all__ = [
    "RedisStore",
    "RedisURL",
    "ReplicasBehind",
    "StoreUnavailable",
    "isRedisURL",
    "parseRedisURL",
]
