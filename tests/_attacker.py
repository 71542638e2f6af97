"""
A hostile Perspective Broker peer for the attack suite, run as its own
process so that the test's reactor stays free for the legitimate login:

    python -m tests._attacker MODE PORT [options]

It writes C{ready} once the attack is in place, keeps it up until it is
sent SIGTERM (or C{--duration} passes), and ends with one line of JSON
statistics.  Every socket is bound to a loopback source address (127.0.0.x)
and connects to 127.0.0.1; nothing leaves the machine.

Modes:

  - C{objects}: on each connection, one banana list header for C{--items}
    items followed by that many empty lists (a few bytes that decode to a
    great many objects).
  - C{idle}: connections that never send a byte.
  - C{calls}: PB calls a stranger can make: unknown methods, wrong
    arguments, unregistered classes, bad jelly, names that are not text,
    a user name with a lone surrogate.
  - C{fuzz}: C{--messages} generated hostile messages (random banana,
    random PB commands, methods and arguments, truncated and oversized
    ones), from a seeded generator.
  - C{slowloris}: HTTP connections that send their request head one byte
    every C{--interval} seconds, never finishing it.
  - C{longline}: one HTTP request whose header line is C{--line-bytes}
    long (and never ends, with C{--unterminated}); the statistics say
    what the server answered and whether, and after how long, it closed
    the connection.

C{idle} with C{--unfinished N}: the first N connections send a PB greeting
and the first bytes of a message, never the rest.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator

#: The banana type bytes.
LIST, INT, STRING, NEG, FLOAT, LONGINT, LONGNEG, VOCAB = (
    0x80,
    0x81,
    0x82,
    0x83,
    0x84,
    0x85,
    0x86,
    0x87,
)

#: Bytes that must never reach a stranger in a server's answer: source
#: paths, failure frames, Twisted's global failure counter, tracebacks.
LEAKS = (
    b"site-packages",
    b"twisted_keycard/",
    b"_frames",
    b"\x05\x82count",
    b"Traceback (most recent",
)

KEYCARD_TYPES = (
    b"twisted_keycard.scram-sha-256",
    b"twisted_keycard.token",
    b"twisted_keycard.hmac-sha256",
    b"twisted_keycard.ssh-signature",
    b"twisted_keycard.srp-6a",
    b"twisted_keycard.password",
)

Item = bytes | int | float | list["Item"]


def header(num: int, kind: int) -> bytes:
    """
    A banana header: C{num} in base-128 digits, least significant first.
    """
    out = bytearray()
    while num:
        out.append(num & 0x7F)
        num >>= 7
    out.append(kind)
    return bytes(out)


def encode(item: Item) -> bytes:
    """
    The banana form of C{item}, as a PB peer writes it (no vocabulary).
    """
    if isinstance(item, bytes):
        return header(len(item), STRING) + item
    if isinstance(item, list):
        return header(len(item), LIST) + b"".join(encode(i) for i in item)
    if isinstance(item, float):
        return bytes([FLOAT]) + struct.pack("!d", item)
    if item >= 0:
        return header(item, INT)
    return header(-item, NEG)


#: What a PB client sends first: its dialect, then its protocol version.
GREETING = encode(b"pb") + encode([b"version", 6])


def call(
    requestID: int, method: bytes, args: list[Item], objectID: Item = b"root"
) -> bytes:
    """
    A PB message calling C{method} on the peer's object C{objectID}.
    """
    return encode(
        [b"message", requestID, objectID, method, 1, [b"tuple", *args], [b"dictionary"]]
    )


def keycard(tag: bytes, state: bytes) -> list[Item]:
    """
    The jelly of a keycard: its type tag and its packed state.
    """
    return [tag, state]


class Peer:
    """
    One raw connection from a loopback source address.
    """

    def __init__(self, port: int, source: str, timeout: float = 5.0) -> None:
        self.sock = socket.socket()
        self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.closed = False
        self.received = bytearray()

    def send(self, data: bytes) -> bool:
        """
        Send C{data}; C{False} once the server has closed the connection.
        """
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            self.close()
            return False
        return True

    def drain(self, wait: float = 0.0) -> bool:
        """
        Read what the server sent; C{False} once it closed the connection.
        """
        if self.closed:
            return False
        self.sock.settimeout(wait)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.close()
                    return False
                self.received += data
                wait = 0.0
                self.sock.settimeout(0.0)
        except (BlockingIOError, TimeoutError):
            return True
        except OSError:
            self.close()
            return False

    def leaks(self) -> list[bytes]:
        return [marker for marker in LEAKS if marker in self.received]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


def sources(spec: str) -> list[str]:
    """
    Source addresses from C{first-last} (last octets of 127.0.0.x) or a
    comma-separated list.
    """
    if "-" in spec:
        first, last = (int(n) for n in spec.split("-"))
        return [f"127.0.0.{n}" for n in range(first, last + 1)]
    return spec.split(",")


class Attack:
    """
    One attack: its mode's method runs it, and its statistics (connections
    made, refused and dropped by the server, messages sent, what leaked in
    the server's answers) are written as the last line of output.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sources = sources(args.sources)
        self.stats: dict[str, object] = {
            "mode": args.mode,
            "connections": 0,
            "refused": 0,
            "dropped": 0,
            "messages": 0,
            "leaks": [],
        }
        self.leaked: set[bytes] = set()
        self.stopping = False
        self.deadline = time.monotonic() + args.duration

    def running(self) -> bool:
        return not self.stopping and time.monotonic() < self.deadline

    def connect(self, n: int) -> Peer | None:
        source = self.sources[n % len(self.sources)]
        try:
            peer = Peer(self.args.port, source)
        except OSError:
            self.count("refused")
            return None
        self.count("connections")
        return peer

    def finish(self, peers: list[Peer]) -> None:
        leaks: set[bytes] = set()
        for peer in peers:
            peer.drain()
            leaks.update(peer.leaks())
            if peer.closed:
                self.count("dropped")
        self.stats["leaks"] = sorted(repr(m) for m in leaks | self.leaked)
        print(json.dumps(self.stats), flush=True)

    def hold(
        self, peers: list[Peer], refill: Callable[[int], Peer | None] | None = None
    ) -> None:
        """
        Keep the connections open, reading what comes, until stopped, and
        report how many are still open every second; with C{refill},
        replace each connection the server drops by a new one.
        """
        print("ready", flush=True)
        slots: list[Peer | None] = list(peers)
        while self.running():
            for n, peer in enumerate(slots):
                if peer is not None:
                    peer.drain()
                if refill is not None and (peer is None or peer.closed):
                    if peer is not None:
                        self.count("dropped")
                        peers.remove(peer)
                    slots[n] = replacement = refill(n)
                    if replacement is not None:
                        peers.append(replacement)
            open_ = sum(not p.closed for p in peers)
            print(json.dumps({"open": open_}), flush=True)
            sleepUntil(min(self.deadline, time.monotonic() + 1.0), self)

    def count(self, name: str, n: int = 1) -> None:
        value = self.stats[name]
        assert isinstance(value, int)
        self.stats[name] = value + n

    # The modes

    def objects(self) -> None:
        items = self.args.items
        payload = GREETING + header(items + 1, LIST) + bytes([LIST]) * items

        def attack(n: int) -> Peer | None:
            peer = self.connect(n)
            if peer is not None:
                peer.send(payload)
                self.count("messages")
            return peer

        peers = [p for p in (attack(n) for n in range(self.args.connections)) if p]
        self.hold(peers, attack)
        self.finish(peers)

    def idle(self) -> None:
        peers = []
        unfinished = call(1, b"login", [b"scram-sha-256", 0, [b"None"], b"n,,n=a"])
        for n in range(self.args.connections):
            peer = self.connect(n)
            if peer is not None:
                if n < self.args.unfinished:
                    peer.send(GREETING + unfinished[:12])
                    self.count("messages")
                peers.append(peer)
        self.hold(peers)
        self.finish(peers)

    def slowloris(self) -> None:
        head = b"GET / HTTP/1.1\r\nHost: localhost\r\n" + b"X-Slow: b\r\n" * 1000
        made = (self.connect(n) for n in range(self.args.connections))
        peers = [p for p in made if p]
        print("ready", flush=True)
        sent = 0
        while self.running():
            for peer in peers:
                if peer.drain():
                    peer.send(head[sent : sent + 1])
            sent += 1
            self.stats["messages"] = sent
            print(json.dumps({"open": sum(not p.closed for p in peers)}), flush=True)
            sleepUntil(min(self.deadline, time.monotonic() + self.args.interval), self)
        self.finish(peers)

    def longline(self) -> None:
        peer = self.connect(0)
        assert peer is not None
        start = time.monotonic()
        end = b"" if self.args.unterminated else b"\r\n\r\n"
        peer.send(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: "
            + b"a" * self.args.line_bytes
            + end
        )
        print("ready", flush=True)
        while self.running() and peer.drain(0.05):
            pass
        self.stats["closedAfter"] = (
            round(time.monotonic() - start, 3) if peer.closed else None
        )
        self.stats["status"] = bytes(peer.received).split(b"\r\n", 1)[0].decode()
        self.finish([peer])

    def calls(self) -> None:
        self.stream(hostileCalls(random.Random(self.args.seed)))

    def fuzz(self) -> None:
        self.stream(fuzzMessages(random.Random(self.args.seed)))

    def stream(self, messages: Iterator[bytes]) -> None:
        """
        Send C{--messages} messages, each connection greeting first and
        taking up to C{--per-connection} of them; a connection the server
        drops is replaced by a new one from the next source address.  A
        message is counted once written to a connection still open.
        """
        total = self.args.messages
        sent = 0
        n = 0
        peer: Peer | None = None
        used = 0
        readyAt = min(total, self.args.ready_after)
        announced = False
        while sent < total and self.running():
            if peer is None or peer.closed or used >= self.args.per_connection:
                if peer is not None:
                    self.retire(peer)
                peer = None
                while peer is None and self.running():
                    peer = self.connect(n)
                    n += 1
                if peer is None:
                    break
                peer.send(GREETING)
                used = 0
            # A message counts once it is written to a connection the
            # server had not closed yet.
            if not peer.drain() or not peer.send(next(messages)):
                continue
            used += 1
            sent += 1
            if not announced and sent >= readyAt:
                print("ready", flush=True)
                announced = True
        if peer is not None:
            self.retire(peer)
        self.stats["messages"] = sent
        if not announced:
            print("ready", flush=True)
        print(json.dumps({"done": sent}), flush=True)
        while self.running() and self.args.hold:
            sleepUntil(min(self.deadline, time.monotonic() + 0.5), self)
        self.finish([])

    def retire(self, peer: Peer) -> None:
        peer.drain(0.05)
        self.leaked.update(peer.leaks())
        if peer.closed:
            self.count("dropped")
        peer.close()


