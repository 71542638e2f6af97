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
from twisted_keycard.admin._init import init
from twisted_keycard.admin._parser import parser
from twisted_keycard.error import KeycardError
from twisted_keycard.service._datadir import DataDir

EXIT_REFUSED = admin.EXIT_REFUSED
EXIT_ERROR = admin.EXIT_ERROR


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


def run(args: argparse.Namespace) -> int:
    command = args.command
    if command == "init":
        return init(
            args.directory or str(DataDir.default()),
            args.dev_cert,
            args.store,
            args.store_password_file,
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
        )
    directory = DataDir.open(DataDir.default(args.data_dir))
    if command == "user":
        if args.action == "add":
            return admin.userAdd(directory, args.name, readPassword())
        if args.action == "remove":
            return admin.userRemove(directory, args.name)
        return admin.userList(directory)
    if command == "list":
        return admin.listKeycards(directory, args.json, args.avatar, args.requester)
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
    if "wrong version number" in text or "WRONG_VERSION_NUMBER" in text:
        return "the server does not speak TLS there: is it a tcp: endpoint?"
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
