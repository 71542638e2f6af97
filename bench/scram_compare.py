"""
P8: one SCRAM-SHA-256 exchange, our hand-written implementation against
scramp's, side by side.

The server side, from the client-first message to the server-final one,
with the client's messages made beforehand (so only the server's work is
timed): ours through its public checker API, as a bouncer drives it
(C{SCRAMVerifiers.prime(keycard)}, C{exchange.challenge(keycard)},
C{exchange.answer(keycard)}, C{requestAvatarId(exchange)},
C{exchange.conclude(keycard)}); scramp's through C{ScramMechanism.
make_server(auth_fn)} and its four calls, with the same verifier's salt,
StoredKey, ServerKey and iteration count.  Keycards are built before the
clock starts (the wire builds them, whichever implementation checks them);
both servers use a fixed server nonce (RFC 7677's), so neither pays for
random bytes.  The client side: our C{SCRAMAnswerer} with a warm
C{SCRAMKeyCache} against scramp's C{ScramClient}, which has no key cache:
its key derivation is cached here by replacing C{scramp.core.hi} with a
memo (the fairest we can do), and measured as shipped beside our answerer
with an empty cache.

CPU is C{time.process_time_ns} over batches, the median of the batches,
the measures interleaved; instructions are counted by
C{valgrind --tool=callgrind}, collected only inside the measured loops
(C{--toggle-collect=functools_reduce}, one dump per loop), the loop's own
instructions (an empty step) taken off.

    python bench/run.py --only P8                    # the figures
    python -m bench.scram_compare child quick|full   # CPU, one JSON line
    python -m bench.scram_compare callgrind [N]      # instructions, JSON
    python -m bench.scram_compare profile [N]        # where our server's time goes
    python -m bench.scram_compare features           # the feature checks
"""

from __future__ import annotations

import functools
import gc
import glob
import hashlib
import hmac
import inspect
import json
import os
import secrets
import shutil
import stringprep
import subprocess
import sys
import tempfile
import time
import unicodedata
from base64 import b64decode
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import attrs
import scramp
import scramp.core
import scramp.utils
from passlib.utils import saslprep as passlibSaslprep
from twisted.internet.defer import Deferred

from twisted_keycard.error import (
    KeycardRefused,
    ProtocolError,
    ServerAuthenticationFailed,
)
from twisted_keycard.keycard import TLS_EXPORTER, TLS_SERVER_END_POINT, ClientChannel
from twisted_keycard.scram import (
    ClientFinal,
    ClientFirst,
    SCRAMAnswerer,
    SCRAMKeyCache,
    SCRAMKeycard,
    SCRAMVerifiers,
    ServerFinal,
    ServerFirst,
    Verifier,
    b64,
)

from ._common import ROOT, Figure, figure, inChild

MECH = "SCRAM-SHA-256"
PLUS = "SCRAM-SHA-256-PLUS"

# RFC 7677, section 3.
USER, PASSWORD = "user", "pencil"
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
ITERATIONS = 4096
RFC_SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

#: A name nobody has, as long as USER: scramp's SASLprep of a name costs
#: by its length (each character looked up in 12 tables, in Python).
UNKNOWN = "anon"

#: Channel binding data of a connection (the length of a SHA-256
#: certificate hash, and of RFC 9266's exporter output).
BINDING = bytes(range(32))

MOCK_SECRET = b"bench mock secret, 32 bytes long"

NOTES = [
    "P8: the server side of one SCRAM-SHA-256 exchange, client-first to"
    " server-final, the client's messages made beforehand: ours"
    " SCRAMVerifiers.prime/challenge/answer/requestAvatarId/conclude on"
    " keycards built before timing; scramp 1.5 ScramMechanism.make_server"
    "(auth_fn) set_client_first/get_server_first/set_client_final/"
    "get_server_final with the same salt, keys and 4096 iterations; both"
    " with a fixed server nonce; 'mock wrapper': an auth_fn that answers an"
    " unknown name with a salt made from a secret (mockingAuth); CPU:"
    " process_time over batches, median; instructions: callgrind inside the"
    " loops only, the empty loop's instructions taken off",
]


def fired(d: Deferred[Any]) -> Any:
    """
    The result of a L{Deferred} that has fired; a failure is raised.
    """
    results: list[Any] = []
    d.addBoth(results.append)
    (result,) = results
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result


def mockingAuth(
    verifiers: dict[str, tuple[bytes, bytes, bytes, int]],
    key: bytes,
    iterations: int = ITERATIONS,
    saltLength: int = 16,
) -> Callable[[str], tuple[bytes, bytes, bytes, int]]:
    """
    The wrapper scramp's server needs to prime a mock exchange for an
    unknown name, as PostgreSQL and our C{SCRAMVerifiers} do: an C{auth_fn}
    whose answer for an unknown name has a salt stable per name (HMAC of the
    name under a secret key), the usual iteration count and keys nobody
    holds, so the exchange runs to the proof check and fails there as a
    wrong password does.  The mock salt is made for every name, so a known
    one costs the same.
    """
    stored, server = secrets.token_bytes(32), secrets.token_bytes(32)

    def authFn(username: str) -> tuple[bytes, bytes, bytes, int]:
        name = b"\0\0\0\0" + username.encode("utf-8")
        salt = hmac.digest(key, name, "sha256")[:saltLength]
        return verifiers.get(username, (salt, stored, server, iterations))

    return authFn


@contextmanager
def scrampKeysCached() -> Iterator[None]:
    """
    scramp's client with its key derivation (C{scramp.core.hi}, PBKDF2)
    remembered per password, salt and iteration count: scramp has no cache
    of its own, so this is the closest to our warm C{SCRAMKeyCache}.
    """
    original = scramp.core.hi
    memo: dict[tuple[Any, ...], bytes] = {}

    def hi(hf: Any, password: bytes, salt: bytes, iterations: Any) -> bytes:
        key = (hf, password, salt, int(iterations))
        found = memo.get(key)
        if found is None:
            found = memo[key] = original(hf, password, salt, iterations)
        return found

    scramp.core.hi = hi
    try:
        yield
    finally:
        scramp.core.hi = original


