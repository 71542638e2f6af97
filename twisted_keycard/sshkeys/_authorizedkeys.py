"""
The lines of the sshkeys checker's keys file: C{name [options] keytype
base64 [comment]}, as OpenSSH's C{authorized_keys} has them, the
C{from="..."} patterns of their options matched against a client's
address, and OpenSSH user certificates checked against a trusted
certificate authority.

Options, with OpenSSH's meaning where one holds for a keycard login:

  - C{from="..."}: the client addresses the line holds for.  Host-name
    patterns are never looked up (no reverse-DNS trust): they match no
    client, and the line holds for its address patterns; a negated host
    name (C{!name}) cannot be honoured, so its line is refused.
  - C{expiry-time="YYYYMMDD[HHMM[SS]][Z]"}: the line holds until then
    (local time, or UTC with C{Z}), as OpenSSH's does.
  - C{cert-authority}, C{principals="..."}: see L{certifiedKey}.
  - C{restrict}, C{[no-]pty}, C{[no-]port-forwarding} and the other
    session limits of L{SESSION_OPTIONS}: nothing to limit, taken.
  - C{no-touch-required}, C{verify-required}: on a FIDO security key's
    line (L{SecurityKey}), what its signature's flags must show.
  - C{command=}, C{environment=}, C{permitopen=}, C{permitlisten=},
    C{tunnel=} (and the two above on other lines) (L{IGNORABLE_OPTIONS}):
    what they ask cannot be done for a keycard login, so by default their
    line is refused, naming the option; an operator who knows they do not
    apply to keycard logins ignores them (C{ignoreOptions}).

Lines refused besides: ECDSA FIDO security keys, DSA keys and RSA keys
under L{MIN_RSA_BITS} bits.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from base64 import b64decode, b64encode
from collections.abc import Collection, Sequence
from datetime import datetime, timezone

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization.ssh import (
    SSHCertificate,
    SSHCertificateType,
    load_ssh_public_identity,
)

from twisted_keycard._files import ParsedEntries, parseLines
from twisted_keycard.keycard import normalizeAddress

_HOST_NAME = re.compile(r"[A-Za-z0-9*?]([A-Za-z0-9.*?-]*[A-Za-z0-9*?])?")
_IPV4_GLOB = re.compile(r"[0-9.*?]+")
_IPV6_GLOB = re.compile(r"[0-9a-fA-F.:*?]*:[0-9a-fA-F.:*?]*")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class AddressPattern:
    """
    One pattern of a C{from=} list: a network (an address is a network of
    one), a C{*}/C{?} wildcard over an address's text, or a host name
    (which matches no client: names are not looked up).
    """

    negated: bool
    network: Network | None = None
    glob: re.Pattern[str] | None = None
    hostName: str | None = None

    @classmethod
    def parse(cls, text: str) -> AddressPattern:
        """
        @raise ValueError: for a negated host name (it cannot be honoured
            without DNS), a network with host bits set, or anything else.
        """
        negated = text.startswith("!")
        pattern = text[1:] if negated else text
        if not pattern:
            raise ValueError("from= has an empty pattern")
        if "*" in pattern or "?" in pattern:
            if not (_IPV4_GLOB.fullmatch(pattern) or _IPV6_GLOB.fullmatch(pattern)):
                return cls._named(negated, pattern)
            regex = "".join(
                {"*": ".*", "?": "."}.get(c, re.escape(c)) for c in pattern.lower()
            )
            return cls(negated, glob=re.compile(regex))
        try:
            return cls(negated, network=ipaddress.ip_network(pattern))
        except ValueError:
            pass
        try:
            ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return cls._named(negated, pattern)
        raise ValueError(f"from= network {pattern!r} has host bits set")

    @classmethod
    def _named(cls, negated: bool, pattern: str) -> AddressPattern:
        if not _HOST_NAME.fullmatch(pattern):
            raise _hostName(pattern)
        if negated:
            raise ValueError(
                f"from= pattern '!{pattern}' excludes a host name, which is never"
                " looked up here (no reverse-DNS trust): write its addresses"
            )
        return cls(negated, hostName=pattern.lower())

    def matches(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.hostName is not None:
            return False
        if self.network is not None:
            return ip.version == self.network.version and ip in self.network
        assert self.glob is not None
        return self.glob.fullmatch(str(ip)) is not None


def _hostName(pattern: str) -> ValueError:
    return ValueError(
        f"from= pattern {pattern!r} is not an address, network or host name"
    )


@attrs.frozen
class AddressPatterns:
    """
    A C{from=} list, matched as OpenSSH does: an address matches when a
    pattern matches it and no negated (C{!}) pattern does.  Only IP
    addresses are matched, as OpenSSH's C{UseDNS no} does: a host-name
    pattern matches no client, and a client without an address matches
    nothing.
    """

    patterns: tuple[AddressPattern, ...]

    @classmethod
    def parse(cls, text: str) -> AddressPatterns:
        """
        @raise ValueError: for a pattern that is not taken (see
            L{AddressPattern.parse}).
        """
        return cls(tuple(AddressPattern.parse(p.strip()) for p in text.split(",")))

    def matches(self, address: str | None) -> bool:
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(normalizeAddress(address))
        except ValueError:
            return False
        found = [p.negated for p in self.patterns if p.matches(ip)]
        return bool(found) and not any(found)


MIN_RSA_BITS = 2048

#: The key type of a FIDO security key's Ed25519 key.
SK_ED25519 = "sk-ssh-ed25519@openssh.com"

#: Authenticator flags (OpenSSH's PROTOCOL.u2f): the user touched the key,
#: and the user was verified (a PIN).
SK_USER_PRESENT = 0x01
SK_USER_VERIFIED = 0x04


def _sshString(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(data):
        raise ValueError("truncated")
    length = int.from_bytes(data[offset : offset + 4], "big")
    end = offset + 4 + length
    if end > len(data):
        raise ValueError("truncated")
    return data[offset + 4 : end], end


def _encodeStrings(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


@attrs.frozen
class SecurityKey:
    """
    A FIDO security key's Ed25519 public key (C{sk-ssh-ed25519@openssh.com}),
    the application it was made for (C{ssh:} as C{ssh-keygen} makes them),
    and what its line requires of a signature.  Its signature covers the
    authenticator's data (OpenSSH's C{PROTOCOL.u2f}): C{sha256(application)
    || flags || counter || sha256(message)}, sent as the Ed25519 signature
    followed by the flags byte and the 4-byte counter.

    @ivar touch: whether the user must have touched the key (true unless
        the line says C{no-touch-required}).
    @ivar verified: whether the user must have been verified, with a PIN
        (C{verify-required}).
    """

    key: ed25519.Ed25519PublicKey
    application: bytes
    touch: bool = True
    verified: bool = False

    @classmethod
    def fromBlob(cls, blob: bytes) -> SecurityKey:
        """
        @raise ValueError: for a blob that is not one.
        """
        try:
            keyType, offset = _sshString(blob, 0)
            point, offset = _sshString(blob, offset)
            application, offset = _sshString(blob, offset)
        except ValueError:
            raise ValueError("expected name and an OpenSSH public key") from None
        if keyType != SK_ED25519.encode() or len(point) != 32 or offset != len(blob):
            raise ValueError("expected name and an OpenSSH public key")
        return cls(ed25519.Ed25519PublicKey.from_public_bytes(point), application)

    def blob(self) -> bytes:
        """
        The key in SSH wire form.
        """
        point = self.key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return _encodeStrings(SK_ED25519.encode(), point, self.application)

    def signed(self, flags: int, counter: bytes, message: bytes) -> bytes:
        """
        What the authenticator signs for C{message}.
        """
        return (
            hashlib.sha256(self.application).digest()
            + bytes([flags])
            + counter
            + hashlib.sha256(message).digest()
        )


PublicKey = (
    ed25519.Ed25519PublicKey
    | ec.EllipticCurvePublicKey
    | rsa.RSAPublicKey
    | SecurityKey
)

#: How a certificate's key type ends.
CERT_SUFFIX = "-cert-v01@openssh.com"

#: Key types OpenSSH writes, to tell a line's key from its options.
KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-ed448",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)

#: Options that ask an SSH server for what a keycard login cannot do (run
#: a command, set variables, allow forwarding to some ports, a security
#: key's touch or PIN): their lines are refused unless the operator ignores
#: them (C{ignoreOptions}).
IGNORABLE_OPTIONS = frozenset(
    {
        "command",
        "environment",
        "permitopen",
        "permitlisten",
        "tunnel",
        "no-touch-required",
        "verify-required",
    }
)

#: Options a security key's line honours (elsewhere they are ignorable).
_SK_OPTIONS = frozenset({"no-touch-required", "verify-required"})

#: Options whose value is given, C{name="..."}.
_VALUED_OPTIONS = frozenset(
    {
        "from",
        "principals",
        "expiry-time",
        "command",
        "environment",
        "permitopen",
        "permitlisten",
        "tunnel",
    }
)

#: Options OpenSSH allows more than once on a line.
_REPEATED_OPTIONS = frozenset({"environment", "permitopen", "permitlisten"})

#: Options that only limit an SSH session: accepted, and meaningless here.
SESSION_OPTIONS = frozenset(
    {
        "restrict",
        *(
            prefix + name
            for prefix in ("", "no-")
            for name in (
                "pty",
                "port-forwarding",
                "agent-forwarding",
                "x11-forwarding",
                "user-rc",
            )
        ),
    }
)

_OPTION_NAME = re.compile(r"[A-Za-z0-9-]+")


@attrs.frozen
class AuthorizedKey:
    """
    One line of a keys file.

    @ivar key: the public key (a CA's, for C{cert-authority}).
    @ivar certAuthority: the key certifies other keys for this name.
    @ivar principals: the principals a certificate must name one of, if
        not the avatar name.
    @ivar fromPatterns: the client addresses the line is limited to.
    @ivar expires: the POSIX time after which the line no longer holds
        (C{expiry-time=}).
    """

    key: PublicKey
    certAuthority: bool = False
    principals: tuple[str, ...] | None = None
    fromPatterns: AddressPatterns | None = None
    expires: float | None = None

    @property
    def limited(self) -> bool:
        """
        Whether the line holds only for some addresses or until some time.
        """
        return self.fromPatterns is not None or self.expires is not None

    def allows(self, address: str | None, now: float) -> bool:
        """
        Whether the line holds for a client at C{address} at time C{now}.
        """
        if self.expires is not None and now > self.expires:
            return False
        return self.fromPatterns is None or self.fromPatterns.matches(address)


def splitOptions(text: str) -> tuple[list[tuple[str, str | None]], str]:
    """
    Split OpenSSH options off the start of C{text}.

    @return: the options as (lower-case name, value or C{None}) and the
        rest of the text.
    @raise ValueError: for options that do not parse.
    """
    options: list[tuple[str, str | None]] = []
    i, end = 0, len(text)
    while True:
        match = _OPTION_NAME.match(text, i)
        if match is None:
            raise ValueError("expected options or a key type after the name")
        name, i = match.group().lower(), match.end()
        value = None
        if text.startswith('="', i):
            i, chars = i + 2, []
            while not text.startswith('"', i):
                if i >= end:
                    raise ValueError(f"option {name}: no closing quote")
                step = 2 if text.startswith('\\"', i) else 1
                chars.append(text[i + step - 1])
                i += step
            value, i = "".join(chars), i + 1
        elif text.startswith("=", i):
            raise ValueError(f"option {name}: its value must be in double quotes")
        options.append((name, value))
        if text.startswith(",", i):
            i += 1
        elif i < end and text[i] in " \t":
            return options, text[i:].strip()
        else:
            raise ValueError("expected a key after the options")


def parseExpiry(text: str) -> float:
    """
    The time of an C{expiry-time=} value, C{YYYYMMDD[HHMM[SS]]}: local time
    as OpenSSH takes it, or UTC with a C{Z} after it.

    @raise ValueError: for anything else.
    """
    utc = text[-1:] in ("Z", "z")
    digits = text[:-1] if utc else text
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    bad = ValueError(
        f"option expiry-time: {text!r} is not YYYYMMDD[HHMM[SS]] (local time),"
        " or that and Z (UTC)"
    )
    if not (digits.isascii() and digits.isdigit()) or len(digits) not in formats:
        raise bad
    try:
        when = datetime.strptime(digits, formats[len(digits)])
    except ValueError:
        raise bad from None
    if utc:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def readOptions(
    options: list[tuple[str, str | None]],
    key: PublicKey,
    ignoreOptions: Collection[str] = (),
) -> AuthorizedKey:
    """
    @param ignoreOptions: options of L{IGNORABLE_OPTIONS} the operator
        says do not apply to keycard logins; the others refuse the line.
    @raise ValueError: for an option not taken, one given twice, one that
        lacks its value or has one it should not.
    """
    values: dict[str, str | None] = {}
    for name, value in options:
        if name in values and name not in _REPEATED_OPTIONS:
            raise ValueError(f"option {name} is given twice")
        values[name] = value
        wantsValue = name in _VALUED_OPTIONS
        if name in _SK_OPTIONS and isinstance(key, SecurityKey):
            pass  # honoured below
        elif name in IGNORABLE_OPTIONS:
            if name not in ignoreOptions:
                raise ValueError(
                    f"option {name} cannot be honoured for a keycard login"
                    f" (sshkeys:FILE:ignore={name} takes the line if it does not apply)"
                )
        elif (
            name not in SESSION_OPTIONS and name != "cert-authority" and not wantsValue
        ):
            raise ValueError(f"option {name} is not supported here")
        if wantsValue and value is None:
            raise ValueError(f'option {name} needs a value: {name}="..."')
        if not wantsValue and value is not None:
            raise ValueError(f"option {name} takes no value")
    certAuthority = "cert-authority" in values
    principals = values.get("principals")
    if principals is not None and not certAuthority:
        raise ValueError("option principals goes with cert-authority")
    fromText = values.get("from")
    expiry = values.get("expiry-time")
    if isinstance(key, SecurityKey):
        key = attrs.evolve(
            key,
            touch="no-touch-required" not in values,
            verified="verify-required" in values,
        )
    return AuthorizedKey(
        key,
        certAuthority=certAuthority,
        principals=None if principals is None else tuple(principals.split(",")),
        fromPatterns=None if fromText is None else AddressPatterns.parse(fromText),
        expires=None if expiry is None else parseExpiry(expiry),
    )


def checkKeyType(key: object) -> PublicKey:
    """
    @raise ValueError: for a key that is not Ed25519, ECDSA or RSA of at
        least L{MIN_RSA_BITS} bits.
    """
    if isinstance(key, dsa.DSAPublicKey):
        raise ValueError(_DSA_REFUSED)
    if isinstance(key, SecurityKey):
        return key
    if not isinstance(
        key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    ):
        raise ValueError("only Ed25519, ECDSA and RSA keys are taken")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(
            f"RSA keys under {MIN_RSA_BITS} bits are refused: this one has"
            f" {key.key_size}; use Ed25519, or RSA of {MIN_RSA_BITS} bits or more"
        )
    return key


_DSA_REFUSED = (
    "DSA keys are refused: too weak (OpenSSH has refused them since 7.0); use Ed25519"
)


def parseLine(
    line: str, ignoreOptions: Collection[str] = ()
) -> tuple[str, AuthorizedKey]:
    """
    Read one line of a keys file.

    @param ignoreOptions: as for L{readOptions}.
    @return: the avatar name and what the line authorizes.
    @raise ValueError: saying what is wrong, never quoting the key.
    """
    name, _, rest = line.strip().partition(" ")
    options: list[tuple[str, str | None]] = []
    first = rest.split(None, 1)[0] if rest.strip() else ""
    if first and first not in KEY_TYPES and not first.endswith(CERT_SUFFIX):
        options, rest = splitOptions(rest.strip())
    rest = rest.strip()
    if not rest:
        raise ValueError("expected name and an OpenSSH public key")
    keyType = rest.split(None, 1)[0]
    if keyType.endswith(CERT_SUFFIX):
        raise ValueError(
            "a certificate is not a key: trust its CA with a cert-authority line"
        )
    if keyType == SK_ED25519:
        return name, readOptions(options, _securityKey(rest), ignoreOptions)
    if keyType.startswith("sk-"):
        raise ValueError(
            f"{keyType} security keys are not taken (only {SK_ED25519} ones):"
            " give this user an Ed25519 key"
        )
    if keyType == "ssh-dss":
        raise ValueError(_DSA_REFUSED)
    try:
        key = serialization.load_ssh_public_key(rest.encode())
    except (ValueError, TypeError, IndexError):
        raise ValueError("expected name and an OpenSSH public key") from None
    except UnsupportedAlgorithm:
        raise ValueError("only Ed25519, ECDSA and RSA keys are taken") from None
    return name, readOptions(options, checkKeyType(key), ignoreOptions)


def _securityKey(text: str) -> SecurityKey:
    parts = text.split()
    try:
        blob = b64decode(parts[1], validate=True)
    except (IndexError, ValueError):
        raise ValueError("expected name and an OpenSSH public key") from None
    return SecurityKey.fromBlob(blob)


def parseAuthorizedKeys(
    text: str, ignoreOptions: Collection[str] = ()
) -> ParsedEntries[list[AuthorizedKey]]:
    """
    Parse C{name [options] keytype base64 [comment]} lines, leaving out bad
    ones.

    @param ignoreOptions: as for L{readOptions}.

    @return: the lines by name, and a problem naming the line number of
        each bad line and what is wrong with it.
    """
    keys: dict[str, list[AuthorizedKey]] = {}

    def add(line: str) -> None:
        name, authorized = parseLine(line, ignoreOptions)
        keys.setdefault(name, []).append(authorized)

    problems = parseLines(text, add)
    return ParsedEntries(keys, problems)


def readAuthorizedKeys(
    text: str, ignoreOptions: Collection[str] = ()
) -> dict[str, list[AuthorizedKey]]:
    """
    Parse C{name [options] keytype base64 [comment]} lines.

    @param ignoreOptions: as for L{readOptions}.

    @raise ValueError: naming the line number of a bad line.
    """
    return parseAuthorizedKeys(text, ignoreOptions).strict()


#: Characters of a certificate line a keycard may carry, at most.
CERTIFICATE_LENGTH = 8192


class CertificateRefused(Exception):
    """
    Raised when a certificate does not hold for a login; the message says
    why, for the server's log only.
    """


def loadCertificate(text: str | bytes) -> SSHCertificate:
    """
    Read a certificate in OpenSSH's one-line format (C{ssh-keygen -s}
    writes it to C{*-cert.pub}).

    @raise ValueError: for anything else.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        certificate = load_ssh_public_identity(data.strip())
    except (ValueError, TypeError, IndexError, UnsupportedAlgorithm):
        raise ValueError("not an OpenSSH certificate") from None
    if not isinstance(certificate, SSHCertificate):
        raise ValueError(f"not an OpenSSH certificate (*{CERT_SUFFIX})")
    return certificate


