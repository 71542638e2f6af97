"""
A blocking look at a Redis store, for a bouncer's start, before the
reactor runs: that Redis answers (with the password, the database, TLS
verified, through the Sentinels), its mock secret, and its durability
settings, and its secrets wrapped under the key-encryption key.  Failing
here stops the start with one line.
"""

from __future__ import annotations

import secrets
import socket
import ssl
from typing import Any

import attrs

from twisted_keycard._mocks import SECRET_BYTES
from twisted_keycard.store.redis._connection import NAMES, RedisURL, settingsWarnings
from twisted_keycard.store.redis._lua import MOCK_SECRET
from twisted_keycard.store.redis._wrap import (
    CHANGING,
    READ_SECRETS,
    SECRETS_RETRIES,
    WRAP_SECRETS,
    KeyEncryptionKey,
    SecretsChanging,
    SecretsSnapshot,
    SecretsWrapper,
)

#: Seconds to wait for a connection or a reply.
TIMEOUT = 5.0


class RedisReplyError(Exception):
    """
    Redis answered a command with an error.
    """


class BlockingRedis:
    """
    One blocking connection to a Redis server, speaking RESP2.
    """

    def __init__(
        self, url: RedisURL, host: str, port: int, timeout: float = TIMEOUT
    ) -> None:
        raw = socket.create_connection((host, port), timeout)
        self._socket: socket.socket = raw
        if url.tls:
            context = ssl.create_default_context(cafile=url.caFile)
            self._socket = context.wrap_socket(raw, server_hostname=host)
        self._file = self._socket.makefile("rb")
        #: Whether the server answered a command before any password.
        self.openWithoutPassword = False

    def close(self) -> None:
        self._file.close()
        self._socket.close()

    def command(self, *args: object) -> Any:
        """
        Send a command and read its reply.

        @raise RedisReplyError: for an error reply.
        @raise OSError: if the connection fails.
        """
        parts = [
            str(a).encode("utf-8") if not isinstance(a, bytes) else a for a in args
        ]
        message = b"*%d\r\n" % len(parts) + b"".join(
            b"$%d\r\n%s\r\n" % (len(p), p) for p in parts
        )
        self._socket.sendall(message)
        reply = self._reply()
        if isinstance(reply, RedisReplyError):
            raise reply
        return reply

    def _reply(self) -> Any:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode("utf-8")
        if kind == b"-":
            return RedisReplyError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)
            return data[:-2].decode("utf-8")
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise ConnectionError(f"unexpected reply from Redis: {line[:40]!r}")


def _primary(url: RedisURL, timeout: float) -> tuple[str, int]:
    """
    The primary's address: the URL's host, or what the first Sentinel that
    answers names.
    """
    if url.master is None:
        return url.hosts[0]
    reasons = []
    for host, port in url.hosts:
        try:
            sentinel = BlockingRedis(
                RedisURL(hosts=((host, port),)), host, port, timeout
            )
            try:
                answer = sentinel.command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", url.master
                )
            finally:
                sentinel.close()
        except (OSError, RedisReplyError) as e:
            reasons.append(f"{host}:{port}: {e}")
            continue
        if answer:
            return answer[0], int(answer[1])
        reasons.append(f"{host}:{port} knows no master {url.master!r}")
    raise ConnectionError("no Sentinel named the primary (" + "; ".join(reasons) + ")")


def connect(
    url: RedisURL, password: str | None, timeout: float = TIMEOUT
) -> BlockingRedis:
    """
    Connect to the store's primary, authenticate and select its database.
    Whether the primary answered a command before the password was given
    is the connection's C{openWithoutPassword}.

    @raise OSError: if it cannot be reached.
    @raise RedisReplyError: if it refuses the password or the database.
    """
    host, port = _primary(url, timeout)
    redis = BlockingRedis(url, host, port, timeout)
    try:
        try:
            redis.openWithoutPassword = redis.command("PING") == "PONG"
        except RedisReplyError:
            # NOAUTH: it takes no command before the password.
            redis.openWithoutPassword = False
        if password is not None:
            redis.command("AUTH", password)
        redis.command("SELECT", url.db)
        if url.master is not None:
            role = redis.command("ROLE")
            if role[0] != "master":
                raise ConnectionError(f"{host}:{port} is a {role[0]}, not the primary")
    except BaseException:
        redis.close()
        raise
    return redis


@attrs.frozen
class RedisStartup:
    """
    What a bouncer learns of its Redis store before it listens.

    @ivar mockSecret: the store's mock secret (made if it had none).
    @ivar warnings: what to warn about its durability settings, one line
        each.
    @ivar openWithoutPassword: whether Redis took a command from a client
        that gave no password (anyone who reaches it reads and writes it).
    @ivar wrapped: whether secrets stored in clear (before wrapping) were
        wrapped now.
    """

    mockSecret: bytes
    warnings: list[str]
    openWithoutPassword: bool
    wrapped: bool


def _settings(redis: BlockingRedis) -> dict[str, str] | None:
    """
    The durability settings Redis has, or C{None} where it does not say
    (C{CONFIG} renamed or disabled, as managed services do).
    """
    config: dict[str, str] = {}
    try:
        for name in NAMES:
            values = redis.command("CONFIG", "GET", name)
            config.update(zip(values[::2], values[1::2], strict=True))
    except RedisReplyError:
        return None
    return config


def _wrapSecrets(redis: BlockingRedis, wrapper: SecretsWrapper) -> bool:
    """
    Wrap the secrets of a store written before wrapping (see
    L{SecretsWrapper.plan}), and check that they open under its key.

    @return: whether secrets in clear were wrapped.
    @raise WrongKeyEncryptionKey: if they do not open under its key.
    """
    wrapped = False
    for _ in range(SECRETS_RETRIES):
        reply = redis.command("EVAL", READ_SECRETS, 0, wrapper.prefix)
        snapshot = SecretsSnapshot.fromReply(reply)
        plan = wrapper.plan(snapshot)
        if plan.write is None:
            if snapshot.keyring:
                wrapper.unwrapKeyring(snapshot.keyring, snapshot.version)
            return wrapped
        args = plan.wrapArgs()
        if redis.command("EVAL", WRAP_SECRETS, 0, wrapper.prefix, *args):
            wrapped = wrapped or bool(snapshot.keyring) or snapshot.mock is not None
    raise SecretsChanging(CHANGING)


def startupCheck(
    url: RedisURL,
    password: str | None,
    keyEncryptionKey: KeyEncryptionKey,
    timeout: float = TIMEOUT,
) -> RedisStartup:
    """
    Check that the store answers, wrap its secrets under
    C{keyEncryptionKey} if they were stored in clear (and check that they
    open under it), and read what a bouncer needs before it listens.

    @raise OSError: if it cannot be reached.
    @raise RedisReplyError: if it refuses a command.
    @raise twisted_keycard.store.redis.WrongKeyEncryptionKey: if its
        secrets are wrapped under another key, or were changed.
    @raise SecretsChanging: if other processes kept changing them.
    """
    redis = connect(url, password, timeout)
    wrapper = SecretsWrapper(keyEncryptionKey, url.prefix)
    try:
        wrapped = _wrapSecrets(redis, wrapper)
        fresh = wrapper.wrapMock(secrets.token_bytes(SECRET_BYTES))
        stored = redis.command("EVAL", MOCK_SECRET, 0, url.prefix, fresh)
        secret = wrapper.unwrapMock(stored)
        return RedisStartup(
            secret,
            settingsWarnings(_settings(redis)),
            redis.openWithoutPassword,
            wrapped,
        )
    finally:
        redis.close()
