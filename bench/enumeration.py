"""
Can a stranger tell whether a user exists?  For every keycard kind, a real
bouncer service (C{twistd -n keycard-bouncer}, over verified TLS on
loopback) is asked, in random interleaved order, about a known user with a
wrong secret and about an unknown user; each round trip is timed, and a
two-sided Mann-Whitney U test says whether the two samples differ.  The
refusals are compared too (error class and message), and so are the number
of rounds and the shape of each challenge (the length of every text field
the bouncer sent back: a mock salt, iteration count or cost that differs
shows there).  A table of every case ends the output.

    python bench/enumeration.py                # every case, 2,000 samples each
    python bench/enumeration.py --samples 300 --only scram,hmac

The C{portal-} cases ask an application's own PB server instead
(L{KeycardRoot.fromPortal} over Twisted's in-memory password checker, run
by C{tests/_portalroot.py}): SCRAM through L{CheckPasswordSCRAM}, for a
stored password of 5 and of 64 characters, and PB's own MD5 login
(C{stockLogin=True}), its two rounds (C{login}, C{respond}) timed alike.

With C{--in-process}, the same three portal cases are measured without
a network: the server's own work on the message that decides (the SCRAM
final message through a L{Bouncer} over L{CheckPasswordSCRAM}, the stock
response through the root's L{StockLogin}), each timed in this process,
where a loopback round trip's noise hides nothing.  Run it from the
checkout as C{python -m bench.enumeration --in-process}, so that it
measures the checkout's code.

A p-value under 0.01 means the difference is detectable with that many
samples: the goal is none.  Throttling is off for the run (it would refuse
both alike before any check).  Needs scipy (C{pip install '.[bench]'}).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from base64 import b64encode
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from passlib.hash import apr_md5_crypt, bcrypt, sha512_crypt
from scipy.stats import mannwhitneyu
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.task import react
from twisted.spread import pb
from twisted.spread.pb import DeadReferenceError, PBConnectionLost

from twisted_keycard import IAnswerer, KeycardClientFactory
from twisted_keycard.hmackeys import HMACAnswerer
from twisted_keycard.keycard import Step
from twisted_keycard.passwords import PasswordAnswerer
from twisted_keycard.scram import SCRAMAnswerer, Verifier
from twisted_keycard.srp import SRPAnswerer, SRPVerifier
from twisted_keycard.sshkeys import SSHAnswerer

ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).parent / "twistd")
KEYCARD = [sys.executable, "-m", "twisted_keycard.admin"]

KNOWN, UNKNOWN = "alice", "mallory"


@attrs.frozen
class StockAnswerer:
    """
    A stock PB client's login: C{login(username)}, then the MD5 response.
    """

    username: str
    password: str


@attrs.frozen
class Case:
    """
    One comparison: the checker a bouncer is started with, and how to make
    the known user's (wrong) and the unknown user's answerers.

    @ivar server: C{service} (C{twistd keycard-bouncer}; C{auth} gives its
        C{--auth}) or C{portal} (C{tests/_portalroot.py}; C{auth} gives
        the known user's C{NAME:PASSWORD}).
    """

    name: str
    auth: Callable[[Path], str]
    known: Callable[[], IAnswerer | StockAnswerer]
    unknown: Callable[[], IAnswerer | StockAnswerer]
    server: str = "service"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _srp(name: str, password: str) -> str:
    return SRPVerifier.fromPassword(name, password).toString()


def _openssh(key: Any) -> str:
    return (
        key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    )


def cases() -> list[Case]:
    """
    Every kind, and for the kinds whose cost depends on the stored secret,
    one case per kind of stored secret.
    """
    found = [
        Case(
            "scram",
            lambda d: (
                "scram:"
                + str(
                    _write(
                        d / "users.scram",
                        f"{KNOWN}:{Verifier.fromPassword('right').toString()}\n",
                    )
                )
            ),
            lambda: SCRAMAnswerer(KNOWN, "wrong"),
            lambda: SCRAMAnswerer(UNKNOWN, "wrong"),
        ),
        Case(
            "srp",
            lambda d: (
                "srp:"
                + str(
                    _write(
                        d / "users.srp",
                        f"{KNOWN}:{_srp(KNOWN, 'right')}\n",
                    )
                )
            ),
            lambda: SRPAnswerer(KNOWN, "wrong"),
            lambda: SRPAnswerer(UNKNOWN, "wrong"),
        ),
        Case(
            "hmac",
            lambda d: (
                "hmac:"
                + str(
                    _write(
                        d / "clients.keys",
                        f"{KNOWN}:{b64encode(secrets.token_bytes(32)).decode()}\n",
                    )
                )
            ),
            lambda: HMACAnswerer(KNOWN, secrets.token_bytes(32)),
            lambda: HMACAnswerer(UNKNOWN, secrets.token_bytes(32)),
        ),
    ]
    for label, make in [
        ("ed25519", ed25519.Ed25519PrivateKey.generate),
        ("ecdsa", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("rsa", lambda: rsa.generate_private_key(65537, 3072)),
    ]:
        stored = make()
        wrong = make()
        found.append(
            Case(
                f"sshkeys-{label}",
                lambda d, s=stored: (
                    "sshkeys:"
                    + str(_write(d / "authorized_keys", f"{KNOWN} {_openssh(s)}\n"))
                ),
                lambda w=wrong: SSHAnswerer(KNOWN, w),
                lambda w=wrong: SSHAnswerer(UNKNOWN, w),
            )
        )
    five = [ed25519.Ed25519PrivateKey.generate() for _ in range(5)]
    other = ed25519.Ed25519PrivateKey.generate()
    found.append(
        Case(
            "sshkeys-five-keys",
            lambda d: (
                "sshkeys:"
                + str(
                    _write(
                        d / "authorized_keys",
                        "".join(f"{KNOWN} {_openssh(k)}\n" for k in five),
                    )
                )
            ),
            lambda: SSHAnswerer(KNOWN, other),
            lambda: SSHAnswerer(UNKNOWN, other),
        )
    )
    # Keys of every kind in one file: each name is checked against as many
    # keys of each kind as the file's largest list of that kind.
    mixed = {
        KNOWN: [rsa.generate_private_key(65537, 3072)],
        "bob": [ed25519.Ed25519PrivateKey.generate() for _ in range(2)],
        "carol": [ec.generate_private_key(ec.SECP256R1())],
    }
    wrongRSA = rsa.generate_private_key(65537, 3072)
    found.append(
        Case(
            "sshkeys-mixed",
            lambda d: (
                "sshkeys:"
                + str(
                    _write(
                        d / "authorized_keys",
                        "".join(
                            f"{name} {_openssh(k)}\n"
                            for name, keys in mixed.items()
                            for k in keys
                        ),
                    )
                )
            ),
            lambda: SSHAnswerer(KNOWN, wrongRSA),
            lambda: SSHAnswerer(UNKNOWN, wrongRSA),
        )
    )
    # As the tools write them: htpasswd -m (apr1), htpasswd -B (bcrypt, cost
    # 5), mkpasswd -m sha-512 (5,000 rounds).
    for label, line, wrong in [
        ("htpasswd-apr1", apr_md5_crypt.hash("right"), "wrong"),
        ("htpasswd-bcrypt", bcrypt.using(rounds=5, ident="2y").hash("right"), "wrong"),
        (
            "htpasswd-bcrypt-73-bytes",
            bcrypt.using(rounds=5, ident="2y").hash("right"),
            "x" * 73,
        ),
        (
            "htpasswd-sha512crypt",
            sha512_crypt.using(rounds=5000).hash("right"),
            "wrong",
        ),
    ]:
        found.append(
            Case(
                label,
                lambda d, h=line: (
                    "htpasswd:" + str(_write(d / "htpasswd", f"{KNOWN}:{h}\n"))
                ),
                lambda w=wrong: PasswordAnswerer(KNOWN, w),
                lambda w=wrong: PasswordAnswerer(UNKNOWN, w),
            )
        )
    # An application's own portal: SCRAM over its password checker, for a
    # short and a long stored password, and PB's own MD5 login.
    for label, stored in [("short", "right"), ("long", "r" * 64)]:
        found.append(
            Case(
                f"portal-scram-{label}",
                lambda d, p=stored: f"{KNOWN}:{p}",
                lambda: SCRAMAnswerer(KNOWN, "wrong"),
                lambda: SCRAMAnswerer(UNKNOWN, "wrong"),
                server="portal",
            )
        )
    found.append(
        Case(
            "portal-stock-md5",
            lambda d: f"{KNOWN}:right",
            lambda: StockAnswerer(KNOWN, "wrong"),
            lambda: StockAnswerer(UNKNOWN, "wrong"),
            server="portal",
        )
    )
    return found


@attrs.frozen
class Outcome:
    """
    What one exchange took: each round trip in seconds, the shape of each
    challenge (see L{shape}), and the refusal.
    """

    rounds: list[float]
    refusal: str
    shapes: tuple[str, ...] = ()


def shape(values: Sequence[Any]) -> str:
    """
    The length of every value of a challenge the bouncer sent (keycard
    protocol 2), which is the same for a known and an unknown name when
    nothing tells them apart (nonces and salts are random-looking, but as
    long); other values by their type.
    """
    return " ".join(
        str(len(value)) if isinstance(value, bytes) else type(value).__name__
        for value in values
    )


async def stockExchange(root: Any, answerer: StockAnswerer) -> Outcome:
    """
    One stock PB login, to its refusal, timing its two round trips.
    """
    rounds: list[float] = []
    start = time.perf_counter()
    challenge, challenger = await root.callRemote("login", answerer.username)
    rounds.append(time.perf_counter() - start)
    response = pb.respond(challenge, answerer.password.encode())
    start = time.perf_counter()
    try:
        await challenger.callRemote("respond", response, None)
    except (DeadReferenceError, PBConnectionLost):
        raise
    except Exception as e:
        rounds.append(time.perf_counter() - start)
        failure = getattr(e, "value", e)
        refusal = f"{type(failure).__name__}: {failure}"
        return Outcome(rounds, refusal, (shape([challenge]),))
    raise RuntimeError("a wrong password was taken")


async def exchange(root: Any, answerer: IAnswerer | StockAnswerer) -> Outcome:
    """
    One exchange, to its refusal, timing each round trip.
    """
    if isinstance(answerer, StockAnswerer):
        return await stockExchange(root, answerer)
    keycard = answerer.start()
    rounds: list[float] = []
    shapes: list[str] = []
    message = keycard.message(Step.FIRST)
    call = root.callRemote("login", keycard.kind.encode(), 0, None, *message)
    for _ in range(4):
        start = time.perf_counter()
        try:
            result = await call
        except (DeadReferenceError, PBConnectionLost):
            # Not a refusal: the measurement would time a closed connection.
            raise
        except Exception as e:
            rounds.append(time.perf_counter() - start)
            failure = getattr(e, "value", e)
            refusal = f"{type(failure).__name__}: {failure}"
            return Outcome(rounds, refusal, tuple(shapes))
        rounds.append(time.perf_counter() - start)
        if result[0] != b"challenge":
            return Outcome(rounds, f"answered {result[0]!r}", tuple(shapes))
        shapes.append(shape(result[2:]))
        keycard.takeMessage(Step.CHALLENGE, result[2:])
        keycard = answerer.answer(keycard)
        message = keycard.message(Step.ANSWER)
        call = root.callRemote("answer", result[1], *message)
    raise RuntimeError("more rounds than a login has")


class Connection:
    """
    A client connection to the bouncer, made again when the bouncer drops
    it (as it does after a refused HMAC keycard).
    """

    def __init__(self, reactor: Any, endpoint: str) -> None:
        self.reactor = reactor
        self.endpoint = endpoint
        self.factory: KeycardClientFactory | None = None
        self.root: Any = None

    async def get(self, fresh: bool) -> Any:
        """
        The root object, over a new connection if C{fresh}.
        """
        if self.root is not None and self.root.broker.disconnected:
            fresh = True
        if fresh and self.factory is not None:
            self.factory.disconnect()
            self.factory = None
        if self.factory is None:
            self.factory = KeycardClientFactory()
            await clientFromString(self.reactor, self.endpoint).connect(self.factory)
            self.root = await self.factory.getRootObject()
        return self.root

    def close(self) -> None:
        if self.factory is not None:
            self.factory.disconnect()


async def measure(
    reactor: Any, endpoint: str, case: Case, samples: int
) -> dict[str, Any]:
    connection = Connection(reactor, endpoint)
    order = [True] * samples + [False] * samples
    random.shuffle(order)
    times: dict[bool, list[list[float]]] = {True: [], False: []}
    refusals: dict[bool, set[str]] = {True: set(), False: set()}
    shapes: dict[bool, set[tuple[str, ...]]] = {True: set(), False: set()}
    warm = [True, False] * 20
    for i, known in enumerate(warm + order):
        # A bouncer drops the client after refusing some kinds (HMAC), and
        # any connection not logged in after a few messages (32): each
        # exchange of those, and every eighth of the others, gets a
        # connection of its own (not timed).
        cls = getattr(case.known(), "keycardClass", None)
        drops = getattr(cls, "dropOnRefusal", False)
        root = await connection.get(fresh=drops or i % 8 == 0)
        outcome = await exchange(root, case.known() if known else case.unknown())
        if i >= len(warm):
            times[known].append(outcome.rounds)
            refusals[known].add(outcome.refusal)
            shapes[known].add(outcome.shapes)
    connection.close()
    result: dict[str, Any] = {"case": case.name, "samples": samples, "rounds": []}
    for n in range(min(len(r) for r in times[True] + times[False])):
        a = [r[n] * 1e6 for r in times[True]]
        b = [r[n] * 1e6 for r in times[False]]
        p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
        result["rounds"].append(
            {
                "round": n + 1,
                "known_us": statistics.median(a),
                "unknown_us": statistics.median(b),
                "p": p,
            }
        )
    result["same_refusal"] = refusals[True] == refusals[False]
    result["refusals"] = sorted(refusals[True] | refusals[False])
    counts = {k: {len(r) for r in times[k]} for k in (True, False)}
    result["same_rounds"] = counts[True] == counts[False]
    result["same_shape"] = shapes[True] == shapes[False]
    result["shapes"] = {
        "known": sorted(" | ".join(s) for s in shapes[True]),
        "unknown": sorted(" | ".join(s) for s in shapes[False]),
    }
    return result


def startBouncer(data: Path, auth: str, port: int) -> subprocess.Popen[bytes]:
    log = open(data / f"bouncer-{port}.log", "wb")  # noqa: SIM115 - the child's
    process = subprocess.Popen(
        [
            TWISTD,
            "-n",
            "--pidfile=",
            "keycard-bouncer",
            "--data-dir",
            str(data),
            "--listen",
            f"ssl:{port}:interface=127.0.0.1:privateKey={data / 'tls' / 'server.pem'}",
            "--no-throttle",
            "--auth",
            auth,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while (
        f"starting on {port}".encode()
        not in (data / f"bouncer-{port}.log").read_bytes()
    ):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((data / f"bouncer-{port}.log").read_text())
        time.sleep(0.1)
    return process


def startPortal(data: Path, user: str, port: int) -> subprocess.Popen[bytes]:
    """
    An application's PB server over its own portal, with PB's own login,
    no throttle, over TLS with the data directory's certificate.
    """
    path = data / f"portal-{port}.log"
    log = open(path, "wb")  # noqa: SIM115 - the child's
    pem = data / "tls" / "server.pem"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests._portalroot",
            f"ssl:{port}:interface=127.0.0.1:privateKey={pem}",
            user,
            "--stock",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 30
    while f"listening on {port}".encode() not in path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(path.read_text())
        time.sleep(0.1)
    return process


def freePort() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(samples: int, only: set[str] | None) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        subprocess.run(
            [*KEYCARD, "init", str(data), "--dev-cert", "localhost"],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        trust = data / "tls" / "trust"
        results = []
        for case in cases():
            if only and not any(case.name.startswith(o) for o in only):
                continue
            port = freePort()
            start = startPortal if case.server == "portal" else startBouncer
            bouncer = start(data, case.auth(data), port)
            endpoint = f"tls:localhost:{port}:trustRoots={trust}"
            try:
                found = _inChild(
                    lambda reactor, c=case, e=endpoint: measure(reactor, e, c, samples)
                )
                results.append(found)
                report(found)
            finally:
                bouncer.send_signal(signal.SIGTERM)
                bouncer.wait(30)
        return results


def _inChild(main: Callable[[Any], Any]) -> dict[str, Any]:
    """
    Run C{main} on a fresh reactor in a child process and return what it
    returns (JSON): the global reactor cannot be restarted, and each case
    gets a process of its own.
    """
    readEnd, writeEnd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(readEnd)
        out: list[Any] = []

        async def job(reactor: Any) -> None:
            out.append(await main(reactor))

        code = 0
        try:
            react(lambda reactor: Deferred.fromCoroutine(job(reactor)))
        except SystemExit as e:
            code = int(e.code or 0)
        with os.fdopen(writeEnd, "w") as f:
            f.write(json.dumps(out[0]) if out else "null")
        os._exit(code)
    os.close(writeEnd)
    with os.fdopen(readEnd) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    result = json.loads(text or "null")
    if status != 0 or result is None:
        raise RuntimeError(f"measuring failed ({status})")
    return dict(result)


def inProcess(samples: int, only: set[str] | None) -> list[dict[str, Any]]:
    """
    The portal cases' deciding message, timed in this process: known
    (wrong password) and unknown names in random interleaved order, after
    a warm-up, compared with a Mann-Whitney U test.
    """
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
    from twisted.cred.portal import Portal
    from twisted.internet.task import Clock

    from tests._realm import AvatarRealm
    from twisted_keycard import Bouncer, KeycardRoot
    from twisted_keycard.pb import _root
    from twisted_keycard.scram import CheckPasswordSCRAM

    key = secrets.token_bytes(32)

    def scram(stored: str) -> Callable[[str], tuple[float, str]]:
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(KNOWN.encode(), stored.encode())
        bouncer = Bouncer([CheckPasswordSCRAM(checker, key=key)], clock=Clock())

        def one(name: str) -> float:
            answerer = SCRAMAnswerer(name, "wrong")
            first = answerer.start()
            first.address, first.requesterName = "127.0.0.1", "app"
            challenged = bouncer.authenticate(first).result
            final = answerer.answer(challenged)
            start = time.perf_counter()
            d = bouncer.authenticate(final)
            took = time.perf_counter() - start
            return took, _ended(d)

        return one

    def stock() -> Callable[[str], tuple[float, str]]:
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(KNOWN.encode(), b"right")
        portal = Portal(AvatarRealm(), [checker])
        root = KeycardRoot.fromPortal(portal, clock=Clock(), key=key, stockLogin=True)
        assert root.stock is not None
        broker = pb.Broker()

        def one(name: str) -> float:
            challenge = pb.challenge()
            challenger = _root._StockChallenge(
                root.stock, broker, name.encode(), challenge
            )
            response = pb.respond(challenge, b"wrong")
            start = time.perf_counter()
            d = challenger.remote_respond(response, None)
            took = time.perf_counter() - start
            return took, _ended(d)

        return one

    makers: dict[str, Callable[[], Callable[[str], tuple[float, str]]]] = {
        "portal-scram-short": lambda: scram("right"),
        "portal-scram-long": lambda: scram("r" * 64),
        "portal-stock-md5": stock,
    }
    results = []
    for name, make in makers.items():
        if only and not any(name.startswith(o) for o in only):
            continue
        one = make()
        for _ in range(50):
            one(KNOWN)
            one(UNKNOWN)
        order = [True] * samples + [False] * samples
        random.shuffle(order)
        times: dict[bool, list[float]] = {True: [], False: []}
        refusals: dict[bool, set[str]] = {True: set(), False: set()}
        for known in order:
            took, refusal = one(KNOWN if known else UNKNOWN)
            times[known].append(took * 1e6)
            refusals[known].add(refusal)
        a, b = times[True], times[False]
        found = {
            "case": f"{name} (in process)",
            "samples": samples,
            "rounds": [
                {
                    "round": 2,
                    "known_us": statistics.median(a),
                    "unknown_us": statistics.median(b),
                    "p": float(mannwhitneyu(a, b, alternative="two-sided").pvalue),
                }
            ],
            "same_refusal": refusals[True] == refusals[False],
            "refusals": sorted(refusals[True] | refusals[False]),
            "same_rounds": True,
            "same_shape": True,
        }
        results.append(found)
        report(found)
    return results


def _ended(d: Deferred[Any]) -> str:
    """
    How a login that ended at once ended: its refusal, or C{accepted}.
    """
    ended: list[str] = []

    def refused(failure: Any) -> None:
        ended.append(f"{failure.type.__name__}: {failure.getErrorMessage()}")

    d.addCallbacks(lambda _: ended.append("accepted"), refused)
    return ended[0] if ended else "not ended"


def report(result: dict[str, Any]) -> None:
    for r in result["rounds"]:
        verdict = "DISTINGUISHABLE" if r["p"] < 0.01 else "same"
        print(
            f"{result['case']:<26} round {r['round']}  known {r['known_us']:>9.1f} us"
            f"  unknown {r['unknown_us']:>9.1f} us  p={r['p']:.3g}  {verdict}",
            flush=True,
        )
    if not result["same_refusal"]:
        print(f"{result['case']:<26} refusals differ: {result['refusals']}", flush=True)
    if not result["same_rounds"]:
        print(f"{result['case']:<26} the number of rounds differs", flush=True)
    if not result["same_shape"]:
        print(f"{result['case']:<26} challenges differ: {result['shapes']}", flush=True)
    print(json.dumps(result), flush=True)


def table(results: list[dict[str, Any]]) -> str:
    """
    Every case's rounds as a Markdown table.
    """
    lines = [
        "| case | round | known (us) | unknown (us) | p | same refusal, rounds,"
        " challenge |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        same = all(result[k] for k in ("same_refusal", "same_rounds", "same_shape"))
        for r in result["rounds"]:
            lines.append(
                f"| {result['case']} | {r['round']} | {r['known_us']:.1f}"
                f" | {r['unknown_us']:.1f} | {r['p']:.3g}"
                f" | {'yes' if same else 'NO'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--only", help="comma-separated case name prefixes")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="the portal cases' server work, timed in this process",
    )
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    if args.in_process:
        results = inProcess(args.samples, only)
    else:
        results = run(args.samples, only)
    print(f"\n{args.samples} samples per name and case\n\n{table(results)}")


if __name__ == "__main__":
    main()
