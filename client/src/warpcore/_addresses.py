"""The ports of gRPC addresses, read alike wherever one is given: gRPC takes a port past MAX_PORT without a word and
wraps it round (127.0.0.1:99999 dials port 34463). It sits outside warpcore.client, as _keep_alive does, so that the
server reads it without importing grpc."""

from __future__ import annotations

MAX_PORT = 65535
_NO_PORT = ("unix", "unix-abstract", "vsock")
"""Schemes of addresses that name no TCP port: a socket's path, or a VM socket's own port (32 bits)."""


def written_ports(address: str) -> list[str]:
    """The ports a gRPC address names, as written, unchecked: of host:port and [v6]:port, bare or behind a dns:, ipv4:
    or ipv6: scheme (each of an ipv4: or ipv6: list's); none of a socket's, a bare host's or a bare IPv6 address's."""
    scheme, colon, rest = address.partition(":")
    if scheme in _NO_PORT:
        return []
    if scheme == "dns" and colon:
        hosts = [rest.removeprefix("//").partition("/")[2] if rest.startswith("//") else rest]  # past an authority
    elif scheme in ("ipv4", "ipv6") and colon:
        hosts = rest.split(",")
    else:
        hosts = [address]
    return [port for host in hosts if (port := _port(host)) is not None]


def _port(host_port: str) -> str | None:
    if host_port.startswith("["):
        after = host_port.partition("]")[2]
        return after[1:] if after.startswith(":") else None
    host, colon, port = host_port.rpartition(":")
    return port if colon and ":" not in host else None
