"""The `warpcore-server` command (and `python -m warpcore.server`). gRPC's C core reads GRPC_VERBOSITY once, when
grpc is first imported, and logs on stderr in a format of its own, outside the server's log and its JSON lines: at
its default level, a line for each failed TLS handshake, which any peer can cause, without limit. So the default is
ERROR, set here before anything imports grpc; an operator's GRPC_VERBOSITY wins, and so does GRPC_TRACE, whose
traces are such lines.

The stop signals are taken first, before the server's modules are imported (stop_signals.py)."""

from __future__ import annotations

import os

from warpcore.server.stop_signals import exit_when_stopped


def main() -> None:
    exit_when_stopped()
    if not os.environ.get("GRPC_TRACE"):
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    from warpcore.server.cli import main as serve  # only now may grpc be imported

    serve()
