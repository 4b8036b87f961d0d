"""The warpcore servers a request has passed through, and the refusal of one that comes back: a model whose base URL
leads, directly or through other warpcore servers, to a server the request already passed would call itself until its
deadline, each hop holding a stream of its model's limit."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from warpcore.server.core.errors import FailedPreconditionError

THIS_SERVER = f"warpcore-{secrets.token_hex(6)}"
"""This process's name among the hops: random, so that it says nothing of the machine or the operator."""
MAX_HOPS = 8
"""Warpcore servers a request may have passed before this one: more is taken for a loop too."""
_HOP = re.compile(r"warpcore-[0-9a-f]{12}")
_VIA_PROTOCOL = "1.1"


def hops_named(via_values: Iterable[str]) -> tuple[str, ...]:
    """The warpcore servers that HTTP `Via` header values name, in order (RFC 9110, section 7.6.3: each entry is a
    protocol, a name and an optional comment); the other entries are no server of ours, and are not passed on."""
    names = (entry.split()[1:2] for value in via_values for entry in value.split(","))
    return tuple(name[0] for name in names if name and _HOP.fullmatch(name[0]))


def check_hops(hops: tuple[str, ...]) -> None:
    """Refuse a request that has already passed through this server, or through more servers than a chain has."""
    if THIS_SERVER in hops or len(hops) >= MAX_HOPS:
        passed = "this server" if THIS_SERVER in hops else f"{len(hops)} warpcore servers"
        raise FailedPreconditionError(
            f"this request has already passed through {passed} (its Via header says so): a model's base_url leads"
            " back to a server it came through; point it at the API that answers the model",
            reason="REQUEST_LOOP",
        )


def via_header(hops: tuple[str, ...] = ()) -> dict[str, str]:
    """The `Via` header of a request this server sends upstream: the hops it came through, then this server."""
    return {"Via": ", ".join(f"{_VIA_PROTOCOL} {hop}" for hop in (*hops, THIS_SERVER))}
