"""What the fake upstreams share: an aiohttp app on a loopback port, request recording, errors and SSE mechanics."""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

from aiohttp import web

from tests.fakes.script import Script

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JsonObject = dict[str, Any]

_HOST = "127.0.0.1"
# How long stop() lets an unfinished response run before aiohttp cancels it; stalled streams end at once anyway.
_SHUTDOWN_TIMEOUT = 1.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased; a repeated header keeps its last value
    body: JsonObject | None  # the parsed JSON object, or None when there was no body or it was not a JSON object
    query: dict[str, str]


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event: an optional `event:` line and one `data:` line."""

    data: str
    event: str | None = None

    @classmethod
    def of_json(cls, payload: JsonObject, event: str | None = None) -> SseEvent:
        return cls(data=json.dumps(payload, separators=(",", ":")), event=event)

    def encode(self) -> bytes:
        lines = [] if self.event is None else [f"event: {self.event}"]
        lines.append(f"data: {self.data}")
        return ("\n".join(lines) + "\n\n").encode()


@dataclass(frozen=True)
class StreamPlan:
    """The events of one streamed answer, for `FakeUpstream.stream` to send under the current script."""

    head: Sequence[SseEvent]  # before the first text chunk
    chunks: Sequence[SseEvent]  # one per scripted text chunk
    tail: Sequence[SseEvent]  # after the last one, ending the stream
    malformed: SseEvent  # sent at `malformed_after`
    error: SseEvent | None = None  # sent at `error_event_after`, ending the stream; None: the vendor has none


class FakeUpstream(ABC):
    """A vendor API on 127.0.0.1 and a free port; `async with` starts and stops it.

    Tests set `script` (how the next requests are answered), `models` and `required_api_key`, and read
    `requests`, `disconnects` and `disconnected` (set when a client goes away in the middle of a stream).
    """

    request_id_header: ClassVar[str]
    default_models: ClassVar[tuple[str, ...]]

    def __init__(self, *, models: Sequence[str] | None = None, required_api_key: str | None = None) -> None:
        self.script: Script = Script()
        self.models: list[str] = list(self.default_models if models is None else models)
        self.required_api_key: str | None = required_api_key
        self.requests: list[RecordedRequest] = []
        self.respond: Callable[[JsonObject], Script] | None = None
        """When set: the script of each request with a JSON body, chosen from that body (a model's stand-in)."""
        self.disconnects: int = 0
        self.disconnected: asyncio.Event = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self._closing = asyncio.Event()
        self._closed_after_stream: set[asyncio.BaseTransport] = set()
        self.closed_unanswered = 0

    # Lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} is already started")
        app = web.Application(middlewares=[self._closes_after_stream, self._cuts_bodies])
        self._add_routes(app.router)
        # handler_cancellation: aiohttp cancels a handler whose client went away, which ends stalled streams.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, _HOST, 0)
            await site.start()
            # The addresses are read from the started sites' listening sockets.
            self._port = int(runner.addresses[0][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._stopping = False
        self._closing = asyncio.Event()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True  # what stopping ends is no client disconnect
        self._closing.set()  # ends stalled streams
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the vendor's SDK takes as `base_url`."""
        return self.origin

    # What each vendor defines

    @abstractmethod
    def _add_routes(self, router: web.UrlDispatcher) -> None: ...

    @abstractmethod
    def _presented_api_key(self, request: RecordedRequest) -> str | None:
        """The API key the request carries, where this vendor's clients send it."""

    @abstractmethod
    def error_body(self, status: int, message: str, error_type: str | None, code: str | None) -> JsonObject:
        """The vendor's JSON error body; `error_type` None means the vendor's default for `status`."""

    # Requests

    @web.middleware
    async def _closes_after_stream(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request on a connection kept alive after a stream the script closes connections after: closed
        unanswered, as llama.cpp's server's connection is when the next request crosses its close."""
        closes = self.script.close_unanswered or request.transport in self._closed_after_stream
        if request.transport is not None and closes:
            self.closed_unanswered += 1
            request.transport.close()
            return web.Response(status=204)  # never sent
        return await handler(request)

    @web.middleware
    async def _cuts_bodies(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A whole body the script cuts: its status and headers, then half of it, then the connection closed."""
        cut = self.script.cut_body  # this request's script, whatever a test assigns meanwhile
        answer = await handler(request)
        if not cut or not isinstance(answer, web.Response) or not isinstance(answer.body, bytes):
            return answer
        body = answer.body
        response = web.StreamResponse(status=answer.status, headers=answer.headers)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        self._cut(request)
        return response

    async def admit(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        """Records the request; returns the error answer it gets (wrong API key, scripted status), if any."""
        recorded = await self._record(request)
        if self.respond is not None and recorded.body is not None:
            self.script = self.respond(recorded.body)
        if self.script.silent:
            await self._closing.wait()  # only stop() ends it, unless the client goes first
        if self.required_api_key is not None and self._presented_api_key(recorded) != self.required_api_key:
            return recorded, self.json_response(
                self.error_body(401, "Incorrect API key provided", None, None), status=401
            )
        script = self.script
        if script.status != 200 and script.error_text is not None:
            return recorded, web.Response(status=script.status, text=script.error_text, content_type="text/html")
        if script.status != 200:
            body = script.error_body or self.error_body(
                script.status, script.error_message, script.error_type, script.error_code
            )
            return recorded, self.json_response(body, status=script.status)
        return recorded, None

    async def _record(self, request: web.Request) -> RecordedRequest:
        body: JsonObject | None = None
        if request.body_exists:
            raw = await request.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict):
                body = parsed
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={key.lower(): value for key, value in request.headers.items()},
            body=body,
            query=dict(request.query),
        )
        self.requests.append(recorded)
        return recorded

    # Responses

    def response_headers(self) -> dict[str, str]:
        """The headers of every response: the request id, then the script's extra headers."""
        header = self.script.request_id_header or self.request_id_header
        return {header: self.script.request_id, **self.script.headers}

    def json_response(self, body: JsonObject, *, status: int = 200) -> web.Response:
        return web.json_response(body, status=status, headers=self.response_headers())

    async def stream(self, request: web.Request, plan: StreamPlan) -> web.StreamResponse:
        """Sends `plan` as `text/event-stream`, failing where the script says."""
        script = self.script  # this request's script, whatever a test assigns meanwhile
        response = web.StreamResponse(
            status=200,
            headers={
                **self.response_headers(),
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            },
        )
        await response.prepare(request)
        try:
            for event in plan.head:
                await self._send(response, event)
            for sent in range(len(plan.chunks) + 1):
                if sent == script.malformed_after:
                    await self._send(response, plan.malformed)
                if plan.error is not None and sent == script.error_event_after:
                    await self._send(response, plan.error)
                    return response
                if sent == script.cut_after:
                    if script.cut_inside_event:
                        next_event = [*plan.chunks, *plan.tail][sent].encode()
                        await response.write(next_event[: len(next_event) // 2])
                    self._cut(request)
                    return response
                if sent == script.stall_after:
                    await self._closing.wait()  # only stop() ends it, unless the client goes first
                    self._cut(request)
                    return response
                if sent == len(plan.chunks):
                    break
                if sent > 0 and script.delay > 0:
                    await asyncio.sleep(script.delay)
                await self._send(response, plan.chunks[sent])
            for event in plan.tail:
                await self._send(response, event)
            if script.close_after_stream and request.transport is not None:
                self._closed_after_stream.add(request.transport)
        except (ConnectionResetError, asyncio.CancelledError):
            # aiohttp cancels the handler when its client disconnects (handler_cancellation), or a write fails.
            if not self._stopping:
                self.disconnects += 1
                self.disconnected.set()
            raise
        return response

    async def _send(self, response: web.StreamResponse, event: SseEvent) -> None:
        data = event.encode()
        if self.script.split_utf8:
            # The first piece ends after the lead byte of the first multi-byte character, if there is one.
            cut = next((at + 1 for at, byte in enumerate(data) if byte >= 0xC0), len(data))
            await response.write(data[:cut])
            data = data[cut:]
        await response.write(data)

    @staticmethod
    def _cut(request: web.Request) -> None:
        """Closes the connection under a response still being written: no chunked terminator reaches the client."""
        transport = request.transport
        if transport is not None:
            transport.close()
