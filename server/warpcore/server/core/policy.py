"""Whether clients may point the server's API backends elsewhere: the guard against server-side request forgery."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from warpcore.server.core.domain import ApiSettings, BackendSettings
from warpcore.server.core.errors import PermissionDeniedError


@dataclass(frozen=True)
class ApiOverridePolicy:
    """`allow`: clients may send their own base_url and api_key. `allowed_hosts`: if set, the only hosts a
    client-given base_url may name."""

    allow: bool = True
    allowed_hosts: frozenset[str] | None = None

    def check(self, settings: BackendSettings | None, field: str = "settings") -> None:
        if not isinstance(settings, ApiSettings):
            return
        # The organization too: the server's key billed to an organization of a client's choosing.
        if settings.base_url is None and settings.api_key is None and settings.organization is None:
            return
        if not self.allow:
            raise PermissionDeniedError(
                "this server does not accept base_url, api_key or organization from clients: its operator configures"
                " the API backends (server setting --api-overrides)",
                field=field,
                reason="API_OVERRIDE_DENIED",
            )
        if settings.base_url is not None and self.allowed_hosts is not None:
            host = (urlsplit(settings.base_url).hostname or "").lower()
            if host not in self.allowed_hosts:
                raise PermissionDeniedError(
                    f"base_url host {host!r} is not among the hosts this server may call"
                    f" ({', '.join(sorted(self.allowed_hosts))})",
                    field=f"{field}.base_url",
                    reason="API_HOST_NOT_ALLOWED",
                )


def is_loopback(address: str) -> bool:
    """Whether a listen address ("host:port" or "unix:...") is reachable from this machine only."""
    if address.startswith("unix:"):
        return True
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=256)
def names_loopback(host: str | None) -> bool:
    """Whether an HTTP Host header names this machine by a loopback name or address (any port). A request without
    one is taken: browsers always send it, and only they can be made to send requests for another site's page.
    Remembered for the few names a door's clients send, as every request is checked before its body is read."""
    if host is None:
        return True
    if "@" in host:  # a name's user part ("evil.example@localhost"), which no browser sends in a Host header
        return False
    try:
        parts = urlsplit(f"//{host}")
        name = parts.hostname  # lower case, without the port and an IPv6's brackets
        parts.port  # noqa: B018 - read for its check: "localhost:80:90" has a port that is no number
    except ValueError:  # brackets that do not hold an IPv6 address, or a port that is no number in range
        return False
    return name is not None and is_loopback(f"[{name.rstrip('.')}]:0")


def default_policy(mode: str, listen: Iterable[str], allowed_hosts: frozenset[str] | None) -> ApiOverridePolicy:
    """ "allow", "deny", or "auto": allow only when every listen address is loopback or a Unix socket."""
    allow = mode == "allow" or (mode == "auto" and all(is_loopback(address) for address in listen))
    return ApiOverridePolicy(allow=allow, allowed_hosts=allowed_hosts)
