"""The HTTP door on aiohttp's server, in the process and event loop of the gRPC one: request ids, the bearer token,
refusal while draining and the access log around every route; started and stopped with the gRPC door (doors.py)."""

from __future__ import annotations

import os
import ssl
import time

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_urldispatcher import _default_expect_handler as default_expect_handler

from warpcore.server.core.access import REQUEST_ID_HEADER, log_request, record_failure, recording_usage, request_id
from warpcore.server.core.auth import bearer_token, header_bytes, token_matches
from warpcore.server.core.bounds import quoted
from warpcore.server.core.engine import Engine
from warpcore.server.core.errors import InvalidArgumentError, NotFoundError, UnauthenticatedError, WarpcoreError
from warpcore.server.core.hops import check_hops, hops_named
from warpcore.server.core.limits import shutting_down
from warpcore.server.core.policy import is_loopback, names_loopback
from warpcore.server.http.errors import (
    WHOLE_REQUEST,
    RequestTooLargeError,
    RequestTooSlowError,
    challenge,
    foreign_host,
    http_status,
    not_json,
    retry_headers,
    unsupported_encoding,
    upstream_id,
)
from warpcore.server.http.reasoning_memory import ReasoningMemory
from warpcore.server.http.routes import (
    ENGINE,
    HOPS,
    MEMORY,
    MODEL,
    OUTCOME,
    REQUEST_ID,
    add_routes,
    dialect_of,
    internal,
    request_ids,
)
from warpcore.server.http.targets import Handler, has_body, named_host, routed, target_path
from warpcore.server.http.unreadable import DoorRunner, either_dialect, unreadable_request

DECODED_ENCODINGS = frozenset(("identity", "gzip", "deflate"))
"""The Content-Encodings the door takes a body in (aiohttp decodes them); one at most, as aiohttp undoes no more."""
SHUTDOWN_TIMEOUT = 1.0
"""Seconds handlers still running when the door closes (after the engine's drain) get to write their last event."""
HEALTH = "/health"