def sleepUntil(when: float, attack: Attack) -> None:
    while not attack.stopping and time.monotonic() < when:
        time.sleep(min(0.05, max(0.0, when - time.monotonic())))


# Generators of hostile messages


def _text(rng: random.Random, size: int = 12) -> bytes:
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(size))


def _badName(rng: random.Random) -> bytes:
    """
    A method name that is not valid UTF-8, or is very long, or is empty.
    """
    return rng.choice(
        [
            b"\xff\xfe" + _text(rng, 4),
            b"\xed\xa0\x80",  # an encoded lone surrogate: not UTF-8
            _text(rng, 2000),
            b"",
            b"login\x00",
        ]
    )


def loneSurrogateKeycard(rng: random.Random) -> list[Item]:
    """
    A keycard of a random kind whose user name (the SCRAM client-first
    message's, for SCRAM) holds a lone surrogate, as JSON can carry it.
    """
    tag = rng.choice(KEYCARD_TYPES)
    field = {
        b"twisted_keycard.scram-sha-256": b"clientFirst",
        b"twisted_keycard.token": b"presented",
        b"twisted_keycard.hmac-sha256": b"name",
        b"twisted_keycard.ssh-signature": b"name",
        b"twisted_keycard.srp-6a": b"username",
        b"twisted_keycard.password": b"username",
    }[tag]
    value = b"al\\ud800ice"
    if field == b"clientFirst":
        value = b"n,,n=" + value + b",r=" + _text(rng, 24)
    return keycard(tag, b'{"' + field + b'":"' + value + b'"}')