def certificateOf(text: str | bytes, key: PublicKey) -> str:
    """
    A certificate of C{key}, in one-line form without its comment.

    @raise ValueError: if C{text} is not a certificate of C{key}.
    """
    certificate = loadCertificate(text)
    if _openssh(checkKeyType(certificate.public_key())) != _openssh(key):
        raise ValueError("the certificate is not one of this key")
    return certificate.public_bytes().decode("ascii")


def _openssh(key: PublicKey) -> bytes:
    if isinstance(key, SecurityKey):
        return SK_ED25519.encode() + b" " + b64encode(key.blob())
    return key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def certifiedKey(
    certificate: SSHCertificate,
    authorities: Sequence[AuthorizedKey],
    name: str,
    address: str | None,
    now: float,
) -> PublicKey:
    """
    The key a certificate certifies for logging in as C{name} from
    C{address} at time C{now}.

    @param authorities: the name's lines; only C{cert-authority} lines whose
        C{from=} allows C{address} count.
    @raise CertificateRefused: if the certificate is not signed by one of
        them, not a valid user certificate for C{name} now, or has a
        critical option not taken.
    """
    try:
        signer = _openssh(checkKeyType(certificate.signature_key()))
    except ValueError:
        raise CertificateRefused("not signed by a CA trusted for this name") from None
    # Checked first, whoever signed: checked only for a trusted signer, it
    # would take longer for a name that trusts the signer, telling whoever
    # holds a certificate from that CA which names exist.
    try:
        certificate.verify_cert_signature()
    except (InvalidSignature, UnsupportedAlgorithm):
        raise CertificateRefused("bad CA signature") from None
    trusted = [
        a
        for a in authorities
        if a.certAuthority and a.allows(address, now) and _openssh(a.key) == signer
    ]
    if not trusted:
        raise CertificateRefused("not signed by a CA trusted for this name")
    if certificate.type is not SSHCertificateType.USER:
        raise CertificateRefused("not a user certificate")
    if now < certificate.valid_after:
        raise CertificateRefused("not valid yet")
    if now >= certificate.valid_before:
        raise CertificateRefused("expired")
    named = set(certificate.valid_principals)
    if not any(
        p.encode("utf-8") in named for a in trusted for p in a.principals or (name,)
    ):
        raise CertificateRefused("no principal allowed here")
    for option, value in certificate.critical_options.items():
        if option != b"source-address":
            raise CertificateRefused("critical option not supported")
        if not _sourceAllows(value, address):
            raise CertificateRefused("source-address does not allow the client")
    try:
        return checkKeyType(certificate.public_key())
    except ValueError as e:
        raise CertificateRefused(str(e)) from None


def _sourceAllows(value: bytes, address: str | None) -> bool:
    """
    Whether C{source-address}'s comma-separated networks hold C{address};
    one that does not parse holds none.
    """
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(normalizeAddress(address))
        networks = [
            ipaddress.ip_network(n.strip(), strict=False)
            for n in value.decode("ascii").split(",")
        ]
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)