class Exchanges:
    """
    The messages of each kind of exchange, made once by our client against
    our server with fixed nonces, and the two servers and clients that
    replay them.
    """

    def __init__(self) -> None:
        self.verifier = Verifier.fromPassword(PASSWORD, ITERATIONS, SALT)
        v = self.verifier
        self.info = (v.salt, v.storedKey, v.serverKey, v.iterations)
        self.checker = SCRAMVerifiers(
            {USER: v}, mockKey=MOCK_SECRET, nonceFactory=lambda: SERVER_NONCE
        )
        self.plainAuth = {USER: self.info}.get
        self.mockAuth = mockingAuth({USER: self.info}, MOCK_SECRET)
        self.mech = scramp.ScramMechanism(MECH)
        self.plus = scramp.ScramMechanism(PLUS)
        self.cache = SCRAMKeyCache()
        # Each case: the client's two messages, and the channel binding data
        # the requester records.
        self.cases: dict[str, tuple[str, str, dict[str, bytes] | None]] = {
            "known": self.messages(USER, PASSWORD),
            "wrong": self.messages(USER, "not the password"),
            "unknown": self.messages(UNKNOWN, PASSWORD),
            "endpoint": self.messages(
                USER, PASSWORD, {TLS_SERVER_END_POINT: BINDING}, TLS_SERVER_END_POINT
            ),
            "exporter": self.messages(
                USER, PASSWORD, {TLS_EXPORTER: BINDING}, TLS_EXPORTER
            ),
        }
        first, final, _ = self.cases["known"]
        self.serverFirst = f"r={CLIENT_NONCE}{SERVER_NONCE},s={b64(SALT)},i=4096"
        if self.ours(SCRAMKeycard(clientFirst=first, clientFinal=final)) != (
            RFC_SERVER_FINAL
        ):
            raise AssertionError("our server does not give RFC 7677's answer")

    def messages(
        self,
        user: str,
        password: str,
        bindings: dict[str, bytes] | None = None,
        kind: str | None = None,
    ) -> tuple[str, str, dict[str, bytes] | None]:
        """
        The client-first and client-final messages of our client logging in
        to our server, over a channel with C{bindings}.
        """
        answerer = SCRAMAnswerer(
            user,
            password,
            nonce=CLIENT_NONCE,
            bindingTypes=(kind,) if kind else (TLS_EXPORTER, TLS_SERVER_END_POINT),
        )
        channel = ClientChannel(bindings, True) if bindings else None
        keycard = answerer.startBound(channel)
        assert isinstance(keycard, SCRAMKeycard)
        keycard.channelBindings = bindings
        exchange = fired(self.checker.prime(keycard))
        exchange.challenge(keycard)
        answerer.answer(keycard)
        assert keycard.clientFirst is not None and keycard.clientFinal is not None
        return keycard.clientFirst, keycard.clientFinal, bindings

    def keycards(self, case: str, count: int) -> list[SCRAMKeycard]:
        """
        Fresh keycards as the wire delivers them (each parses its message
        once), holding both of the client's messages.
        """
        first, final, bindings = self.cases[case]
        return [
            SCRAMKeycard(clientFirst=first, clientFinal=final, channelBindings=bindings)
            for _ in range(count)
        ]

    # Our server, one exchange: what a bouncer does with the two messages.

    def ours(self, keycard: SCRAMKeycard) -> str | None:
        checker = self.checker
        exchange = fired(checker.prime(keycard))
        exchange.challenge(keycard)
        exchange.answer(keycard)
        results: list[Any] = []
        checker.requestAvatarId(exchange).addBoth(results.append)
        if results[0] != USER:
            return None
        exchange.conclude(keycard)
        return keycard.serverFinal

    # scramp's server, one exchange.

    def scramp(self, case: str, authFn: Callable[[str], Any]) -> Callable[[], str]:
        first, final, bindings = self.cases[case]
        mech = self.mech
        binding = None
        if bindings:
            ((kind, data),) = bindings.items()
            mech, binding = self.plus, (kind, data)

        def exchange() -> str:
            server = mech.make_server(
                authFn, channel_binding=binding, s_nonce=SERVER_NONCE
            )
            server.set_client_first(first)
            server.get_server_first()
            # Not contextlib.suppress: a context manager would be timed too.
            try:  # noqa: SIM105
                server.set_client_final(final)
            except scramp.ScramException:
                pass
            result: str = server.get_server_final()
            return result

        return exchange

    # The clients, one exchange each, the server's messages given.

    def oursClient(self, cache: SCRAMKeyCache | None) -> str | None:
        answerer = SCRAMAnswerer(USER, PASSWORD, nonce=CLIENT_NONCE, cache=cache)
        keycard = answerer.start()
        assert isinstance(keycard, SCRAMKeycard)
        keycard.serverFirst = self.serverFirst
        answerer.answer(keycard)
        keycard.serverFinal = RFC_SERVER_FINAL
        answerer.finish(keycard)
        return keycard.clientFinal

    def scrampClient(self) -> str:
        client = scramp.ScramClient([MECH], USER, PASSWORD, c_nonce=CLIENT_NONCE)
        client.get_client_first()
        client.set_server_first(self.serverFirst)
        final: str = client.get_client_final()
        client.set_server_final(RFC_SERVER_FINAL)
        return final

    def floor(self) -> bytes:
        """
        The server's cryptography alone (RFC 5802, section 3): the client
        signature, the proof's key hashed and compared, the server
        signature, over the AuthMessage.
        """
        message = self.authMessage
        signature = hmac.digest(self.verifier.storedKey, message, "sha256")
        mixed = int.from_bytes(self.proof, "big") ^ int.from_bytes(signature, "big")
        key = mixed.to_bytes(32, "big")
        if not hmac.compare_digest(
            hashlib.sha256(key).digest(), self.verifier.storedKey
        ):
            raise AssertionError("the floor's proof does not check")
        return hmac.digest(self.verifier.serverKey, message, "sha256")

    @functools.cached_property
    def authMessage(self) -> bytes:
        first, final, _ = self.cases["known"]
        without = final.rpartition(",p=")[0]
        return f"{first[3:]},{self.serverFirst},{without}".encode()

    @functools.cached_property
    def proof(self) -> bytes:
        return b64decode(self.cases["known"][1].rpartition(",p=")[2])

    def measures(self) -> dict[str, Measure]:
        """
        Every measure, each checked once to end as it should.
        """

        def ours(case: str, expect: str | None) -> Measure:
            return Measure(lambda n: self.keycards(case, n), self.ours, expect)

        def plain(fn: Callable[[], object], expect: str, **kw: bool) -> Measure:
            return Measure(lambda n: [None] * n, lambda _: fn(), expect, **kw)

        mock, refused, signed = self.mockAuth, "e=invalid-proof", "v="
        measures = {
            "ours known": ours("known", RFC_SERVER_FINAL),
            "scramp known": plain(self.scramp("known", self.plainAuth), signed),
            "scramp+mock known": plain(self.scramp("known", mock), signed),
            "ours wrong": ours("wrong", None),
            "scramp+mock wrong": plain(self.scramp("wrong", mock), refused),
            "ours unknown": ours("unknown", None),
            "scramp+mock unknown": plain(self.scramp("unknown", mock), refused),
            "ours endpoint": ours("endpoint", signed),
            "scramp+mock endpoint": plain(self.scramp("endpoint", mock), signed),
            "ours exporter": ours("exporter", signed),
            "floor": plain(self.floor, ""),
            "ours client warm": plain(lambda: self.oursClient(self.cache), "c="),
            "scramp client cached": plain(self.scrampClient, "c=", cached=True),
            "ours client cold": plain(lambda: self.oursClient(None), "c=", slow=True),
            "scramp client": plain(self.scrampClient, "c=", slow=True),
        }
        for name, measure in measures.items():
            with measure.context():
                result = measure.step(measure.make(1)[0])
            if not (
                result == measure.expect
                or (measure.expect and str(result).startswith(measure.expect))
                or (measure.expect == "" and result)
            ):
                raise AssertionError(f"{name} ends with {result!r}")
        return measures


