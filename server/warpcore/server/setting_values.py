"""The rules of setting values the server reads from flags and environment variables (switches, ranges, listen
addresses and the ports of its listeners, host lists); each refusal names the setting, as the operator gave it (flag
or variable). A command line argparse cannot read is refused alike, and the log format asked for is read apart, for the
line saying why the start was refused."""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

from warpcore._addresses import MAX_PORT
from warpcore.server.core.bounds import parse_bool, parse_bytes

PORT_RANGE = (0, MAX_PORT)  # port 0: one the system picks
_ALL_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
_UNIX = ("unix:", "unix-abstract:")
_HOST_NAME = re.compile("[a-z0-9_]([a-z0-9_.-]*[a-z0-9_.])?")


LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A setting that cannot be used; the message says which and why."""


class UsageError(SettingsError):
    """A command line argparse cannot read: an unknown flag, a flag's value of the wrong type or not one of its
    choices. As for any command, its status is 2, and `usage` goes before the line in text."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class SettingsParser(argparse.ArgumentParser):
    """argparse's parser, raising its usage errors where argparse prints them to stderr: the command prints them in
    the log format asked for (cli.py), as every other refused setting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage())


def requested_log_format(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The log format asked for, read apart from the settings refused (or the command line argparse could not read),
    for the line saying so: the last --log-format given, else WARPCORE_LOG_FORMAT, the first of the two naming a
    format (a flag naming none may have a variable that does: a manifest's JSON logs); else text, the default."""
    given = [
        arg.partition("=")[2] if arg.startswith("--log-format=") else argv[index + 1]
        for index, arg in enumerate(argv)
        if arg.startswith("--log-format=") or (arg == "--log-format" and index + 1 < len(argv))
    ]
    for value in (*given[-1:], env.get("WARPCORE_LOG_FORMAT")):
        if value in LOG_FORMATS:
            return value
    return "text"


def env_flag(env: Mapping[str, str], variable: str, *, default: bool) -> bool:
    """The on/off setting of a variable (a flag's, such as --allow-pull's), `default` when it is unset or empty."""
    value = env.get(variable)
    if not value:
        return default
    parsed = parse_bool(value)
    if parsed is None:
        raise SettingsError(f"{variable} must be 1 or 0 (true/false, yes/no, on/off): {value}")
    return parsed


def size_setting(name: str, text: str | None) -> int | None:
    """The bytes of the size setting `name` (8GiB, 512M), None when it is not given."""
    if text is None:
        return None
    if not (size := parse_bytes(text)):
        raise SettingsError(f"{name} must be a size such as 8GiB or 512M: {text}")
    return size


def security_file(text: str) -> Path:
    """The file a security setting names (--token-file, --tls-*), an argparse type. An empty name is refused: read,
    it would be the working folder (Path("") is "."); taken as unset, the server would serve without a token or
    TLS, in silence. Its variable, set but empty, is refused alike (settings.py)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the file's name is empty: name the file, or leave the flag out")
    return Path(text)


def check_range(name: str, value: float, low: float, high: float) -> None:
    """`value` of the setting `name` between `low` and `high` (math.inf: no upper bound), and finite."""
    if not (low <= value <= high and math.isfinite(value)):  # --grace inf never ends
        bounds = f"at least {low}" if math.isinf(high) else f"{low} to {high}"
        raise SettingsError(f"{name} is out of range ({bounds}): {value}")


def listen_addresses(text: str, name: str) -> tuple[str, ...]:
    """The comma-separated addresses of `text`: unix: paths (unix-abstract: names), and host:port with a port in
    PORT_RANGE and an IPv6 host in brackets, as gRPC reads them. gRPC itself would bind a port out of range modulo
    65536, and a host without one to port 443."""
    addresses = tuple(address.strip() for address in text.split(",") if address.strip())
    if not addresses:
        raise SettingsError(f"{name} holds no address: give host:port or unix:path, comma-separated")
    for address in addresses:
        if address.startswith(("unix:", "unix-abstract:")):
            continue
        host, colon, port = address.rpartition(":")
        if not colon or (":" in host and not (host.startswith("[") and host.endswith("]"))):
            raise SettingsError(
                f"{name} {address} has no port: give host:port (an IPv6 host in brackets, [::1]:50051) or unix:path"
            )
        if not (port.isascii() and port.isdigit()):
            raise SettingsError(f"{name} {address}: the port must be an integer")
        check_range(f"{name} port", int(port), *PORT_RANGE)
    return addresses


def host_names(text: str, name: str) -> frozenset[str]:
    """The comma-separated host names (or IP addresses) of `text`, as a base URL's host is compared with them: in
    lower case, without scheme, port or path, which would never match one."""
    hosts = frozenset(host.strip().lower() for host in text.split(",") if host.strip())
    if not hosts or not all(_is_host(host) for host in hosts):
        raise SettingsError(
            f"{name} must list host names or IP addresses (api.openai.com, 10.0.0.5), comma-separated, without"
            " scheme, port or path"
        )
    return frozenset(host.strip("[]") for host in hosts)


def _is_host(host: str) -> bool:
    if _HOST_NAME.fullmatch(host):
        return True
    try:
        ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def check_own_ports(listeners: Sequence[tuple[str, str]]) -> None:
    """Each of the server's listeners, (the setting that names it, its address), on a port of its own: the second
    bind of a port would fail with "Address already in use", which says nothing of the server's own other listener.
    Port 0 is picked anew for each; one port on two hosts is two addresses, unless one host is all of them."""
    for index, (name, address) in enumerate(listeners):
        for other, earlier in listeners[:index]:
            if not _clash(earlier, address):
                continue
            if address == earlier and name == other:
                raise SettingsError(f"{name} names {address} twice")
            port = address.rpartition(":")[2]
            both = f"{name}: {earlier} and {address}" if name == other else f"{other} and {name}"
            raise SettingsError(
                f"{both} both name port {port}: the server's own listeners cannot share a port: give each its own"
            )


def _clash(first: str, second: str) -> bool:
    if first.startswith(_UNIX) or second.startswith(_UNIX):
        return first == second
    first_host, _, first_port = first.rpartition(":")
    second_host, _, second_port = second.rpartition(":")
    hosts = {first_host, second_host}
    return first_port == second_port and int(first_port) != 0 and (len(hosts) == 1 or bool(hosts & _ALL_HOSTS))
