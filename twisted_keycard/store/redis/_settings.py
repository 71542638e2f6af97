"""
The Redis settings that durability needs, checked when a bouncer starts:
what to warn about in the server's C{CONFIG GET} answers, and reading them.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted_keycard.store.redis._codec import pairsToDict
from twisted_keycard.store.redis._connection import RedisConnection, StoreUnavailable

#: The settings read.
NAMES = ("appendonly", "appendfsync", "maxmemory-policy")


def settingsWarnings(config: Mapping[str, str] | None) -> list[str]:
    """
    What an operator must know about a Redis server's settings, one line
    each; C{config} is C{None} when C{CONFIG GET} was refused (renamed or
    disabled, as managed services do).
    """
    if config is None:
        return [
            "could not check the Redis settings (CONFIG GET is disabled):"
            " revocations are durable only with appendonly yes and"
            " appendfsync always (or everysec: up to a second lost in a crash),"
            " and maxmemory-policy must be noeviction"
        ]
    warnings = []
    if config.get("appendonly") != "yes":
        warnings.append(
            "Redis has appendonly no: revocations written since its last"
            " snapshot are lost if it restarts; set appendonly yes"
        )
    elif config.get("appendfsync") not in ("always", "everysec"):
        warnings.append(
            f"Redis has appendfsync {config.get('appendfsync')}: revocations"
            " may be lost in a crash; set appendfsync always (or everysec)"
        )
    elif config.get("appendfsync") == "everysec":
        warnings.append(
            "Redis has appendfsync everysec: a revocation acknowledged in the"
            " last second before a crash of its host may be lost; appendfsync"
            " always loses none"
        )
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        warnings.append(
            f"Redis has maxmemory-policy {config.get('maxmemory-policy')}: it"
            " may evict revocations and seats under memory pressure; set"
            " maxmemory-policy noeviction"
        )
    return warnings


async def checkSettings(connection: RedisConnection) -> list[str]:
    """
    Read the settings L{NAMES} from the server over C{connection}: what to
    warn about them (see L{settingsWarnings}).

    @raise StoreUnavailable: if Redis is unreachable.
    """
    config: dict[str, str] = {}
    try:
        for name in NAMES:
            config.update(pairsToDict(await connection.execute("CONFIG", "GET", name)))
    except StoreUnavailable:
        raise
    except Exception:
        return settingsWarnings(None)
    return settingsWarnings(config)
