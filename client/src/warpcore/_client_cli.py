"""The `warpcore` console script. gRPC's C core reads GRPC_VERBOSITY once, when grpc is first imported, and unless
told otherwise logs on stderr, ahead of the command's own one-line error, lines of its own (e.g. each failed TLS
handshake, or a certificate it cannot load): so the default is set here, before warpcore.client imports grpc. A
GRPC_VERBOSITY of the user's own wins, and so does GRPC_TRACE, whose traces are such log lines."""

from __future__ import annotations

import os


def main() -> int:
    if not os.environ.get("GRPC_TRACE"):
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from warpcore.client.cli import main as run  # only now may grpc be imported

    return run()
