"""
The C{keycard} command: make and administer a data directory, and log in;
its arguments, every one with its help, and errors of one line.
"""

from __future__ import annotations

import argparse
import difflib
import getpass
import hmac
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.error import ConnectError, ConnectionLost

from twisted_keycard._printable import printable
from twisted_keycard._version import __version__
from twisted_keycard.admin import _operations as admin
from twisted_keycard.admin._login import DEFAULT_TIMEOUT, KINDS
from twisted_keycard.admin._operations import EXIT_ERROR, init
from twisted_keycard.error import KeycardError
from twisted_keycard.service import DataDir
from twisted_keycard.store.sqlite import FORMAT

__all__ = ["main"]

#: The exit status after Ctrl-C, as a shell reports a process SIGINT ended.
EXIT_INTERRUPTED = 130


#: What argparse takes for a negative number rather than an option.
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose errors are one line, as every other error of
    the command is, and whose first error is an unknown option, with the
    option it most likely stands for: a mistyped C{--conect} is not
    reported as a missing C{--connect}.
    """

    _hasCommands = False

    def add_subparsers(self, **kwargs: Any) -> Any:
        self._hasCommands = True
        return super().add_subparsers(**kwargs)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        # Called for each command's parser too, with its own arguments.
        given = list(sys.argv[1:] if args is None else args)
        self._refuseUnknownOptions(given)
        return super().parse_known_args(given, namespace)

    def error(self, message: str) -> NoReturn:
        self._fail(message)

    def _fail(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: {message} (see: {self.prog} --help)\n")

    def _refuseUnknownOptions(self, args: Sequence[str]) -> None:
        """
        Stop at the first of C{args} that looks like an option this parser
        does not have.  A parser of commands looks only before the command:
        the command's parser checks the rest.
        """
        for arg in args:
            if arg == "--" or (self._hasCommands and not arg.startswith("-")):
                return
            if self._isUnknownOption(arg):
                name = arg.partition("=")[0]
                known = [o for o in self._option_string_actions if o.startswith("--")]
                close = difflib.get_close_matches(name, known, n=1)
                hint = f": did you mean {close[0]}?" if close else ""
                self._fail(f"unknown option {printable(name)}{hint}")

    def _isUnknownOption(self, arg: str) -> bool:
        # As argparse tells options from values: a lone "-", a negative
        # number or a string with a space is a value.
        if len(arg) < 2 or not arg.startswith("-") or " " in arg:
            return False
        if _NEGATIVE_NUMBER.match(arg):
            return False
        # argparse keeps every option string of the parser in this mapping.
        options = self._option_string_actions
        name = arg.partition("=")[0]
        if name in options or arg[:2] in options:
            return False
        # An abbreviation of a long option is taken (or refused as ambiguous).
        return not (name.startswith("--") and any(o.startswith(name) for o in options))


def seconds(minimum: float, inclusive: bool) -> Callable[[str], float]:
    """
    An argument type: a finite number of seconds, at least (or, unless
    C{inclusive}, over) C{minimum}.
    """
    bound = f"{minimum:g} or more" if inclusive else f"over {minimum:g}"

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if (
            not math.isfinite(value)
            or value < minimum
            or (value == minimum and not inclusive)
        ):
            raise argparse.ArgumentTypeError(
                f"takes a number of seconds, {bound}, not {text!r}"
            )
        return value

    return convert


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="keycard",
        description="Administer a keycard bouncer and log in to it.",
        epilog="Exit status: 0 done, 1 refused (or nothing matched), 2 error.",
    )
    top.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {__version__} (SQLite store format {FORMAT})",
        help="show the version and the SQLite store format it writes, and exit",
    )
    sub = top.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def dataDir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            metavar="DIR",
            help="data directory (default: $KEYCARD_DATA_DIR, else ./keycard-data)",
        )

    init = sub.add_parser("init", help="make a data directory")
    init.add_argument(
        "directory",
        metavar="DIR",
        nargs="?",
        help="where (default: $KEYCARD_DATA_DIR, else ./keycard-data)",
    )
    init.add_argument(
        "--store",
        metavar="URL",
        help="keep keycards, revocations and keys in this store, shared by every"
        " bouncer and command on DIR: redis://HOST:PORT/DB, rediss://...?ca=FILE,"
        " redis+sentinel://H1:P1,H2:P2/MASTER/DB, with ?prefix=P"
        " (default: sqlite:DIR/keycard.db)",
    )
    init.add_argument(
        "--store-password-file",
        metavar="FILE",
        help="the file whose first line is the Redis store's password (its path"
        " is kept in DIR; default: $KEYCARD_REDIS_PASSWORD)",
    )
    init.add_argument(
        "--store-key-file",
        metavar="FILE",
        help="with a Redis --store whose secrets another host wrapped: that"
        " host's key-encryption key (its DIR/store.kek), copied into DIR"
        " (default: a new key)",
    )
    init.add_argument(
        "--dev-cert",
        metavar="HOSTNAME",
        help="also make a self-signed TLS certificate for HOSTNAME (development only)",
    )

    user = sub.add_parser("user", help="add, remove or list users")
    users = user.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    for name, text, nameHelp in [
        ("add", "add a user (or set a new password)", "the user's name"),
        (
            "remove",
            "remove a user and revoke their keycards and tokens",
            "the user to remove",
        ),
    ]:
        p = users.add_parser(name, help=text, description=text)
        p.add_argument("name", metavar="NAME", help=nameHelp)
        dataDir(p)
    dataDir(users.add_parser("list", help="list users"))

    login = sub.add_parser(
        "login",
        help="log in to a bouncer",
        description="Log in to a bouncer and print the keycard issued."
        " Passwords and passphrases are read from the terminal, or from the"
        " first line of standard input when it is not one.",
    )
    login.add_argument("user", metavar="USER", nargs="?", help="the name to log in as")
    login.add_argument(
        "--connect",
        metavar="ENDPOINT",
        required=True,
        help="client endpoint: tcp:HOST:PORT, or tls:HOST:PORT:trustRoots=DIR"
        " (ssl: without hostname= is refused: it does not check the server)",
    )
    login.add_argument(
        "--kind",
        choices=KINDS,
        default="scram",
        help="keycard kind to log in with (default: scram); hmac needs"
        " --key-file; sshkey without it signs with the SSH agent's keys;"
        " password only over TLS",
    )
    login.add_argument(
        "--key-file",
        metavar="FILE",
        help="the HMAC key (base64, or the name:key line) or the SSH private"
        " key (OpenSSH or PEM) to log in with, mode 0600; or an SSH public key"
        " (KEY.pub) to pick that key of the SSH agent's",
    )
    login.add_argument(
        "--certificate",
        metavar="FILE",
        help="with --kind sshkey: the key's OpenSSH certificate (KEY-cert.pub)",
    )
    login.add_argument(
        "--save-token", metavar="FILE", help="write the token to FILE (mode 0600)"
    )
    login.add_argument(
        "--token-file", metavar="FILE", help="log in with a saved token, not USER"
    )
    login.add_argument(
        "--timeout",
        type=seconds(0, inclusive=False),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="seconds to wait for the connection, then for the login"
        f" (default: {DEFAULT_TIMEOUT:g})",
    )
    login.add_argument(
        "--wait-for-seat",
        type=seconds(0, inclusive=False),
        default=None,
        metavar="SECONDS",
        help="if the bouncer's seat pool is full and it keeps a queue, wait"
        " in it up to SECONDS, printing the place as it moves, then log in"
        " (default: a full pool refuses at once)",
    )

    listing = sub.add_parser("list", help="list issued keycards")
    listing.add_argument(
        "--json", action="store_true", help="print a JSON array (times in ISO 8601)"
    )
    listing.add_argument("--avatar", metavar="NAME", help="only those of avatar NAME")
    listing.add_argument(
        "--requester", metavar="NAME", help="only those issued through NAME"
    )
    dataDir(listing)

    revoke = sub.add_parser(
        "revoke",
        help="revoke keycards and their tokens",
        description="Revoke keycards and their tokens: every bouncer on the"
        " store refuses them and drops their clients.  Exits 1 when nothing on"
        " record matches.",
    )
    what = revoke.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "keycardId", metavar="ID", nargs="?", help="the keycard id to revoke"
    )
    what.add_argument(
        "--avatar", metavar="NAME", help="revoke every keycard of avatar NAME"
    )
    what.add_argument(
        "--requester",
        metavar="NAME",
        help="revoke every keycard issued through requester NAME",
    )
    revoke.add_argument(
        "--reason",
        default="revoked by an administrator",
        help="why, for the audit log (default: %(default)s)",
    )
    dataDir(revoke)

    keys = sub.add_parser("keys", help="manage the token signing keys")
    keyActions = keys.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    rotate = keyActions.add_parser("rotate", help="make a new signing key")
    rotate.add_argument(
        "--grace",
        type=seconds(0, inclusive=True),
        metavar="SECONDS",
        help="seconds the old keys still verify (default: 3600)",
    )
    dataDir(rotate)
    rewrap = keyActions.add_parser(
        "rewrap",
        help="wrap the Redis store's keyring under a new key-encryption key",
        description="Wrap the Redis store's keyring and mock secret under a"
        " new key-encryption key, written to DIR/store.kek (0600); copy it to"
        " the data directory of every other host of the store.  A data"
        " directory made before wrapping gets its first key, and the"
        " store's secrets kept in clear are wrapped.",
    )
    dataDir(rewrap)
    return top


EXIT_REFUSED = admin.EXIT_REFUSED


class CommandError(Exception):
    """
    A one-line reason to stop, printed without a traceback.
    """


def readPassword(prompt: str = "Password: ", confirm: bool = False) -> str:
    """
    The password: from the terminal prompt, or the first line of standard
    input when it is not a terminal.  Never from the command line.

    @param confirm: on a terminal, ask twice (a new password is typed
        unseen: a typo would be saved), and refuse two that differ.
    """
    if sys.stdin.isatty():
        password = getpass.getpass(prompt)
        if password and confirm:
            again = getpass.getpass("Password (again): ")
            if not hmac.compare_digest(again.encode(), password.encode()):
                raise CommandError("the two passwords differ: nothing changed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password given")
    return password


def run(args: argparse.Namespace) -> int:
    command = args.command
    if command == "init":
        return init(
            args.directory or str(DataDir.default()),
            args.dev_cert,
            args.store,
            args.store_password_file,
            args.store_key_file,
        )
    if command == "login":
        if bool(args.user) == bool(args.token_file):
            raise CommandError("give either USER or --token-file FILE")
        return admin.login(
            args.connect,
            args.user,
            None,
            args.token_file,
            args.save_token,
            kind=args.kind,
            keyFile=args.key_file,
            certificate=args.certificate,
            timeout=args.timeout,
            readSecret=readPassword,
            waitForSeat=args.wait_for_seat,
        )
    directory = DataDir.open(DataDir.default(args.data_dir))
    if command == "user":
        if args.action == "add":
            return admin.userAdd(directory, args.name, readPassword(confirm=True))
        if args.action == "remove":
            return admin.userRemove(directory, args.name)
        return admin.userList(directory)
    if command == "list":
        return admin.listKeycards(directory, args.json, args.avatar, args.requester)
    if command == "revoke":
        return admin.revoke(
            directory, args.keycardId, args.avatar, args.requester, args.reason
        )
    if args.action == "rewrap":
        return admin.rewrapKeys(directory)
    return admin.rotateKeys(directory, args.grace)


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{keycard} console script.
    """
    args = parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        # Ctrl-C, at a prompt or while waiting: one line (on a terminal,
        # after the prompt's), and the status a shell gives for SIGINT.
        start = "\n" if sys.stderr.isatty() else ""
        print(f"{start}keycard: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Whoever read the output has gone (`| head`): stop quietly, as
        # other command-line tools do, with nothing more written to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (CommandError, KeycardError, ValueError, OSError) as e:
        print(f"keycard: {e}", file=sys.stderr)
    except ConnectError as e:
        reason = os.strerror(e.osError) if isinstance(e.osError, int) else str(e)
        print(f"keycard: cannot connect: {reason}", file=sys.stderr)
    except VerificationError:
        print(
            "keycard: TLS failed: the server's certificate does not match the host",
            file=sys.stderr,
        )
    except SSL.Error as e:
        reason = describeTLS(e, getattr(args, "connect", None))
        print(f"keycard: TLS failed: {reason}", file=sys.stderr)
    except ConnectionLost as e:
        reason = describeTLS(e, getattr(args, "connect", None))
        print(f"keycard: connection lost: {reason}", file=sys.stderr)
    except Exception as e:
        # Never a traceback: one line, and the class for a bug report.
        print(f"keycard: failed: {type(e).__name__}: {e}", file=sys.stderr)
    return EXIT_ERROR


def describeTLS(error: Exception, endpoint: str | None = None) -> str:
    """
    A one-line reason for a TLS failure, naming certificate problems; for
    an untrusted certificate, a hint when the C{trustRoots=DIR} of
    C{endpoint} holds certificates under names Twisted does not read.
    """
    text = str(error)
    if "certificate verify failed" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "the server's certificate is not trusted or does not match the host"
            + trustRootsHint(endpoint)
        )
    if "wrong version number" in text or "WRONG_VERSION_NUMBER" in text:
        return "the server does not speak TLS there: is it a tcp: endpoint?"
    return text.splitlines()[0] if text else type(error).__name__


#: Names certificates are often saved under that C{trustRoots=DIR} skips:
#: Twisted reads only its C{*.pem} files.
UNREAD_CERTIFICATES = (".crt", ".cer", ".cert")


def trustRootsHint(endpoint: str | None) -> str:
    """
    A hint for a certificate the client did not trust: the C{trustRoots}
    directory of C{endpoint} holds C{.crt} (or C{.cer}) files, which are
    not read; or C{""}.
    """
    if endpoint is None:
        return ""
    roots = next(
        (
            value
            for part in endpoint.split(":")
            for key, sep, value in [part.partition("=")]
            if sep and key == "trustRoots"
        ),
        None,
    )
    if roots is None or not os.path.isdir(roots):
        return ""
    unread = sorted(
        name for name in os.listdir(roots) if name.lower().endswith(UNREAD_CERTIFICATES)
    )
    if not unread:
        return ""
    return (
        f" (trustRoots={roots} reads only *.pem files, and it holds {unread[0]}:"
        " save the CA certificate there as a .pem file, in PEM form)"
    )


def entry() -> Any:
    """
    Console script entry point.
    """
    os.umask(0o077)
    sys.exit(main())


if __name__ == "__main__":
    entry()
