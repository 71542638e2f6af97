"""
The Redis store, for bouncers on several hosts sharing one Redis (or
Valkey): C{--store redis://HOST:PORT/DB}.  Its keyring and mock secret are
wrapped under a L{KeyEncryptionKey} that lives outside Redis.
"""

from twisted_keycard.store.redis._blocking import (
    RedisReplyError,
    RedisStartup,
    startupCheck,
)
from twisted_keycard.store.redis._connection import (
    RedisURL,
    StoreUnavailable,
    isRedisURL,
    parseRedisURL,
)
from twisted_keycard.store.redis._store import (
    FAILURES_KEPT,
    NoKeyEncryptionKey,
    RedisStore,
    ReplicasBehind,
)
from twisted_keycard.store.redis._wrap import (
    KeyEncryptionKey,
    SecretsChanging,
    WrongKeyEncryptionKey,
)

__all__ = [
    "FAILURES_KEPT",
    "KeyEncryptionKey",
    "NoKeyEncryptionKey",
    "RedisReplyError",
    "RedisStartup",
    "RedisStore",
    "RedisURL",
    "ReplicasBehind",
    "SecretsChanging",
    "StoreUnavailable",
    "WrongKeyEncryptionKey",
    "isRedisURL",
    "parseRedisURL",
    "startupCheck",
]