class HttpDoor:
    """The OpenAI- and Anthropic-compatible door over `engine`."""

    def __init__(self, engine: Engine, token: str | None, max_body_bytes: int) -> None:
        self._engine = engine
        self._expected = token.encode() if token else None
        self._draining = False
        self._serving = False
        self._max_body_bytes = max_body_bytes
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[self._middleware])
        self.app[ENGINE] = engine
        self.app[MEMORY] = ReasoningMemory()
        add_routes(self.app, self._expect)
        self.app.router.add_get(HEALTH, self._health)
        # Cancelling the handler of a client that went away is what stops its generation upstream.
        self._runner = DoorRunner(
            self.app, self._unreadable, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        self.port = 0
        self._loopback_only = False
        """Whether the door listens on a loopback address: then it takes requests for loopback names only."""

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        """Listen on host:port (0 picks a free port), over TLS with a context; returns the bound port."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=False, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            reason = os.strerror(error.errno) if error.errno else str(error)  # asyncio's strerror quotes the address
            raise RuntimeError(f"cannot serve the HTTP door on {host}:{port}: {reason}") from None
        self.port = int(self._runner.addresses[0][1])
        self._loopback_only = is_loopback(f"{host}:{port}")
        return self.port

    def set_serving(self, serving: bool) -> None:
        """What `GET /health` says, as the gRPC health service says it: serving once the startup models are in."""
        self._serving = serving

    async def _health(self, request: web.Request) -> web.Response:
        """200 while serving, 503 before (models still loading) and while draining; open without the token, as
        probes and load balancers call it."""
        if self._serving and not self._draining:
            return web.json_response({"status": "ok"}, headers=request_ids(request))
        status = "shutting down" if self._draining else "starting"
        request[OUTCOME] = "UNAVAILABLE"  # as the access log and the request count say of a 503
        return web.json_response({"status": status}, status=503, headers=request_ids(request))

    def _unreadable(self, request: web.BaseRequest, error: HttpProcessingError) -> web.Response:
        status, refusal = unreadable_request(error)
        identifier = request[REQUEST_ID] = request_id(None)  # its headers were not read
        log_request(
            self._engine.metrics,
            "http",
            "unreadable",
            refusal.code.name,
            time.monotonic(),
            model="",  # as for any request refused before its body is read
            peer=request.remote,
            request_id=identifier,
        )
        return web.json_response(either_dialect(refusal, identifier), status=status, headers=request_ids(request))

    def refuse_new(self) -> None:
        """From now on, new requests get 503 with Retry-After; those running go on (the engine drains them)."""
        self._draining = True

    async def close(self) -> None:
        if self.port:
            self.port = 0
            await self._runner.cleanup()

    def _admit(self, request: web.Request) -> None:
        """Refuse, before any of its body is read, a request that would be refused once read: while draining,
        without the token, or declaring a body larger than the limit."""
        if self._draining:
            raise shutting_down()
        host = named_host(request)
        if self._loopback_only and not names_loopback(host):
            raise foreign_host(host or "")
        self._check_token(request)
        if "Via" in request.headers:  # a request another gateway passed on
            request[HOPS] = hops_named(request.headers.getall("Via"))
            check_hops(request[HOPS])
        if (request.content_length or 0) > self._max_body_bytes:
            raise self._too_large()
        # Every header line of it: aiohttp decodes by one of them.
        encoding = ",".join(request.headers.getall("Content-Encoding", ())).strip().lower() or "identity"
        if encoding not in DECODED_ENCODINGS:  # aiohttp reads a body in any other but br and zstd as it is
            raise unsupported_encoding()
        media_type = request.headers.get("Content-Type", "")  # aiohttp's content_type says octet-stream when none
        if has_body(request) and not (request.content_type == "application/json" and media_type):
            raise not_json(media_type)

    def _too_large(self) -> RequestTooLargeError:
        return RequestTooLargeError(
            f"the request body is larger than {self._max_body_bytes} bytes", field=WHOLE_REQUEST
        )

    async def _expect(self, request: web.Request) -> None:
        """`Expect: 100-continue`: the client is told to send its body only when it would be read; otherwise no 100
        comes, and the handler answers with the refusal at once (RFC 9110, section 10.1.1). Any other expectation
        is ignored, as the RFC lets a server do, and the request answered as any other (aiohttp's own 417 would
        come in neither dialect's shape, without a request id)."""
        if request.headers.get("Expect", "").strip().lower() != "100-continue":
            return
        try:
            self._admit(request)
        except WarpcoreError:
            return
        await default_expect_handler(request)

    def _check_token(self, request: web.Request) -> None:
        if self._expected is None:
            return
        # Either header may carry it, and a client may send both (an SDK's default key beside the token): the
        # request is let in when one of them holds the token. Each is compared, so the time taken tells nothing.
        presented = (
            header_bytes(request.headers.get("x-api-key", "")),
            bearer_token(request.headers.get("Authorization", "")),
        )
        matches = [token_matches(value, self._expected) for value in presented if value]
        # One value of each at most: with several, which one counts would depend on the order of the headers.
        repeated = any(len(request.headers.getall(name, ())) > 1 for name in ("x-api-key", "Authorization"))
        if repeated or not any(matches):
            raise UnauthenticatedError(
                "missing or wrong token: send 'Authorization: Bearer <token>' or 'x-api-key: <token>'"
            )

    def _error_response(self, request: web.Request, error: WarpcoreError) -> web.Response:
        record_failure(error)
        body = dialect_of(request).error(error, request[REQUEST_ID])
        headers = {**request_ids(request), **retry_headers(error), **upstream_id(error), **challenge(error)}
        response = web.json_response(body, status=http_status(error), headers=headers)
        if request.content.exception() is not None or isinstance(error, RequestTooSlowError):
            response.force_close()  # the body was not read: the connection is done, and the client told so
        elif request.method == hdrs.METH_CONNECT:
            response.force_close()  # what follows on the connection is no request but a tunnel's bytes
        return response

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started, code = time.monotonic(), "CANCELLED"
        request[REQUEST_ID] = request_id(request.headers.get(REQUEST_ID_HEADER))
        route = request.match_info.route.resource
        method = route.canonical if route is not None else "unmatched"
        with recording_usage() as usage:
            try:
                response = await self._respond(request, handler)
                code = request.get(OUTCOME, "OK")
                if self._draining:  # a client that keeps its connection would only be refused on it: it reconnects
                    response.force_close()
                return response
            finally:
                model = request.get(MODEL, "")
                log_request(
                    self._engine.metrics,
                    "http",
                    method,
                    code,
                    started,
                    health=request.match_info.handler == self._health,
                    model=model,
                    peer=request.remote,
                    request_id=request[REQUEST_ID],  # the x-request-id its client got
                    **usage,
                )

    async def _respond(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            handler = await routed(request, handler)
            if target_path(request) == HEALTH:  # open to probes whatever the method, its 405 too
                return await handler(request)
            self._admit(request)
            # In flight from its admission, its body's upload included: the drain gives it the grace, as it gives a
            # generation, where the door's closing would drop the rest of its body unread.
            with self._engine.streams.track():
                return await handler(request)
        except WarpcoreError as error:
            request[OUTCOME] = error.code.name
            return self._error_response(request, error)
        except web.HTTPException as error:
            path = quoted(target_path(request))
            problem: WarpcoreError = NotFoundError(f"no route for {path}", field=WHOLE_REQUEST)
            if isinstance(error, web.HTTPRequestEntityTooLarge):
                problem = self._too_large()
            elif isinstance(error, web.HTTPMethodNotAllowed):
                problem = InvalidArgumentError(
                    f"the method {quoted(request.method)} is not allowed on {path}", field=WHOLE_REQUEST
                )
            request[OUTCOME] = problem.code.name
            response = self._error_response(request, problem)
            response.set_status(error.status)
            if "Allow" in error.headers:  # a 405 says which methods the route takes (RFC 9110)
                response.headers["Allow"] = error.headers["Allow"]
            return response
        except Exception as error:  # noqa: BLE001 - every failure ends as an error response
            request[OUTCOME] = "INTERNAL"
            return self._error_response(request, internal(error))