def randomJelly(rng: random.Random, depth: int = 0) -> Item:
    """
    A random jelly expression: plain values, jelly type tags with good and
    bad content, unregistered classes, references to nothing.
    """
    choice = rng.randrange(18 if depth < 4 else 6)
    if choice == 0:
        return rng.randrange(-(2**40), 2**40)
    if choice == 1:
        return _text(rng, rng.randrange(0, 40))
    if choice == 2:
        return rng.random() * 1e6
    if choice == 3:
        return [b"unicode", rng.choice([b"\xff\xfe", b"ok", b"\xed\xa0\x80"])]
    if choice == 4:
        return [b"None"]
    if choice == 5:
        return [b"boolean", rng.choice([b"true", b"false", b"maybe"])]
    if choice == 6:
        return [
            b"list",
            *(randomJelly(rng, depth + 1) for _ in range(rng.randrange(5))),
        ]
    if choice == 7:
        return [
            b"dictionary",
            *(
                [randomJelly(rng, depth + 1), randomJelly(rng, depth + 1)]
                for _ in range(rng.randrange(4))
            ),
        ]
    if choice == 8:
        return [rng.choice([b"module", b"class", b"function"]), b"os.system"]
    if choice == 9:
        return [b"instance", [b"class", b"os._wrap_close"], [b"dictionary"]]
    if choice == 10:
        return [b"dereference", rng.randrange(100)]
    if choice == 11:
        return [b"reference", rng.randrange(100), randomJelly(rng, depth + 1)]
    if choice == 12:
        return [_text(rng, 10) + b".Unregistered", [b"dictionary"]]
    if choice == 13:
        return [b"remote", rng.randrange(-5, 100)]
    if choice == 14:
        return loneSurrogateKeycard(rng)
    if choice == 15:
        return keycard(rng.choice(KEYCARD_TYPES), _randomState(rng))
    if choice == 16:
        return [
            b"tuple",
            *(randomJelly(rng, depth + 1) for _ in range(rng.randrange(4))),
        ]
    return [b"set", *(randomJelly(rng, depth + 1) for _ in range(rng.randrange(3)))]


