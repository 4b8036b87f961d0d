"""How the warpcore command words a failed call: its status and message, and, when no server answered, what to
check."""

from __future__ import annotations

import argparse
import errno
import os

from warpcore.client import DeadlineExceededError, ResponseParseError, UnavailableError, WarpcoreError

NO_SERVER = (
    "no warpcore server answered there: start warpcore-server, or name its address with --target or WARPCORE_TARGET;"
    " add --tls for a server that serves TLS"
)
NO_TLS_SERVER = (
    "no warpcore server answered there over TLS: check --target and --root-certificates (the CAs that signed the"
    " server's certificate), or drop --tls for a server that serves plaintext"
)
SOCKET_REFUSED = (
    "the socket refused this user: connecting takes write permission on the socket and search permission on its"
    " folders; compare their owner, group and mode (ls -l) with this user's (id), and run as the socket's owner or in"
    " its group (a sidecar's application runs with the server's UID or GID: docs/deploying.md)"
)
_DENIED = os.strerror(errno.EACCES)
"""How gRPC words a connect() that EACCES refused: in the C library's words, which this process shares."""


def failure_words(error: WarpcoreError, args: argparse.Namespace) -> str:
    """`STATUS: message` for a failed call; a deadline passed as --timeout's, when it was given and gRPC ended the
    call (the SDK names it as the client's timeout option, which the command's user knows as --timeout). The server's
    own DEADLINE_EXCEEDED (an upstream's timeout) carries its reason, and its words say whose it was. An answer that
    does not parse is no failed call: no status."""
    if isinstance(error, ResponseParseError):  # asked for by --json-schema, the only format the commands take
        return str(error).replace("as response_format asks", "as --json-schema asks", 1)
    if isinstance(error, DeadlineExceededError) and args.timeout is not None and not error.reason:
        return f"{error.status.name}: timed out after {args.timeout:g} s (--timeout)"
    if isinstance(error, UnavailableError) and not error.request_id:  # no server answered: gRPC's words alone
        return f"{error.status.name}: {error.message} ({_unanswered_hint(error.message, args)})"
    return f"{error.status.name}: {error.message}"


def _unanswered_hint(message: str, args: argparse.Namespace) -> str:
    # A Unix socket's mode refused the connection, whether or not a server listens there. Over TCP, a connect() that
    # EACCES refuses is a firewall's, and the address is no unix: one.
    if "unix:" in message and _DENIED in message:
        return SOCKET_REFUSED
    tls = args.tls or any((args.root_certificates, args.client_certificate, args.client_key))
    return NO_TLS_SERVER if tls else NO_SERVER