@attrs.frozen
class Measure:
    """
    One measure: C{make(n)} makes a batch's inputs (untimed), C{step} takes
    one of them, and ends with C{expect} (or a text starting with it).

    @ivar cached: run with scramp's key derivation cached.
    @ivar slow: a key derivation each step: batches of a twentieth.
    """

    make: Callable[[int], list[Any]]
    step: Callable[[Any], Any]
    expect: str | None
    cached: bool = False
    slow: bool = False

    def context(self) -> AbstractContextManager[None]:
        return scrampKeysCached() if self.cached else nullcontext()

    def size(self, batch: int) -> int:
        return max(1, batch // 20) if self.slow else batch


def timeBatch(measure: Measure, count: int) -> float:
    """
    CPU microseconds per step over a batch of C{count}.
    """
    items = measure.make(count)
    gc.collect()
    with measure.context():
        measure.step(measure.make(1)[0])
        start = time.process_time_ns()
        for item in items:
            measure.step(item)
        ns = time.process_time_ns() - start
    return ns / count / 1000


def child(quick: bool) -> None:
    """
    Time every measure in this process, interleaved (each round starting
    one further along), and print the samples (microseconds per exchange)
    as one JSON line.
    """
    measures = Exchanges().measures()
    runs, batch = (5, 400) if quick else (21, 2000)
    names = list(measures)
    for name in names:
        timeBatch(measures[name], measures[name].size(200))
    results: dict[str, list[float]] = {name: [] for name in names}
    for round in range(runs):
        shift = round % len(names)
        for name in names[shift:] + names[:shift]:
            measure = measures[name]
            results[name].append(timeBatch(measure, measure.size(batch)))
    print(json.dumps(results), flush=True)


def callgrindChild(count: int) -> None:
    """
    Run an empty loop, then every measure, each once inside
    C{functools.reduce} (callgrind collects there only, and dumps after
    each), and print their names and step counts in order.
    """
    measures = Exchanges().measures()
    order, counts = ["loop"], {"loop": count}
    functools.reduce(lambda _, item: None, [None] * count, None)
    for name, measure in measures.items():
        items = measure.make(measure.size(count))
        with measure.context():
            measure.step(measure.make(1)[0])
            functools.reduce(lambda _, item, m=measure: m.step(item), items, None)
        order.append(name)
        counts[name] = len(items)
    print(json.dumps({"order": order, "counts": counts}), flush=True)


def callgrind(count: int) -> dict[str, float] | None:
    """
    Instructions per step of every measure, counted by callgrind in a
    child process, the empty loop's taken off; C{None} without valgrind.
    """
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    with tempfile.TemporaryDirectory(prefix="keycard-callgrind-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        done = subprocess.run(
            [
                valgrind,
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=functools_reduce",
                "--dump-after=functools_reduce",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.scram_compare",
                "cgchild",
                str(count),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "0"},
        )
        told = json.loads(done.stdout.strip().splitlines()[-1])
        dumps = sorted(glob.glob(out + ".*"), key=lambda p: int(p.rpartition(".")[2]))
        # Any earlier call of reduce (at import) dumped before ours.
        totals = [_instructions(path) for path in dumps[-len(told["order"]) :]]
    per = {
        name: total / told["counts"][name]
        for name, total in zip(told["order"], totals, strict=True)
    }
    loop = per.pop("loop")
    return {name: value - loop for name, value in per.items()}


def _instructions(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise ValueError(f"no summary in {path}")


#: Figure rows: the measure of ours, of scramp, and what the row says.
ROWS = [
    (
        "ours known",
        "scramp known",
        "server, known user, right proof (scramp: dict auth_fn)",
    ),
    (
        "ours known",
        "scramp+mock known",
        "server, known user, right proof (scramp: mock wrapper)",
    ),
    (
        "ours wrong",
        "scramp+mock wrong",
        "server, known user, wrong proof (scramp: mock wrapper)",
    ),
    (
        "ours unknown",
        "scramp+mock unknown",
        "server, unknown user, mock exchange (scramp: mock wrapper)",
    ),
    (
        "ours endpoint",
        "scramp+mock endpoint",
        "server, p=tls-server-end-point, right proof (scramp: mock wrapper)",
    ),
    (
        "ours exporter",
        None,
        "server, p=tls-exporter, right proof (scramp: not supported)",
    ),
    ("floor", None, "server floor: 2 HMAC-SHA-256, 1 SHA-256, xor, compare"),
    (
        "ours client warm",
        "scramp client cached",
        "client, keys cached (ours: warm SCRAMKeyCache; scramp: hi memoized)",
    ),
    (
        "ours client cold",
        "scramp client",
        "client, keys derived (PBKDF2 4096) every login (scramp as shipped)",
    ),
]


def run(quick: bool) -> list[Figure]:
    cpu = inChild("bench.scram_compare", "quick" if quick else "full")
    figures = [
        figure(
            "P8",
            f"{row}: CPU/exchange",
            cpu[ours],
            cpu[peer] if peer else None,
            "us",
            higherIsBetter=False,
        )
        for ours, peer, row in ROWS
    ]
    counted = callgrind(100 if quick else 400)
    if counted is None:
        NOTES.append("P8: valgrind not found: no instruction counts")
    else:
        figures.extend(
            figure(
                "P8",
                f"{row}: instructions",
                [counted[ours]],
                [counted[peer]] if peer else None,
                "instr",
                higherIsBetter=False,
            )
            for ours, peer, row in ROWS
        )
    NOTES.extend(f"P8 feature: {line}" for line in features())
    return figures


# The profile of our server's exchange.


def profile(count: int) -> None:
    """
    Print where our server's time goes in C{count} exchanges of a known
    user, sampled by py-spy from outside the process (no profiler in the
    process to inflate small calls): functions by own time, kinds of work,
    the exchange's steps with what they call; then each piece timed alone.
    """
    spy = shutil.which("py-spy") or shutil.which(
        "py-spy", path=os.path.dirname(sys.executable)
    )
    if spy is None:
        print("# py-spy not found (pip install py-spy): the pieces alone only")
    else:
        with tempfile.TemporaryDirectory(prefix="keycard-spy-") as tmp:
            out = os.path.join(tmp, "stacks.txt")
            subprocess.run(
                [
                    spy,
                    "record",
                    "--rate",
                    "1000",
                    "--format",
                    "raw",
                    "--output",
                    out,
                    "--",
                    sys.executable,
                    "-m",
                    "bench.scram_compare",
                    "spin",
                    str(count),
                ],
                capture_output=True,
                cwd=ROOT,
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            with open(out) as f:
                stacks = [_stack(line) for line in f]
        printProfile(
            [(f, n) for f, n in stacks if any(x.startswith(SPIN + " ") for x in f)]
        )
    print("# each piece alone, no profiler (us per call, best of 5 x 20,000)")
    for name, us in pieces(Exchanges()):
        print(f"{us:>7.2f}  {name}")


#: The frame of the profiled loop's step (see L{spin}).
SPIN = "Exchanges.ours"


def spin(count: int) -> None:
    """
    C{count} exchanges of our server, for a profiler to watch.
    """
    exchanges = Exchanges()
    for done in range(0, count, 2000):
        for keycard in exchanges.keycards("known", min(2000, count - done)):
            exchanges.ours(keycard)


def _stack(line: str) -> tuple[list[str], int]:
    """
    The functions of one line of py-spy's raw output, outermost first,
    with their files and without line numbers, and its samples.
    """
    text, _, samples = line.rstrip().rpartition(" ")
    frames = []
    for frame in text.split(";"):
        name, _, where = frame.partition(" (")
        frames.append(f"{name} ({where.rpartition(':')[0]})")
    return frames, int(samples)


#: Kinds of work, by the function or file (first match wins).
KINDS = [
    ("the bench's own loop (not the library)", ("(bench/",)),
    (
        "HMAC-SHA-256 and SHA-256 (C, through hmac.digest and hashlib)",
        ("(hmac.py)", "sha256 (", "xor (", "hmacSha256 (", "mockBytes ("),
    ),
    (
        "base64 (binascii, and unb64's pattern and round trip)",
        ("b64 (", "unb64 (", "bindingAttribute ("),
    ),
    (
        "parsing and checking the client's messages",
        (
            "_attributes (",
            ".parse (",
            "checkNonce (",
            "unescapeName (",
            "gs2Header (",
            "checkOffer (",
            "bindingType (",
            "serverBinding (",
            "parsedClientFirst (",
            "_scram (",
        ),
    ),
    (
        "writing messages and the AuthMessage",
        (".format (", ".bare (", ".withoutProof (", "authMessage (", "escapeName ("),
    ),
    (
        "attrs objects and their validators (Verifier, ServerFirst, exchange)",
        ("(attr/", "<attrs generated", "_positive (", "_nonEmpty (", "_key ("),
    ),
    (
        "the exchange's lifecycle (context managers, enum hashing)",
        ("ExchangeLifecycle.", "(contextlib.py)", "(enum.py)"),
    ),
    ("Deferreds", ("(twisted/internet/defer.py)",)),
    (
        "verifiers look-up, the mock's shape",
        (
            "(twisted_keycard/_files.py)",
            "(twisted_keycard/_mocks.py)",
            "(typing.py)",
            "(abc.py)",
        ),
    ),
]

#: The exchange's steps, as the bouncer takes them.
STEPS = [
    "SCRAMVerifiers.prime",
    "SCRAMExchange.challenge",
    "SCRAMExchange.answer",
    "SCRAMVerifiers.requestAvatarId",
    "SCRAMExchange.conclude",
]


def printProfile(stacks: list[tuple[list[str], int]]) -> None:
    """
    Print the profile of L{spin}'s exchanges from py-spy's stacks.
    """
    total = sum(n for _, n in stacks)
    own: dict[str, int] = {}
    kinds: dict[str, int] = {}
    steps = dict.fromkeys(STEPS, 0)
    for frames, n in stacks:
        leaf = frames[-1]
        own[leaf] = own.get(leaf, 0) + n
        kind = next(
            (k for k, marks in KINDS if any(m in leaf for m in marks)),
            "the steps' own lines (_server.py) and the rest",
        )
        kinds[kind] = kinds.get(kind, 0) + n
        for step in STEPS:
            if any(frame.startswith(step + " ") for frame in frames):
                steps[step] += n
    print(f"# py-spy, {total:,} samples in our server's exchanges")
    print("# own time by function (the C it calls included)")
    for name, n in sorted(own.items(), key=lambda item: -item[1])[:20]:
        print(f"{n / total:>6.1%}  {name}")
    print("# own time by kind of work")
    for name, n in sorted(kinds.items(), key=lambda item: -item[1]):
        print(f"{n / total:>6.1%}  {name}")
    print("# the steps, with what they call")
    for name, n in steps.items():
        print(f"{n / total:>6.1%}  {name}")


def pieces(exchanges: Exchanges) -> list[tuple[str, float]]:
    """
    The pieces of our server's exchange, each timed alone.
    """
    first, final, _ = exchanges.cases["known"]
    parsedFirst = ClientFirst.parse(first)
    serverFirst = ServerFirst(
        CLIENT_NONCE + SERVER_NONCE, exchanges.verifier.salt, ITERATIONS
    )
    v = exchanges.verifier
    signature = exchanges.floor()
    key = MOCK_SECRET

    def succeedAndRead() -> Any:
        d: Deferred[int] = Deferred()
        d.callback(1)
        return fired(d)

    checks: list[tuple[str, Callable[[], object]]] = [
        (
            "the whole exchange (prime to conclude)",
            lambda: exchanges.ours(exchanges.keycards("known", 1)[0]),
        ),
        (
            "  of which a keycard made (not timed in P8)",
            lambda: exchanges.keycards("known", 1),
        ),
        ("ClientFirst.parse(client-first)", lambda: ClientFirst.parse(first)),
        ("ClientFinal.parse(client-final)", lambda: ClientFinal.parse(final)),
        ("ServerFirst(...) made", lambda: ServerFirst(serverFirst.nonce, v.salt, 4096)),
        ("ServerFirst.format() (b64 of the salt; done twice)", serverFirst.format),
        ("ClientFirst.bare (escapes the name again)", lambda: parsedFirst.bare),
        (
            "Verifier(...) made with its validators (the mock, every login)",
            lambda: Verifier(
                iterations=4096,
                salt=v.salt,
                storedKey=v.storedKey,
                serverKey=v.serverKey,
            ),
        ),
        (
            "the mock salt: one HMAC-SHA-256",
            lambda: hmac.digest(key, b"\0\0\0\0user", "sha256"),
        ),
        (
            "ServerFinal(signature=...).format()",
            lambda: ServerFinal(signature=signature).format(),
        ),
        ("b64(32 bytes)", lambda: b64(signature)),
        ("a fired Deferred made and read", succeedAndRead),
        ("the floor: 2 HMAC, 1 SHA-256, xor, compare", exchanges.floor),
    ]
    results = []
    for name, fn in checks:
        best = min(_timeit(fn, 20_000) for _ in range(5))
        results.append((name, best))
    return results


def _timeit(fn: Callable[[], object], count: int) -> float:
    gc.collect()
    start = time.process_time_ns()
    for _ in range(count):
        fn()
    return (time.process_time_ns() - start) / count / 1000


# The features, checked by running them.


def _outcome(fn: Callable[[], object]) -> str:
    """
    What C{fn} did: C{"ok"}, or the exception it raised, shortened.
    """
    try:
        fn()
    except (
        scramp.ScramException,
        ProtocolError,
        ServerAuthenticationFailed,
        KeycardRefused,
        ValueError,
    ) as e:
        return f"refuses ({type(e).__name__}: {str(e)[:70] or '-'})"
    return "takes it"


def features() -> list[str]:
    """
    Each feature, as ours and scramp do it, found by running them.
    """
    exchanges = Exchanges()
    return [
        *channelBinding(exchanges),
        *mocks(exchanges),
        *strictness(exchanges),
        *saslprepRules(exchanges),
    ]


def ourServerLogin(
    checker: SCRAMVerifiers,
    keycard: SCRAMKeycard,
    answer: Callable[[SCRAMKeycard], object],
) -> str:
    """
    Our server's exchange for the client-first message in C{keycard}, the
    client answering the challenge with C{answer(keycard)}.

    @return: the server-final message.
    @raise ProtocolError: for a message refused.
    @raise KeycardRefused: for a wrong proof or an unknown user.
    """
    exchange = fired(checker.prime(keycard))
    exchange.challenge(keycard)
    answer(keycard)
    exchange.answer(keycard)
    fired(checker.requestAvatarId(exchange))
    exchange.conclude(keycard)
    assert keycard.serverFinal is not None
    return keycard.serverFinal


def scrampAnswers(client: Any) -> Callable[[SCRAMKeycard], None]:
    """
    scramp's client answering the challenge in a keycard.
    """

    def answer(keycard: SCRAMKeycard) -> None:
        client.set_server_first(keycard.serverFirst)
        keycard.clientFinal = client.get_client_final()

    return answer


def scrampLogin(server: Any, client: Any) -> tuple[str | None, str]:
    """
    scramp's server and client, one exchange.

    @return: the server-first message (C{None} if the server stopped at the
        client-first one) and the server-final message (C{e=...} for a
        refusal).
    """
    serverFirst = None
    try:
        server.set_client_first(client.get_client_first())
        serverFirst = server.get_server_first()
        client.set_server_first(serverFirst)
        server.set_client_final(client.get_client_final())
    except scramp.ScramException:
        if server.error is None:
            raise
    final: str = server.get_server_final()
    if final.startswith("v="):
        client.set_server_final(final)
    return serverFirst, final


def channelBinding(exchanges: Exchanges) -> list[str]:
    """
    Each channel binding type between our client and server, scramp's
    server and our client, and scramp's client and our server, the same 32
    bytes of binding data on both ends.
    """
    lines = []
    for kind in (TLS_EXPORTER, TLS_SERVER_END_POINT):
        bindings = {kind: BINDING}

        def ourClient(kind: str = kind) -> tuple[SCRAMAnswerer, SCRAMKeycard]:
            answerer = SCRAMAnswerer(
                USER, PASSWORD, bindingTypes=(kind,), cache=exchanges.cache
            )
            keycard = answerer.startBound(ClientChannel({kind: BINDING}, True))
            assert isinstance(keycard, SCRAMKeycard)
            if not str(keycard.clientFirst).startswith(f"p={kind},,"):
                raise ValueError(f"our client does not bind: {keycard.clientFirst}")
            return answerer, keycard

        def ours(b: dict[str, bytes] = bindings) -> None:
            answerer, keycard = ourClient()
            keycard.channelBindings = b
            ourServerLogin(exchanges.checker, keycard, answerer.answer)
            answerer.finish(keycard)

        def scrampServer(kind: str = kind) -> None:
            server = exchanges.plus.make_server(
                exchanges.plainAuth, channel_binding=(kind, BINDING)
            )
            answerer, keycard = ourClient()
            server.set_client_first(keycard.clientFirst)
            keycard.serverFirst = server.get_server_first()
            answerer.answer(keycard)
            server.set_client_final(keycard.clientFinal)
            keycard.serverFinal = server.get_server_final()
            answerer.finish(keycard)

        def scrampClient(kind: str = kind, b: dict[str, bytes] = bindings) -> None:
            client = scramp.ScramClient([PLUS], USER, PASSWORD, (kind, BINDING))
            keycard = SCRAMKeycard(clientFirst=client.get_client_first())
            keycard.channelBindings = b
            final = ourServerLogin(exchanges.checker, keycard, scrampAnswers(client))
            client.set_server_final(final)

        lines.append(
            f"{kind}: our client and server {_outcome(ours)}; scramp's server"
            f" (our client) {_outcome(scrampServer)}; scramp's client (our"
            f" server) {_outcome(scrampClient)}"
        )
    return lines


def _salt(serverFirst: str | None) -> str:
    if serverFirst is None:
        return "none sent"
    fields = dict(part.split("=", 1) for part in serverFirst.split(","))
    return f"{len(b64decode(fields['s']))}-byte salt, i={fields['i']}"


def mocks(exchanges: Exchanges) -> list[str]:
    """
    An unknown user against scramp's server, with and without the mock
    wrapper, and against ours; verifiers of unusual shapes.
    """
    mech = exchanges.mech

    def scrampRun(auth: Any, user: str, password: str) -> tuple[str | None, str]:
        server = mech.make_server(auth, s_nonce=SERVER_NONCE)
        client = scramp.ScramClient([MECH], user, password, c_nonce=CLIENT_NONCE)
        return scrampLogin(server, client)

    def oursRun(user: str, password: str) -> tuple[str | None, str]:
        answerer = SCRAMAnswerer(user, password, nonce=CLIENT_NONCE)
        keycard = answerer.start()
        assert isinstance(keycard, SCRAMKeycard)
        outcome = _outcome(
            lambda: ourServerLogin(exchanges.checker, keycard, answerer.answer)
        )
        return keycard.serverFirst, outcome

    lines = []
    plain = exchanges.plainAuth
    unknown, wrong = scrampRun(plain, UNKNOWN, "x"), scrampRun(plain, USER, "x")
    lines.append(
        f"unknown user, scramp (auth_fn answers None): challenge"
        f" {_salt(unknown[0])}, ends {unknown[1]!r}; wrong password: challenge"
        f" {_salt(wrong[0])}, ends {wrong[1]!r}"
    )
    auth = mockingAuth({USER: exchanges.info}, MOCK_SECRET)
    once, again = scrampRun(auth, UNKNOWN, "x"), scrampRun(auth, UNKNOWN, "x")
    wrong = scrampRun(auth, USER, "x")
    lines.append(
        f"unknown user, scramp with mockingAuth ({_codeLines(mockingAuth)} lines"
        f" of code): challenge {_salt(once[0])}, the same at a second attempt:"
        f" {once[0] == again[0]}, ends {once[1]!r}; wrong password: challenge"
        f" {_salt(wrong[0])}, ends {wrong[1]!r}"
    )
    once, again = oursRun(UNKNOWN, "x"), oursRun(UNKNOWN, "x")
    wrong = oursRun(USER, "x")
    lines.append(
        f"unknown user, ours (SCRAMVerifiers): challenge {_salt(once[0])}, the"
        f" same at a second attempt: {once[0] == again[0]}, {once[1]}; wrong"
        f" password: challenge {_salt(wrong[0])}, {wrong[1]}"
    )
    for iterations, saltBytes in ((1000, 16), (ITERATIONS, 8), (20_000_000, 16)):
        v = Verifier(
            iterations=iterations,
            salt=SALT[:saltBytes],
            storedKey=BINDING,
            serverKey=BINDING,
        )
        info = {USER: (v.salt, v.storedKey, v.serverKey, v.iterations)}
        server = mech.make_server(info.get)
        theirs = _outcome(lambda s=server: s.set_client_first("n,,n=user,r=abc"))
        keycard = SCRAMKeycard(clientFirst="n,,n=user,r=abc")
        fired(SCRAMVerifiers({USER: v}).prime(keycard)).challenge(keycard)
        lines.append(
            f"a verifier of {iterations} iterations and a {saltBytes}-byte salt:"
            f" scramp's server {theirs}; ours challenges with"
            f" {_salt(keycard.serverFirst)}"
        )
    return lines


def _codeLines(fn: Callable[..., object]) -> int:
    """
    Lines of C{fn}'s source, its docstring and blank lines left out.
    """
    lines = [line for line in inspect.getsource(fn).splitlines() if line.strip()]
    doc = inspect.getdoc(fn) or ""
    return len(lines) - len([line for line in doc.splitlines() if line.strip()]) - 2


def _loosen(text: str) -> str:
    """
    C{text}, base64 with unused bits in its last character, with those bits
    set: the same bytes, not canonical.
    """
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = text.rstrip("=")
    last = body[-1]
    loose = body[:-1] + alphabet[alphabet.index(last) + 1] + text[len(body) :]
    if b64decode(loose) != b64decode(text):
        raise ValueError(f"{text!r} has no unused bits")
    return loose


def strictness(exchanges: Exchanges) -> list[str]:
    """
    Messages our parsers refuse (some from tests/test_scram_messages.py, and
    non-canonical base64 that decodes to the right bytes), given to both
    implementations, each message in place of the right one in an
    exchange that otherwise succeeds.
    """
    first, final, _ = exchanges.cases["known"]
    proof = final.rpartition(",p=")[2]
    nonce = CLIENT_NONCE + SERVER_NONCE
    sf = exchanges.serverFirst
    boundFirst, boundFinal, bindings = exchanges.cases["endpoint"]
    binding = boundFinal.split(",")[0][2:]
    signature = RFC_SERVER_FINAL[2:]
    cases: list[tuple[str, str, str]] = [
        ("client-first", "an attribute after r=", f"{first},x=1"),
        ("client-first", "an extension m=", "n,,m=ext,n=user,r=abc"),
        ("client-first", "an authorization identity", "n,a=admin,n=user,r=abc"),
        ("client-first", "a nonce of 300 characters", "n,,n=user,r=" + "x" * 300),
        ("client-first", "a name of 300 characters", "n,,n=" + "u" * 300 + ",r=a"),
        ("client-first", "a message of 1100 characters", "n,,n=u,r=" + "x" * 1091),
        ("client-first", "a nonce with a space", "n,,n=user,r=a b"),
        ("client-first", "a trailing comma", "n,,n=user,r=abc,"),
        (
            "client-final",
            "a proof in non-canonical base64 (same bytes)",
            f"c=biws,r={nonce},p={_loosen(proof)}",
        ),
        (
            "client-final",
            "c= in non-canonical base64 (same bytes), bound",
            signed(exchanges, boundFirst, f"c={_loosen(binding)},r={nonce}"),
        ),
        (
            "client-final",
            "an attribute between r= and p=",
            signed(exchanges, first, f"c=biws,r={nonce},x=1"),
        ),
        (
            "client-final",
            "a proof without its padding",
            f"c=biws,r={nonce},p={proof[:-1]}",
        ),
        ("client-final", "a proof of 31 bytes", f"c=biws,r={nonce},p={b64(bytes(31))}"),
        (
            "server-first",
            "a salt in non-canonical base64 (same bytes)",
            sf.replace(b64(SALT), _loosen(b64(SALT))),
        ),
        ("server-first", "an attribute after i=", f"{sf},x=1"),
        (
            "server-first",
            "an iteration count of 1000",
            sf.replace("i=4096", "i=1000"),
        ),
        (
            "server-first",
            "an iteration count of 12 digits",
            sf.replace("i=4096", "i=123456789012"),
        ),
        ("server-first", "a salt of 8 bytes", sf.replace(b64(SALT), b64(SALT[:8]))),
        (
            "server-final",
            "a signature in non-canonical base64 (same bytes)",
            f"v={_loosen(signature)}",
        ),
        ("server-final", "an attribute after v=", f"{RFC_SERVER_FINAL},x=1"),
    ]
    lines = []
    for where, what, message in cases:
        bound = "bound" in what
        ours, theirs = {
            "client-first": (_oursFirst, _scrampFirst),
            "client-final": (_oursFinal, _scrampFinal),
            "server-first": (_oursServerFirst, _scrampServerFirst),
            "server-final": (_oursServerFinal, _scrampServerFinal),
        }[where]
        args = (exchanges, message, (boundFirst, bindings) if bound else (first, None))
        lines.append(
            f"{where}, {what}: ours {_outcome(lambda o=ours, a=args: o(*a))};"
            f" scramp {_outcome(lambda t=theirs, a=args: t(*a))}"
        )
    names: list[str] = []

    def recorded(name: str) -> tuple[bytes, bytes, bytes, int]:
        names.append(name)
        return exchanges.info

    odd = f"n,,n=us\u00ader,r={CLIENT_NONCE}"
    server = exchanges.mech.make_server(recorded, s_nonce=SERVER_NONCE)
    server.set_client_first(odd)
    server.get_server_first()
    login = _outcome(
        lambda: server.set_client_final(signed(exchanges, odd, f"c=biws,r={nonce}"))
    )
    keycard = SCRAMKeycard(clientFirst=odd)
    exchange = fired(exchanges.checker.prime(keycard))
    lines.append(
        "client-first, a name SASLprep changes ('us\\u00ader', a soft hyphen),"
        f" with user's password: scramp looks up {names[0]!r} and {login} (a"
        f" login as {names[0]!r}); ours looks up {exchange.username!r} as it is"
        " (unknown: a mock exchange)"
    )
    return lines


def signed(exchanges: Exchanges, first: str, withoutProof: str) -> str:
    """
    A client-final message with the right proof (RFC 7677's user and
    password) over whatever C{withoutProof} holds, after C{first} and our
    server's challenge.
    """
    clientKey, _ = exchanges.cache.keys(PASSWORD, SALT, ITERATIONS)
    bare = first.split(",", 2)[2]
    message = f"{bare},{exchanges.serverFirst},{withoutProof}".encode()
    storedKey = hashlib.sha256(clientKey).digest()
    signature = hmac.digest(storedKey, message, "sha256")
    proof = bytes(a ^ b for a, b in zip(clientKey, signature, strict=True))
    return f"{withoutProof},p={b64(proof)}"


def _oursFirst(exchanges: Exchanges, message: str, context: Any) -> None:
    fired(exchanges.checker.prime(SCRAMKeycard(clientFirst=message)))


def _scrampFirst(exchanges: Exchanges, message: str, context: Any) -> None:
    # Every name is known: only the message's form is tested.
    server = exchanges.mech.make_server(lambda name: exchanges.info)
    server.set_client_first(message)


def _oursFinal(exchanges: Exchanges, message: str, context: Any) -> None:
    first, bindings = context
    keycard = SCRAMKeycard(clientFirst=first, channelBindings=bindings)

    def answer(keycard: SCRAMKeycard) -> None:
        keycard.clientFinal = message

    ourServerLogin(exchanges.checker, keycard, answer)


def _scrampFinal(exchanges: Exchanges, message: str, context: Any) -> None:
    first, bindings = context
    mech, binding = exchanges.mech, None
    if bindings:
        mech, binding = exchanges.plus, next(iter(bindings.items()))
    server = mech.make_server(
        exchanges.plainAuth, channel_binding=binding, s_nonce=SERVER_NONCE
    )
    server.set_client_first(first)
    server.get_server_first()
    server.set_client_final(message)


def _ourAnswerer(exchanges: Exchanges) -> tuple[SCRAMAnswerer, SCRAMKeycard]:
    answerer = SCRAMAnswerer(USER, PASSWORD, nonce=CLIENT_NONCE, cache=exchanges.cache)
    keycard = answerer.start()
    assert isinstance(keycard, SCRAMKeycard)
    return answerer, keycard


def _oursServerFirst(exchanges: Exchanges, message: str, context: Any) -> None:
    answerer, keycard = _ourAnswerer(exchanges)
    keycard.serverFirst = message
    answerer.answer(keycard)


def _scrampClient() -> Any:
    client = scramp.ScramClient([MECH], USER, PASSWORD, c_nonce=CLIENT_NONCE)
    client.get_client_first()
    return client


def _scrampServerFirst(exchanges: Exchanges, message: str, context: Any) -> None:
    client = _scrampClient()
    client.set_server_first(message)
    client.get_client_final()


def _oursServerFinal(exchanges: Exchanges, message: str, context: Any) -> None:
    answerer, keycard = _ourAnswerer(exchanges)
    keycard.serverFirst = exchanges.serverFirst
    answerer.answer(keycard)
    keycard.serverFinal = message
    answerer.finish(keycard)


def _scrampServerFinal(exchanges: Exchanges, message: str, context: Any) -> None:
    client = _scrampClient()
    client.set_server_first(exchanges.serverFirst)
    client.get_client_final()
    client.set_server_final(message)


def saslprepRules(exchanges: Exchanges) -> list[str]:
    """
    SASLprep by ours (passlib's) and scramp's of every code point between
    two letters, and of a few strings, compared; and what each does with a
    password SASLprep refuses (PostgreSQL derives the keys from its raw
    bytes then).
    """

    def prep(fn: Callable[[str], str], text: str) -> str | None:
        try:
            return fn(text)
        except (ValueError, scramp.ScramException):
            return None

    theirs = scramp.utils.saslprep
    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    oursOnly, mapped, other = [], [], []
    for c in points:
        text = f"a{chr(c)}b"
        mine, scramps = prep(passlibSaslprep, text), prep(theirs, text)
        if mine == scramps:
            continue
        if scramps is None and stringprep.in_table_a1(chr(c)):
            oursOnly.append(c)
        elif mine is not None and scramps is not None:
            mapped.append(c)
        else:
            other.append(c)
    lines = [
        f"SASLprep of 'a<c>b' for every code point ({len(points):,}): ours"
        f" (passlib, NFKC of Unicode {unicodedata.unidata_version}) and scramp"
        f" (NFKC of Unicode 3.2, as RFC 3454 says) differ on"
        f" {len(oursOnly) + len(mapped) + len(other)}: {len(oursOnly)} code"
        " points unassigned in Unicode 3.2 that ours maps to assigned ones and"
        f" scramp refuses (e.g. U+{oursOnly[0]:04X}); {len(mapped)} that both"
        f" take but map apart (e.g. U+{mapped[0]:04X}: ours"
        f" {passlibSaslprep(chr(mapped[0]))!a}, scramp"
        f" {theirs(chr(mapped[0]))!a}); other differences: {len(other)}"
    ]
    refused = "pass\x07word"
    # PostgreSQL's verifier for it: PBKDF2 of the raw UTF-8 bytes.
    salted = hashlib.pbkdf2_hmac("sha256", refused.encode(), SALT, ITERATIONS)
    raw = Verifier(
        iterations=ITERATIONS,
        salt=SALT,
        storedKey=hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest(),
        serverKey=hmac.digest(salted, b"Server Key", "sha256"),
    )
    checker = SCRAMVerifiers({USER: raw})

    def ourClient() -> None:
        answerer = SCRAMAnswerer(USER, refused)
        keycard = answerer.start()
        assert isinstance(keycard, SCRAMKeycard)
        ourServerLogin(checker, keycard, answerer.answer)

    def scrampClient() -> None:
        client = scramp.ScramClient([MECH], USER, refused)
        keycard = SCRAMKeycard(clientFirst=client.get_client_first())
        ourServerLogin(checker, keycard, scrampAnswers(client))

    lines.append(
        "a password SASLprep refuses ('pass\\x07word') against a verifier made"
        f" as PostgreSQL makes it (from the raw bytes): our client"
        f" {_outcome(ourClient)}; scramp's client {_outcome(scrampClient)};"
        " making a verifier for it: ours"
        f" {_outcome(lambda: Verifier.fromPassword(refused))}, scramp"
        f" {_outcome(lambda: exchanges.mech.make_auth_info(refused))}"
    )
    return lines


def main(argv: Sequence[str]) -> None:
    command, *rest = argv or ["features"]
    if command == "child":
        child(rest == ["quick"])
    elif command == "cgchild":
        callgrindChild(int(rest[0]))
    elif command == "callgrind":
        print(json.dumps(callgrind(int(rest[0]) if rest else 400), indent=1))
    elif command == "profile":
        profile(int(rest[0]) if rest else 200_000)
    elif command == "spin":
        spin(int(rest[0]))
    elif command == "features":
        for line in features():
            print(line)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