def _randomState(rng: random.Random) -> bytes:
    return rng.choice(
        [
            b"{",
            b"[]",
            b'{"isAdmin":1}',
            b'{"username":7}',
            b'{"clientFirst":"' + b"x" * 5000 + b'"}',
            b'{"state":"AUTHENTICATED","avatarId":"root"}',
            b'{"id":"' + _text(rng, 32) + b'","clientFinal":"c=biws,r=x,p=AAAA"}',
            b'{"duration":1e999}',
            b"\xff\xfe",
            b'{"clientFirst":"n,,n=alice,r=' + _text(rng, 24) + b'"}',
        ]
    )


#: The kinds a first message of keycard protocol 2 names.
KINDS = tuple(tag.removeprefix(b"twisted_keycard.") for tag in KEYCARD_TYPES)


def loneSurrogateFirst(rng: random.Random) -> list[Item]:
    """
    The arguments of a protocol 2 first message of a random kind whose user
    name holds a lone surrogate (U+D800 as CESU-8 writes it: bytes that are
    not UTF-8).
    """
    name = b"al\xed\xa0\x80ice"
    kind = rng.choice(KINDS)
    value = b"n,,n=" + name + b",r=" + _text(rng, 24) if kind == KINDS[0] else name
    return [kind, 0, [b"None"], value]


def randomFirst(rng: random.Random) -> list[Item]:
    """
    The arguments of a protocol 2 first message of a real or made-up kind,
    random flags, and random values.
    """
    kind = rng.choice([*KINDS, _text(rng, 12), b""])
    values = [randomJelly(rng) for _ in range(rng.randrange(5))]
    return [kind, rng.choice([0, 1, 3, -1, 2**40]), [b"None"], *values]


