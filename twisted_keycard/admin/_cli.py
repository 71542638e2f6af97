"""
The C{keycard} command: make and administer a data directory, and log in
to a bouncer from the command line.

Every subcommand that works on a data directory takes C{--data-dir DIR}
(default C{$KEYCARD_DATA_DIR}, else C{./keycard-data}), the directory the
bouncer service uses, so they act on a running bouncer's store.  Errors are
one line on standard error and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.error import ConnectError, ConnectionLost

from twisted_keycard.admin import _operations as admin
from twisted_keycard.error import KeycardError
from twisted_keycard.service._datadir import DataDir

EXIT_REFUSED = 1
EXIT_ERROR = 2


class CommandError(Exception):
    """
    A one-line reason to stop, printed without a traceback.
    """


def readPassword(prompt: str = "Password: ") -> str:
    """
    The password: from the terminal prompt, or the first line of standard
    input when it is not a terminal.  Never from the command line.
    """
    if sys.stdin.isatty():
        password = getpass.getpass(prompt)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password given")
    return password


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="keycard", description="Administer a keycard bouncer and log in to it."
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def dataDir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            metavar="DIR",
            help="data directory (default: $KEYCARD_DATA_DIR, else ./keycard-data)",
        )

    init = sub.add_parser("init", help="make a data directory")
    init.add_argument("directory", metavar="DIR", nargs="?")
    init.add_argument(
        "--dev-cert",
        metavar="HOSTNAME",
        help="also make a self-signed TLS certificate for HOSTNAME (development only)",
    )

    user = sub.add_parser("user", help="add, remove or list users")
    users = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in [
        ("add", "add a user (or set a new password)"),
        ("remove", "remove a user"),
    ]:
        p = users.add_parser(name, help=text)
        p.add_argument("name", metavar="NAME")
        dataDir(p)
    dataDir(users.add_parser("list", help="list users"))

    login = sub.add_parser("login", help="log in to a bouncer")
    login.add_argument("user", metavar="USER", nargs="?")
    login.add_argument(
        "--connect",
        metavar="ENDPOINT",
        required=True,
        help="client endpoint: tcp:HOST:PORT, or tls:HOST:PORT:trustRoots=DIR"
        " (ssl: without hostname= is refused: it does not check the server)",
    )
    login.add_argument(
        "--save-token", metavar="FILE", help="write the token to FILE (mode 0600)"
    )
    login.add_argument("--token-file", metavar="FILE", help="log in with a saved token")

    dataDir(sub.add_parser("list", help="list issued keycards"))

    revoke = sub.add_parser("revoke", help="revoke keycards")
    what = revoke.add_mutually_exclusive_group(required=True)
    what.add_argument("keycardId", metavar="ID", nargs="?")
    what.add_argument("--avatar", metavar="NAME")
    what.add_argument("--requester", metavar="NAME")
    revoke.add_argument("--reason", default="revoked by an administrator")
    dataDir(revoke)

    keys = sub.add_parser("keys", help="manage the token signing keys")
    keyActions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = keyActions.add_parser("rotate", help="make a new signing key")
    rotate.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        help="seconds the old keys still verify (default: 3600)",
    )
    dataDir(rotate)
    return top


def run(args: argparse.Namespace) -> int:
    command = args.command
    if command == "init":
        return admin.init(args.directory or str(DataDir.default()), args.dev_cert)
    if command == "login":
        if bool(args.user) == bool(args.token_file):
            raise CommandError("give either USER or --token-file FILE")
        admin.checkEndpoint(args.connect)
        password = readPassword() if args.user else None
        return admin.login(
            args.connect, args.user, password, args.token_file, args.save_token
        )
    directory = DataDir.open(DataDir.default(args.data_dir))
    if command == "user":
        if args.action == "add":
            return admin.userAdd(directory, args.name, readPassword())
        if args.action == "remove":
            return admin.userRemove(directory, args.name)
        return admin.userList(directory)
    if command == "list":
        return admin.listKeycards(directory)
    if command == "revoke":
        return admin.revoke(
            directory, args.keycardId, args.avatar, args.requester, args.reason
        )
    return admin.rotateKeys(directory, args.grace)


def main(argv: Sequence[str] | None = None) -> int:
    """
    The C{keycard} console script.
    """
    args = parser().parse_args(argv)
    try:
        return run(args)
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
        print(f"keycard: TLS failed: {describeTLS(e)}", file=sys.stderr)
    except ConnectionLost as e:
        print(f"keycard: connection lost: {describeTLS(e)}", file=sys.stderr)
    except Exception as e:
        # Never a traceback: one line, and the class for a bug report.
        print(f"keycard: failed: {type(e).__name__}: {e}", file=sys.stderr)
    return EXIT_ERROR


def describeTLS(error: Exception) -> str:
    """
    A one-line reason for a TLS failure, naming certificate problems.
    """
    text = str(error)
    if "certificate verify failed" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return "the server's certificate is not trusted or does not match the host"
    return text.splitlines()[0] if text else type(error).__name__


def entry() -> Any:
    """
    Console script entry point.
    """
    os.umask(0o077)
    sys.exit(main())


__all__ = ["main"]


if __name__ == "__main__":
    entry()
