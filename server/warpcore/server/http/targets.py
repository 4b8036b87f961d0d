"""What a request's target names, read as an origin server reads it where aiohttp reads it as a proxy would: the host
of a target in absolute form, and the path of a CONNECT."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def target_path(request: web.BaseRequest) -> str:
    """The path a request names. aiohttp reads a CONNECT's target as the authority of the tunnel a proxy would open,
    and gives it an empty path: the door, no proxy, reads it as any other method's (a path, or else an authority that
    no route takes)."""
    if request.method == hdrs.METH_CONNECT:
        return request.raw_path.partition("?")[0]
    return request.path


def named_host(request: web.BaseRequest) -> str | None:
    """The host a request is for: the authority of a target in absolute form (`POST http://host/v1/...`), which
    RFC 9112 (section 3.2.2) has a server take in place of the Host header, else its Host header (if any)."""
    target = request.raw_path
    if request.method != hdrs.METH_CONNECT and not target.startswith("/") and target != "*":
        return urlsplit(target).netloc  # aiohttp took it only with an authority
    return request.headers.get(hdrs.HOST)


def has_body(request: web.BaseRequest) -> bool:
    """Whether a request carries a body: a CONNECT has none (RFC 9110, section 9.3.6), what aiohttp reads after its
    head being the bytes of a tunnel."""
    return request.body_exists and request.method != hdrs.METH_CONNECT


async def routed(request: web.Request, handler: Handler) -> Handler:
    """The handler of the route a request's path names: a CONNECT's is matched by `target_path`, as any other method's
    path is, to its route's 405 naming the methods the route takes, or to a 404."""
    path = target_path(request)
    if request.method != hdrs.METH_CONNECT or not path.startswith("/"):
        return handler
    return (await request.app.router.resolve(request.clone(rel_url=path))).handler
