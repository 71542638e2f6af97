"""
Password files, for requesters that receive a password themselves (an HTTP
guard taking Basic credentials over TLS): the password keycard, Apache
C{htpasswd} and C{/etc/shadow} files (bcrypt, argon2, SHA-crypt, through
libpass), and the hash an unknown user's password is checked against so
that the refusal takes as long as any other.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from threading import Lock
from typing import Any

import attrs
from passlib.context import CryptContext
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_keycard._files import (
    ParsedEntries,
    WatchedEntries,
    inReactorThreadPool,
    parseLines,
    writePrivateFile,
)
from twisted_keycard._hashpool import HashPool as HashPool
from twisted_keycard._hashpool import IHashPool as IHashPool
from twisted_keycard._mocks import WithMocks, mostCommon
from twisted_keycard.error import KeycardRefused, ProtocolError
from twisted_keycard.keycard import (
    NAME_LENGTH,
    IAnswerer,
    IChallenger,
    IExchange,
    Keycard,
    addressGroup,
    registerKeycard,
    wireField,
)

#: Schemes verified, and the one passwords are rehashed to on login.
SCHEMES = [
    "argon2",
    "bcrypt",
    "sha512_crypt",
    "sha256_crypt",
    "apr_md5_crypt",
    "md5_crypt",
    "ldap_sha1",
    "des_crypt",
]


def context(rehashTo: str = "argon2") -> CryptContext:
    return CryptContext(schemes=SCHEMES, default=rehashTo, deprecated="auto")


def parseHashes(text: str) -> ParsedEntries[str]:
    """
    C{name:hash} lines (htpasswd), or C{name:hash:...} (shadow), leaving out
    bad lines.

    @return: the hashes, and a problem naming the line number of each bad
        line.
    """
    hashes = {}

    def add(line: str) -> None:
        name, sep, rest = line.partition(":")
        hashed = rest.split(":", 1)[0]
        if not sep or not name or not hashed:
            raise ValueError("expected name:hash")
        hashes[name] = hashed

    problems = parseLines(text, add)
    return ParsedEntries(hashes, problems)


def rewriteHash(path: Path, username: str, old: str, updated: str, lock: Lock) -> None:
    """
    Replace one user's hash in the file, if it is still C{old} (an
    administrator may have changed it since), keeping every other line, and
    write the file atomically (see L{writePrivateFile}).  Blocking: run it in a
    thread.
    """
    with lock:
        out = []
        for line in path.read_text("utf-8").splitlines():
            name, sep, rest = line.partition(":")
            if sep and name == username and rest.split(":", 1)[0] == old:
                tail = rest.split(":", 1)[1:] if ":" in rest else []
                line = ":".join([name, updated, *tail])
            out.append(line)
        writePrivateFile(path, ("\n".join(out) + "\n").encode("utf-8"))


#: A scheme and its settings (rounds, ident, memory, salt and digest sizes).
HashShape = tuple[str, tuple[tuple[str, object], ...]]

#: Settings read from a hash as they are, when its scheme has them.
_SETTINGS = ("rounds", "ident", "memory_cost", "parallelism", "type")


def hashShape(context: CryptContext, hashed: str) -> HashShape | None:
    """
    The scheme and settings of C{hashed}, or C{None} if C{context} does not
    take it (a locked account, a malformed hash).
    """
    scheme = context.identify(hashed, required=False)
    if scheme is None:
        return None
    handler = context.handler(scheme)
    try:
        parsed = handler.from_string(hashed)
    except (ValueError, TypeError):
        return None
    kwds = handler.setting_kwds
    settings = {name: getattr(parsed, name) for name in _SETTINGS if name in kwds}
    if "salt_size" in kwds and parsed.salt:
        settings["salt_size"] = len(parsed.salt)
    if "digest_size" in kwds and parsed.checksum:
        settings["digest_size"] = len(parsed.checksum)
    return scheme, tuple(sorted(settings.items()))


def dummyHash(
    context: CryptContext,
    hashes: Iterable[str],
    made: MutableMapping[HashShape | None, str],
) -> str:
    """
    A hash of a random password in the shape most of C{hashes} have (the
    context's default scheme when none is taken).  Slow: run it where a
    hash may be computed.

    @param made: dummy hashes made before, by shape; a new one is added,
        so a file read again costs a hash only when its shape changed.
    """
    shape = mostCommon((s for h in hashes if (s := hashShape(context, h))), None)
    if shape not in made:
        made[shape] = _hashIn(context, shape, secrets.token_hex(16))
    return made[shape]


def _hashIn(context: CryptContext, shape: HashShape | None, password: str) -> str:
    if shape is not None:
        scheme, settings = shape
        try:
            hashed: str = context.handler(scheme).using(**dict(settings)).hash(password)
            return hashed
        except (ValueError, TypeError):
            pass  # settings the scheme reads but will not write
    default: str = context.hash(password)
    return default


BCRYPT_LIMIT = 72
PASSWORD_LENGTH = 1024

#: Bytes of a password checked, at most (UTF-8): longer ones are refused
#: before any hashing, since sha-crypt and md5-crypt cost grows with the
#: length (a 1024-byte password costs several times a short one).
MAX_PASSWORD_BYTES = 256


class PasswordTooLong(ProtocolError):
    """
    Raised, before any hashing, for a password longer than the checker's
    cap (L{MAX_PASSWORD_BYTES} by default).
    """


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class PasswordKeycard(Keycard):
    """
    A keycard that carries a password: refused by PB unless the connection
    is TLS.
    """

    keycardType = "twisted_keycard.password"

    username: str | None = wireField(str, NAME_LENGTH, setBy="client")
    password: str | None = wireField(str, PASSWORD_LENGTH, secret=True, setBy="client")

    def account(self) -> str | None:
        return self.username


class IPasswordExchange(IExchange):
    """
    A password received in a keycard, waiting for L{PasswordFile}.
    """


@implementer(IPasswordExchange)
@attrs.define
class PasswordExchange:
    """
    A password to check; it has C{username} and C{password} as
    twisted.cred's L{IUsernamePassword} credentials do.

    @ivar address: the client's address, so that the hash pool shares its
        places fairly among clients.
    """

    username: str
    password: str = attrs.field(repr=False)
    address: str | None = None

    @classmethod
    def of(cls, keycard: Keycard) -> Deferred[IExchange]:
        """
        The exchange of a password keycard: what every password checker's
        C{prime} does.

        @return: a L{Deferred} firing with the exchange, or failing with
            L{ProtocolError} for another keycard or one without a name or
            a password.
        """
        if not isinstance(keycard, PasswordKeycard):
            return fail(ProtocolError("not a password keycard"))
        if keycard.username is None or keycard.password is None:
            return fail(ProtocolError("no user name or password"))
        return succeed(cls(keycard.username, keycard.password, keycard.address))

    def challenge(self, keycard: Keycard) -> bool:
        if isinstance(keycard, PasswordKeycard):
            keycard.password = None  # never sent back
        return False

    def answer(self, keycard: Keycard) -> None:
        raise ProtocolError("a password keycard has no challenge to answer")

    def conclude(self, keycard: Keycard) -> None:
        """
        Nothing to prove back.
        """


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@implementer(ICredentialsChecker, IChallenger)
class PasswordFile:
    """
    Checks passwords against an htpasswd or shadow-like file.

    @ivar owned: the file is ours, so a hash in an old scheme is replaced
        on login by one in C{rehashTo}.
    """

    credentialInterfaces = (IUsernamePassword, IPasswordExchange)
    keycardClasses = (PasswordKeycard,)
    log = Logger()

    def __init__(
        self,
        path: str | Path,
        *,
        owned: bool = False,
        rehashTo: str = "argon2",
        runInThread: Callable[..., Deferred[Any]] | None = None,
        clock: IReactorTime | None = None,
        hashPool: IHashPool | None = None,
        maxPasswordBytes: int = MAX_PASSWORD_BYTES,
    ) -> None:
        """
        @param runInThread: runs the file's reading and rewriting off the
            reactor thread; the global reactor's thread pool by default.
        @param clock: the time of the file's content checks (see
            L{WatchedEntries}); the global reactor's by default.
        @param hashPool: runs the hashes off the reactor thread, bounded;
            by default a L{HashPool} of its own on the global reactor.
        @param maxPasswordBytes: longer passwords (UTF-8) are refused before
            any hashing.
        @raise OSError: if the file cannot be read.
        """
        self.path = Path(path)
        self.owned = owned
        self.maxPasswordBytes = maxPasswordBytes
        self._context = context(rehashTo)
        self._run = runInThread or inReactorThreadPool
        self._dummies: dict[HashShape | None, str] = {}
        self._hashes: WatchedEntries[str] = WatchedEntries(
            {}, self.path, self._parse, clock=clock, runInThread=self._run
        )
        self._writing = Lock()
        #: The pool the hashes run in; set it to share one among checkers.
        self.hashPool: IHashPool = HashPool() if hashPool is None else hashPool

    def _parse(self, text: str) -> ParsedEntries[str]:
        """
        Parse the file, and hash the dummy for unknown users in the shape of
        most of its hashes (see L{dummyHash}), in the thread that reads it.
        """
        parsed = parseHashes(text)
        dummy = dummyHash(self._context, parsed.entries.values(), self._dummies)
        mocks = (dummy, self._context.identify(dummy))
        return ParsedEntries(WithMocks(parsed.entries, mocks), parsed.problems)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        return PasswordExchange.of(keycard)

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """
        Check a password, once a changed file is read again.
        """
        return self._hashes.whenCurrent(lambda: self._requestAvatarId(credentials))

    def _requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        username = _text(credentials.username)
        password = _text(credentials.password)
        try:
            length = len(password.encode("utf-8"))
        except UnicodeEncodeError:
            return fail(ProtocolError("the password is not valid text"))
        if length > self.maxPasswordBytes:
            return fail(PasswordTooLong("the password is too long"))
        found = self._hashes.current().get(username)
        current = self._hashes.current()
        assert isinstance(current, WithMocks)  # read by _parse
        dummy, dummyScheme = current.mocks
        # The scheme is looked up once for every name, so a known name takes
        # no step an unknown one does not.
        hashed = found if found is not None else dummy
        scheme = self._context.identify(hashed, required=False)
        known = found if scheme is not None else None
        if scheme is None:
            # A locked account ("*", "!") or a format we do not take:
            # refused after the same work as an unknown user.
            hashed, scheme = dummy, dummyScheme
        if scheme == "bcrypt" and length > BCRYPT_LIMIT:
            # bcrypt reads 72 bytes only: refused rather than cut, after
            # the same work and with the same error as a wrong password.
            password, known = "", None
        key = addressGroup(getattr(credentials, "address", None))
        d = self.hashPool.run(key, self._verify, password, hashed)
        return d.addCallback(self._checked, username, known)

    def _verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """
        Check a password, in the hash pool; for a file of ours, also make
        the hash of a password in an old scheme again (a file not ours is
        not rewritten, so that work would be wasted).
        """
        if self.owned:
            result: tuple[bool, str | None] = self._context.verify_and_update(
                password, hashed
            )
            return result
        return self._context.verify(password, hashed), None

    def _checked(
        self, result: tuple[bool, str | None], username: str, known: str | None
    ) -> str:
        good, updated = result
        if not good or known is None:
            raise KeycardRefused()
        if updated is not None and self.owned:
            d = self._run(
                rewriteHash, self.path, username, known, updated, self._writing
            )
            d.addErrback(self._rewriteFailed)
        return username

    def _rewriteFailed(self, failure: Failure) -> None:
        self.log.failure(
            "{path}: a rehashed password could not be written",
            failure,
            path=str(self.path),
        )


@implementer(IAnswerer)
class PasswordAnswerer:
    """
    The client side: sends the password itself, so only over TLS.
    """

    keycardClass = PasswordKeycard

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password

    def __repr__(self) -> str:
        return f"<PasswordAnswerer {self.username!r}>"

    def start(self) -> Keycard:
        return PasswordKeycard(username=self.username, password=self._password)

    def answer(self, keycard: Keycard) -> Keycard:
        raise ProtocolError("a password keycard has no challenge to answer")

    def finish(self, keycard: Keycard) -> None:
        """
        Nothing to check: the server proved itself through TLS.
        """
