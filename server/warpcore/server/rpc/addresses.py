"""Listen addresses: a host and port joined as gRPC reads them, and an address refused with the system's reason
before gRPC tries it (gRPC's refusal names no reason, and says why only on stderr, past any log format)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat


def host_port(host: str, port: int) -> str:
    """`host:port` as gRPC reads it: an IPv6 host in brackets ("[::1]:50051")."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def check_free(address: str) -> None:
    """RuntimeError, saying why, for an address this process cannot listen on: a TCP port no socket can bind, or a
    Unix socket path where a server listens already (gRPC would replace its socket file, and take over its clients)
    or where some other file is."""
    if address.startswith("unix:"):
        _check_unix(address, address.removeprefix("unix:").removeprefix("//"))
        return
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return
    try:  # port 0 too: a host no socket can bind fails whatever the port
        found = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as error:  # a name this machine does not resolve, an address that is none
        raise RuntimeError(f"cannot listen on {address}: {error.strerror}") from None
    errors: list[OSError] = []
    for family, kind, proto, _, bound in found:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds: a port in TIME_WAIT is free
            try:
                probe.bind(bound)
                return  # gRPC binds what it can of a name's addresses
            except OSError as error:
                errors.append(error)
    if errors:
        raise RuntimeError(f"cannot listen on {address}: {errors[0].strerror}")


def _check_unix(address: str, path: str) -> None:
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise RuntimeError(f"cannot listen on {address}: the folder {folder} does not exist")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # nothing there (or a folder gRPC will name)
    if not stat.S_ISSOCK(mode):
        raise RuntimeError(
            f"cannot listen on {address}: a file that is no socket is there; remove it or choose another"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe, contextlib.suppress(OSError):
        probe.connect(path)  # refused: a socket left by a server that is gone, which gRPC replaces
        raise RuntimeError(f"cannot listen on {address}: a server is listening there ({os.strerror(errno.EADDRINUSE)})")
