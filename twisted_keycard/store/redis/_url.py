"""
Redis store URLs: C{redis://HOST:PORT/DB}, C{rediss://} (TLS),
C{redis+sentinel://H1:26379,H2:26379/MASTER/DB}, with C{prefix=},
C{ca=} (the trust roots of C{rediss}), C{replicas=} and C{replica-timeout=}
in the query.  A password never goes in the URL: it is read from a file or
the environment, so that it shows in no process list and no log.
"""

from __future__ import annotations

import math
import re
from urllib.parse import parse_qsl, unquote

import attrs

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_PREFIX = "keycard:"
SCHEMES = ("redis", "rediss", "redis+sentinel", "rediss+sentinel")

_PREFIX = re.compile(r"[A-Za-z0-9_.:{}-]{0,64}\Z")
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::([0-9]{1,5}))?\Z")


@attrs.frozen
class RedisURL:
    """
    Where a Redis store lives.

    @ivar hosts: the server's C{(host, port)}, or the Sentinels' when
        C{master} is set.
    @ivar db: the database number.
    @ivar tls: connect to the server with TLS, its certificate verified.
    @ivar caFile: PEM trust roots for TLS; the system's when C{None}.
    @ivar prefix: put before every key, so that several deployments share
        one Redis.
    @ivar master: the Sentinel service name of the primary, for
        C{redis+sentinel}.
    @ivar replicas: replicas that must hold a revocation (C{WAIT}) before
        it is acknowledged.
    @ivar replicaTimeout: seconds to wait for them.
    """

    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    tls: bool = False
    caFile: str | None = None
    prefix: str = DEFAULT_PREFIX
    master: str | None = None
    replicas: int = 0
    replicaTimeout: float = 1.0

    @property
    def channel(self) -> str:
        """
        The pub/sub channel of this store's changes (channels are shared by
        every database of a server, so it names the database too).
        """
        return f"{self.prefix}changes@{self.db}"

    def __str__(self) -> str:
        hosts = ",".join(
            f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts
        )
        scheme = "rediss" if self.tls else "redis"
        if self.master is not None:
            return f"{scheme}+sentinel://{hosts}/{self.master}/{self.db}"
        return f"{scheme}://{hosts}/{self.db}"


def isRedisURL(text: str) -> bool:
    """
    Whether C{text} names a Redis store (by its scheme).
    """
    return text.partition("://")[0].lower() in SCHEMES and "://" in text


def parseRedisURL(text: str) -> RedisURL:
    """
    Read a Redis store URL.

    @raise ValueError: with a one-line reason, for a malformed URL or one
        that holds a password.
    """
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"not a Redis URL: use one of {', '.join(SCHEMES)}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        raise ValueError(
            "a Redis URL takes no user or password: give the password in a"
            " file (--store-password-file) or in $KEYCARD_REDIS_PASSWORD"
        )
    sentinel = scheme.endswith("+sentinel")
    port = DEFAULT_SENTINEL_PORT if sentinel else DEFAULT_PORT
    hosts = tuple(_host(part, port) for part in netloc.split(","))
    if not sentinel and len(hosts) != 1:
        raise ValueError(
            "redis:// takes one host; list Sentinels with redis+sentinel://"
        )
    parts = [unquote(p) for p in path.split("/") if p]
    master = None
    if sentinel:
        if not parts:
            raise ValueError("redis+sentinel:// needs the master's name: .../MASTER/DB")
        master = parts.pop(0)
    if len(parts) > 1:
        raise ValueError(f"unexpected path in Redis URL: /{path}")
    db = _integer(parts[0], "database number") if parts else 0
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    known = {"prefix", "ca", "replicas", "replica-timeout"}
    unknown = sorted(set(options) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise ValueError(f"unknown Redis URL option {unknown[0]!r}; known: {names}")
    prefix = options.get("prefix", DEFAULT_PREFIX)
    if not _PREFIX.match(prefix):
        raise ValueError("prefix= takes up to 64 letters, digits and _.:{}-")
    caFile = options.get("ca") or None
    tls = scheme.startswith("rediss")
    if caFile is not None and not tls:
        raise ValueError("ca= is for TLS: use rediss://")
    timeout = options.get("replica-timeout", "1")
    try:
        replicaTimeout = float(timeout)
    except ValueError:
        replicaTimeout = math.nan
    if not (math.isfinite(replicaTimeout) and replicaTimeout > 0):
        raise ValueError("replica-timeout= takes a positive number of seconds")
    return RedisURL(
        hosts=hosts,
        db=db,
        tls=tls,
        caFile=caFile,
        prefix=prefix,
        master=master,
        replicas=_integer(options.get("replicas", "0"), "replicas="),
        replicaTimeout=replicaTimeout,
    )


def _host(text: str, port: int) -> tuple[str, int]:
    match = _HOST.match(text)
    if match is None:
        raise ValueError(f"bad host in Redis URL: {text!r}")
    host, given = match.groups()
    if given is not None:
        port = int(given)
        if not 0 < port < 65536:
            raise ValueError(f"bad port in Redis URL: {text!r}")
    return host.strip("[]"), port


def _integer(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > 6:
        raise ValueError(f"bad {what} in Redis URL: {text!r}")
    return int(text)
