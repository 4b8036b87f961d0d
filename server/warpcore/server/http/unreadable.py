"""Requests the door cannot read. Bytes aiohttp cannot parse as one (a header over its size limit, a malformed line):
aiohttp's own answer quotes the offending bytes, which may be a credential, in a plain-text body and in an ERROR log
line with its traceback; the door's says what was wrong and not what was sent, in the body both SDKs parse, with a
request id, and the access log has its line as for any other refusal. And a request whose head does not arrive
within bounds.HEAD_READ_SECONDS: its connection is closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError, LineTooLong

from warpcore.server.core import bounds
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.http.errors import anthropic_error, openai_error, unsupported_encoding

Refusal = Callable[[web.BaseRequest, HttpProcessingError], web.Response]
"""The door's answer to a request aiohttp could not read, given the error that says why."""


def unreadable_request(error: HttpProcessingError) -> tuple[int, InvalidArgumentError]:
    """The status and the refusal for a request aiohttp could not read, naming no byte of it."""
    if isinstance(error, LineTooLong):
        limit = error.args[1]
        refusal = InvalidArgumentError(
            f"a request header (or the request line) is longer than {limit} bytes, the most this server reads;"
            " send a shorter one",
            reason="REQUEST_HEADER_TOO_LARGE",
        )
        return HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, refusal
    if isinstance(error, ContentEncodingError):
        return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, unsupported_encoding()
    refusal = InvalidArgumentError(
        f"the request is not HTTP/1.1 this server can read ({type(error).__name__}); nothing of it was used",
        reason="MALFORMED_HTTP_REQUEST",
    )
    return HTTPStatus.BAD_REQUEST, refusal


def either_dialect(refusal: InvalidArgumentError, request_id: str) -> dict[str, Any]:
    """One error body that both SDKs read, for a request whose path and headers, which would tell its dialect, were
    not read: Anthropic's, whose `error` member also holds OpenAI's `param` and `code`."""
    anthropic = anthropic_error(refusal, request_id, {})
    return {**anthropic, "error": {**openai_error(refusal, {})["error"], **anthropic["error"]}}


class _DoorConnection(web_protocol.RequestHandler):
    """aiohttp's handler of one connection, which answers a request it cannot read with the door's refusal."""

    def __init__(self, server: web.Server, refuse: Refusal) -> None:
        # aiohttp closes a connection whose next request's head has not come whole within its keep-alive timeout,
        # from the connection's start too: an hour by default, which a slowloris client would hold it for.
        super().__init__(server, loop=asyncio.get_running_loop(), keepalive_timeout=bounds.HEAD_READ_SECONDS)
        self.access_logger = None  # the door writes its own access log
        self._refuse = refuse

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)  # no request bytes in a 500's answer
        response = self._refuse(request, exc)
        response.force_close()  # what follows on the connection cannot be told apart from the unread request
        return response

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        if isinstance(kwargs.get("exc_info"), web.RequestPayloadError):
            # A body that does not decode as its Content-Encoding says: its route answered 400 naming that, and
            # aiohttp, reading the rest of the body after the answer, meets the error again. Not an ERROR with a
            # traceback, which a client could have logged at will.
            return
        super().log_exception(*args, **kwargs)


class _DoorServer(web.Server):
    def __init__(self, made: web.Server, refuse: Refusal) -> None:
        super().__init__(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
        )
        self._refuse = refuse

    def __call__(self) -> web_protocol.RequestHandler:
        return _DoorConnection(self, self._refuse)


class DoorRunner(web.AppRunner):
    """aiohttp's runner of `app`, whose connections answer a request they cannot read with `refuse`."""

    def __init__(self, app: web.Application, refuse: Refusal, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._refuse = refuse

    async def _make_server(self) -> web.Server:
        return _DoorServer(await super()._make_server(), self._refuse)
