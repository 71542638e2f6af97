"""
The lines of the sshkeys checker's keys file: C{name [options] keytype
base64 [comment]}, that is an OpenSSH C{authorized_keys} line after the
avatar name it logs in as.

Options follow OpenSSH's syntax (comma-separated, values in double quotes,
which may hold commas and C{\\"}; names in any case).  Taken:

 - C{from="PATTERNS"}: the key is taken only from a client address that
   matches (see L{twisted_keycard._addresspatterns});
 - C{cert-authority}: the key is a certificate authority, trusted to
   certify keys for this name (see L{twisted_keycard._sshcertificate});
 - C{principals="a,b"}: with C{cert-authority}, the certificate must name
   one of these principals (instead of the avatar name);
 - C{restrict}, C{no-pty}, C{no-port-forwarding}, C{no-agent-forwarding},
   C{no-X11-forwarding}, C{no-user-rc} and their positive forms: they limit
   an SSH session, and there is none here, so they change nothing.

Any other option (C{command=}, C{expiry-time=}, ...) makes the line bad: a
key restricted in a way that cannot be enforced here is not taken.
"""

from __future__ import annotations

import re

import attrs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from twisted_keycard._addresspatterns import AddressPatterns
from twisted_keycard._entriesfile import ParsedEntries, parseLines

MIN_RSA_BITS = 2048

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

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
    """

    key: PublicKey
    certAuthority: bool = False
    principals: tuple[str, ...] | None = None
    fromPatterns: AddressPatterns | None = None

    def allows(self, address: str | None) -> bool:
        """
        Whether the line holds for a client at C{address}.
        """
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


def readOptions(options: list[tuple[str, str | None]], key: PublicKey) -> AuthorizedKey:
    """
    @raise ValueError: for an option not taken, one given twice, one that
        lacks its value or has one it should not.
    """
    values: dict[str, str | None] = {}
    for name, value in options:
        if name in values:
            raise ValueError(f"option {name} is given twice")
        values[name] = value
        wantsValue = name in ("from", "principals")
        if name not in SESSION_OPTIONS and name != "cert-authority" and not wantsValue:
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
    return AuthorizedKey(
        key,
        certAuthority=certAuthority,
        principals=None if principals is None else tuple(principals.split(",")),
        fromPatterns=None if fromText is None else AddressPatterns.parse(fromText),
    )


def checkKeyType(key: object) -> PublicKey:
    """
    @raise ValueError: for a key that is not Ed25519, ECDSA or RSA of at
        least L{MIN_RSA_BITS} bits.
    """
    if not isinstance(
        key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    ):
        raise ValueError("only Ed25519, ECDSA and RSA keys are taken")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RSA keys need at least {MIN_RSA_BITS} bits")
    return key


def parseLine(line: str) -> tuple[str, AuthorizedKey]:
    """
    Read one line of a keys file.

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
    if rest.split(None, 1)[0].endswith(CERT_SUFFIX):
        raise ValueError(
            "a certificate is not a key: trust its CA with a cert-authority line"
        )
    try:
        key = serialization.load_ssh_public_key(rest.encode())
    except (ValueError, TypeError, IndexError):
        raise ValueError("expected name and an OpenSSH public key") from None
    except UnsupportedAlgorithm:
        raise ValueError("only Ed25519, ECDSA and RSA keys are taken") from None
    return name, readOptions(options, checkKeyType(key))


def parseAuthorizedKeys(text: str) -> ParsedEntries[list[AuthorizedKey]]:
    """
    Parse C{name [options] keytype base64 [comment]} lines, leaving out bad
    ones.

    @return: the lines by name, and a problem naming the line number of
        each bad line and what is wrong with it.
    """
    keys: dict[str, list[AuthorizedKey]] = {}

    def add(line: str) -> None:
        name, authorized = parseLine(line)
        keys.setdefault(name, []).append(authorized)

    problems = parseLines(text, add)
    return ParsedEntries(keys, problems)


def readAuthorizedKeys(text: str) -> dict[str, list[AuthorizedKey]]:
    """
    Parse C{name [options] keytype base64 [comment]} lines.

    @raise ValueError: naming the line number of a bad line.
    """
    return parseAuthorizedKeys(text).strict()
