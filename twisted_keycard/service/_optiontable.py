"""
The options of C{twistd keycard-bouncer}: name, short name, default, help
and type of each, as L{twisted.python.usage.Options} reads them.
"""

from __future__ import annotations

from typing import Any

from twisted_keycard.service._limitoptions import CONNECTION_OPTIONS
from twisted_keycard.tokencard import DEFAULT_MAX_FAMILY_LIFETIME

DEFAULT_LISTEN = "tcp:8800:interface=127.0.0.1"

#: The requester name of the service's own listener: the same on every
#: bouncer, so that a token issued by one is accepted by the others.
DEFAULT_REQUESTER_NAME = "keycard-bouncer"

PARAMETERS: list[list[Any]] = [
    [
        "data-dir",
        "d",
        None,
        "data directory [default: $KEYCARD_DATA_DIR, else ./keycard-data]",
    ],
    [
        "listen",
        "l",
        DEFAULT_LISTEN,
        "endpoint to listen on (any Twisted server endpoint)",
    ],
    [
        "store",
        None,
        None,
        "sqlite:PATH, redis://HOST:PORT/DB, rediss://HOST:PORT/DB?ca=FILE or"
        " redis+sentinel://H1:P1,H2:P2/MASTER/DB, with ?prefix=P [default: the"
        " data directory's store, keycard.db unless keycard init --store]",
    ],
    [
        "store-password-file",
        None,
        None,
        "file whose first line is the Redis store's password [default: the"
        " data directory's, else $KEYCARD_REDIS_PASSWORD]",
    ],
    [
        "tokens-when-store-down",
        None,
        "refuse",
        "refuse or accept token logins while the Redis store is"
        " unreachable (their revocations cannot be checked)",
    ],
    [
        "name",
        None,
        "bouncer",
        "this bouncer's name, written in keycards and tokens",
    ],
    [
        "requester-name",
        None,
        DEFAULT_REQUESTER_NAME,
        "the requester name of this service's own listener, where its"
        " tokens are accepted: bouncers that take each other's tokens share it",
    ],
    ["duration", None, 3600.0, "seconds a keycard and its token are valid", float],
    ["challenge-timeout", None, 30.0, "seconds a client has to answer", float],
    ["max-pending", None, 10_000, "logins in progress at most", int],
    ["max-pending-per-address", None, 100, "logins in progress per address", int],
    [
        "max-pending-per-connection",
        None,
        4,
        "logins in progress per client connection",
        int,
    ],
    ["hash-threads", None, 1, "password hashes computed at once", int],
    ["hash-queue", None, 16, "password hashes waiting, at most", int],
    [
        "max-password-bytes",
        None,
        256,
        "longer passwords are refused before hashing",
        int,
    ],
    [
        "requesters",
        None,
        "",
        "comma-separated avatar ids that may act as requesters",
    ],
    [
        "requester-timeout",
        None,
        60.0,
        "seconds before a silent requester's keycards expire",
        float,
    ],
    [
        "services",
        None,
        "",
        "comma-separated avatar ids of services that redeem session tickets",
    ],
    [
        "ticket-timeout",
        None,
        5.0,
        "seconds from a session ticket's grant to its confirmation",
        float,
    ],
    ["max-per-avatar", None, None, "keycards one avatar may hold at once", int],
    [
        "seat-pool",
        None,
        None,
        "name of the seat pool every keycard takes a seat of",
    ],
    ["seats", None, None, "size of that seat pool", int],
    ["policy", None, None, "expression over algorithms, e.g. 'scram and address'"],
    ["throttle-account", None, 100, "failed logins per account per window", int],
    ["throttle-address", None, 30, "failed logins per address per window", int],
    ["throttle-window", None, 3600.0, "seconds of the throttling window", float],
    *CONNECTION_OPTIONS,
    [
        "token-audiences",
        None,
        "",
        "comma-separated requester names that take every token, besides"
        " the one it was issued through",
    ],
    [
        "max-family-lifetime",
        None,
        DEFAULT_MAX_FAMILY_LIFETIME,
        "seconds after a password login past which the tokens of its"
        " chain of token logins are refused",
        float,
    ],
    [
        "lease-time",
        None,
        10.0,
        "seconds after which the seats of a bouncer that stopped renewing"
        " its lease (killed) are freed; at least 2",
        float,
    ],
    [
        "metrics",
        None,
        None,
        "endpoint serving Prometheus metrics at /metrics, e.g."
        " tcp:9800:interface=127.0.0.1 [default: none]",
    ],
    [
        "http",
        None,
        None,
        "endpoint of the HTTP face: POST /token, GET /whoami, POST /logout,"
        " /login (e.g. ssl:8443:privateKey=DIR/tls/server.pem)",
    ],
]
FLAGS: list[list[Any]] = [
    ["no-tokens", None, "do not issue tokens"],
    ["bind-tokens", None, "bind tokens to the client address they were issued to"],
    ["no-throttle", None, "do not throttle failed logins"],
    [
        "insecure-permissions",
        None,
        "start even if the data directory, store or users file is"
        " readable by other users",
    ],
]