def hostileCalls(rng: random.Random) -> Iterator[bytes]:
    """
    The calls of issue 11's item 6: unknown methods, wrong arguments,
    unregistered classes, a lone surrogate in a user name; first messages
    and answers of keycard protocol 2 with made-up kinds, exchange numbers
    and values; and protocol 1's C{login(keycard, mind)}.
    """
    requestID = 0
    while True:
        requestID += 1
        kind = rng.randrange(9)
        if kind == 0:
            yield call(requestID, b"remote_" + _text(rng, 8), [])
        elif kind == 1:
            yield call(requestID, rng.choice([b"login", b"keycardClasses"]), [1, 2, 3])
        elif kind == 2:
            yield call(
                requestID,
                b"login",
                [[_text(rng, 8) + b".Unregistered", b"{}"], [b"None"]],
            )
        elif kind == 3:
            yield call(requestID, b"login", [loneSurrogateKeycard(rng), [b"None"]])
        elif kind == 4:
            yield call(requestID, _badName(rng), [])
        elif kind == 5:
            yield call(requestID, b"login", loneSurrogateFirst(rng))
        elif kind == 6:
            yield call(requestID, b"login", randomFirst(rng))
        elif kind == 7:
            values = [randomJelly(rng) for _ in range(rng.randrange(4))]
            yield call(requestID, b"answer", [rng.randrange(-2, 20), *values])
        else:
            yield call(requestID, b"login", [randomJelly(rng), randomJelly(rng)])


def _randomBanana(rng: random.Random) -> bytes:
    size = rng.randrange(1, 64)
    return bytes(rng.randrange(256) for _ in range(size))


def fuzzMessages(rng: random.Random) -> Iterator[bytes]:
    """
    Hostile messages of every sort, mixed: those of L{hostileCalls}, random
    bytes, other PB commands, truncated and oversized messages.
    """
    calls = hostileCalls(rng)
    requestID = 10_000
    hostile: Callable[[], bytes] = lambda: next(calls)  # noqa: E731
    makers: list[Callable[[], bytes]] = [
        # Calls that reach the login methods, about a third of the mix.
        *[hostile] * 8,
        lambda: _randomBanana(rng),
        lambda: encode([rng.choice(_COMMANDS), *(randomJelly(rng) for _ in range(3))]),
        lambda: encode([b"answer", rng.randrange(1000), randomJelly(rng)]),
        lambda: encode([b"error", rng.randrange(1000), randomJelly(rng)]),
        lambda: encode([b"decref", rng.randrange(-5, 1000)]),
        lambda: encode([b"version", rng.randrange(100)]),
        lambda: encode(_text(rng, 5)),
        lambda: encode(rng.randrange(1000)),
        lambda: call(
            requestID, b"login", [randomJelly(rng), randomJelly(rng)], randomJelly(rng)
        ),
        lambda: encode(
            [
                b"cachemessage",
                1,
                rng.randrange(100),
                b"login",
                1,
                [b"tuple"],
                [b"dictionary"],
            ]
        ),
        lambda: next(calls)[: rng.randrange(1, 20)],
        lambda: header(rng.randrange(10**6, 10**8), rng.choice([LIST, STRING])),
        lambda: header(rng.randrange(2000, 5000), LIST) + bytes([LIST]) * 2000,
        lambda: bytes([LIST]) * 30 + header(40, LIST),
        lambda: bytes([VOCAB]) + header(rng.randrange(200), VOCAB),
        lambda: bytes([0x88 + rng.randrange(0x70)]),
    ]
    while True:
        yield rng.choice(makers)()


_COMMANDS = [
    b"message",
    b"cachemessage",
    b"answer",
    b"error",
    b"decref",
    b"decache",
    b"uncache",
    b"didNotUnderstand",
    b"nonsense",
    b"version",
]


def raiseFileLimit(wanted: int) -> None:
    """
    Raise this process's soft limit on open files to C{wanted}, if the hard
    limit allows.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests._attacker")
    p.add_argument(
        "mode", choices=["objects", "idle", "calls", "fuzz", "slowloris", "longline"]
    )
    p.add_argument("port", type=int)
    p.add_argument("--sources", default="10-19", help="last octets, or addresses")
    p.add_argument("--connections", type=int, default=6)
    p.add_argument("--items", type=int, default=600_000)
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--per-connection", type=int, default=24)
    p.add_argument("--ready-after", type=int, default=200)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--hold", action="store_true", help="stay until stopped")
    p.add_argument("--unfinished", type=int, default=0)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--line-bytes", type=int, default=17 * 1024)
    p.add_argument("--unterminated", action="store_true", help="no CRLF after it")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    raiseFileLimit(args.connections + 64)
    attack = Attack(args)

    def stop(signum: int, frame: object) -> None:
        attack.stopping = True

    signal.signal(signal.SIGTERM, stop)
    getattr(attack, args.mode)()


if __name__ == "__main__":
    main(sys.argv[1:])
