"""Streams of a generation: iterate events, or just the text, then take the final response."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Generic, Self

import grpc

from warpcore.client._errors import (
    CancelledError,
    Deadline,
    ResponseParseError,
    WarpcoreError,
    error_from_rpc,
    request_id_from,
    stopped_by_server,
)
from warpcore.client._formats import Parse
from warpcore.client._protocol import event_from, usage_from
from warpcore.client._tools import ReasoningCollector
from warpcore.client._types import (
    FinishReason,
    GenerateResponse,
    GenerateResult,
    ParsedT,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    TokenLogprob,
    Usage,
)
from warpcore.v1 import inference_pb2 as pb

STREAM_CLOSED = "the stream was closed before its end (its close(), or the end of its with block)"


class Accumulator:
    """Collects a stream's events into its final response."""

    def __init__(self, parse: Parse | None, deadline: Deadline | None) -> None:
        self._parts: list[str] = []
        self._refusal: list[str] = []
        self._logprobs: list[TokenLogprob] = []
        self._reasoning = ReasoningCollector()
        self._result: GenerateResult | None = None
        self._parse = parse
        self._deadline = deadline
        self.prompt_usage: Usage | None = None
        self.failure: WarpcoreError | None = None
        """What ended the stream before its end, raised again by every later ask for the whole answer."""
        self.closed = False
        """Set by the stream's close(): a cancellation is then the caller's own."""

    def failed(self, error: grpc.RpcError) -> WarpcoreError:
        """The error a failed call is read as."""
        return self.ended_by(error_from_rpc(error, self._deadline))

    def ended_by(self, failure: WarpcoreError) -> WarpcoreError:
        """`failure`, holding the answer so far when the server sent its result frame. A cancellation the stream's
        close() made says so: gRPC's words, "Locally cancelled by application!", would not tell a stream that a with
        block closed from one that anything else cut."""
        if self.closed and failure.status is grpc.StatusCode.CANCELLED:
            failure = CancelledError(STREAM_CLOSED, status=failure.status, request_id=failure.request_id)
        failure.response = self.ended(failure.request_id)
        self.failure = failure
        return failure

    def add(self, frame: pb.GenerateResponse) -> StreamEvent:
        if frame.HasField("prompt_usage"):
            self.prompt_usage = usage_from(frame.prompt_usage)
        event = event_from(frame)
        if isinstance(event, TextDelta):
            (self._refusal if event.refusal else self._parts).append(event.text)
            self._logprobs += event.logprobs
        elif isinstance(event, ReasoningDelta):
            self._reasoning.add(event)
        elif isinstance(event, GenerateResult):
            self._result = event
        return event

    def response(self, request_id: str) -> GenerateResponse[Any]:
        """The whole answer; UnavailableError if the server's shutdown cut it short, ResponseParseError if it does
        not parse as asked."""
        if self.failure is not None:  # read before, by a loop that caught it
            raise self.failure
        response = self.ended(request_id)
        if response is None:
            raise RuntimeError("the stream ended without its result frame")
        if response.finish_reason is FinishReason.CANCELLED:
            raise stopped_by_server(response)
        # A structured answer cut short (max_tokens, a paused turn), or declined, is left unparsed.
        if self._parse is None or response.finish_reason is not FinishReason.STOP or response.refusal:
            return response
        try:
            return dataclasses.replace(response, parsed=self._parse(response.text))
        except ValueError as error:  # json.JSONDecodeError and pydantic's ValidationError alike
            raise ResponseParseError(response, error) from error

    def ended(self, request_id: str) -> GenerateResponse[Any] | None:
        """The answer as it stood when the result frame came, unparsed; None before it."""
        result = self._result
        if result is None:
            return None
        text, refusal = "".join(self._parts), "".join(self._refusal)
        return GenerateResponse(
            text=text,
            finish_reason=result.finish_reason,
            usage=result.usage,
            timings=result.timings,
            upstream_request_id=result.upstream_request_id,
            logprobs=tuple(self._logprobs),
            tool_calls=result.tool_calls,
            reasoning=self._reasoning.blocks(),
            stop_sequence=result.stop_sequence,
            context_window_exceeded=result.context_window_exceeded,
            refusal=refusal,
            request_id=request_id,
        )


def _events(call: Iterator[pb.GenerateResponse], accumulator: Accumulator) -> Iterator[StreamEvent]:
    """A function rather than a method: a generator of the stream's own would hold the stream, and the cycle would
    keep a stream left unread (and its call) until the garbage collector next runs."""
    try:
        for frame in call:
            yield accumulator.add(frame)
    except grpc.RpcError as error:
        raise accumulator.failed(error) from None


async def _async_events(
    call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse], accumulator: Accumulator
) -> AsyncIterator[StreamEvent]:
    """As _events. A call cancelled here (the stream's close(), its client's) is CancelledError, as Stream's: grpc.aio
    raises asyncio.CancelledError, which would read as the cancellation of the reading task itself."""
    try:
        async for frame in call:
            yield accumulator.add(frame)
    except grpc.RpcError as error:
        raise accumulator.failed(error) from None
    except asyncio.CancelledError:
        reader = asyncio.current_task()
        if not call.cancelled() or (reader is not None and reader.cancelling()):
            raise
        cancelled = CancelledError(await call.details(), status=grpc.StatusCode.CANCELLED)
        raise accumulator.ended_by(cancelled) from None


class Stream(Generic[ParsedT]):
    """A running generation. Iterating yields TextDelta, ToolCallDelta and ReasoningDelta events, then one
    GenerateResult; `close()` cancels it, and so does dropping the stream unread. Generic in the type of the final
    response's `parsed`, as GenerateResponse."""

    def __init__(
        self, call: Iterator[pb.GenerateResponse], parse: Parse | None = None, deadline: Deadline | None = None
    ) -> None:
        self._call = call
        self._accumulator = Accumulator(parse, deadline)
        self._events = _events(call, self._accumulator)
        # A loop left early (break) and the stream dropped: the server is told at once, not when grpc's call object
        # is collected. Cancelling a call that has ended does nothing.
        weakref.finalize(self, call.cancel)  # type: ignore[attr-defined]  # the iterator is the grpc call

    @property
    def prompt_usage(self) -> Usage | None:
        """The prompt's tokens (the completion counts 0) as soon as the first event is read, when the backend counted
        the prompt before generating: llama.cpp models, and Anthropic models; None until then, and from backends that
        count it only at the end (OpenAI's APIs), whose final response's usage has it."""
        return self._accumulator.prompt_usage

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    @property
    def text_stream(self) -> Iterator[str]:
        """The rest of the text, piece by piece (a refusal's apart: see GenerateResponse.refusal)."""
        return (event.text for event in self if isinstance(event, TextDelta) and not event.refusal)

    def get_final_response(self) -> GenerateResponse[ParsedT]:
        """Read to the end; the whole text, finish reason, usage and timings. ResponseParseError if the text does
        not parse as the response_format asks."""
        for _ in self:
            pass
        return self._accumulator.response(request_id_from(self._call.initial_metadata()))  # type: ignore[attr-defined]

    def close(self) -> None:
        """Cancel the call: the server stops generating."""
        self._accumulator.closed = True
        self._call.cancel()  # type: ignore[attr-defined]  # the iterator is the grpc call

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


OTHER_LOOP_STREAM = (
    "this stream was opened in another event loop: it was cancelled when its client was next used in another loop,"
    " and is read in the loop that opened it only"
)


class AsyncStream(Generic[ParsedT]):
    """The asyncio twin of Stream; dropping it unread cancels it too."""

    def __init__(
        self,
        call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse],
        parse: Parse | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        self._call = call
        self._accumulator = Accumulator(parse, deadline)
        self._events = _async_events(call, self._accumulator)
        self._loop = asyncio.get_running_loop()
        weakref.finalize(self, call.cancel)  # as Stream's

    @property
    def prompt_usage(self) -> Usage | None:
        """As Stream.prompt_usage."""
        return self._accumulator.prompt_usage

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        if asyncio.get_running_loop() is not self._loop:
            # grpc.aio would end the call's frames there as if the answer were whole.
            raise CancelledError(OTHER_LOOP_STREAM, status=grpc.StatusCode.CANCELLED)
        return await anext(self._events)

    @property
    async def text_stream(self) -> AsyncIterator[str]:
        """The rest of the text, piece by piece (a refusal's apart: see GenerateResponse.refusal)."""
        async for event in self:
            if isinstance(event, TextDelta) and not event.refusal:
                yield event.text

    async def get_final_response(self) -> GenerateResponse[ParsedT]:
        """Read to the end; the whole text, finish reason, usage and timings. ResponseParseError as Stream's."""
        async for _ in self:
            pass
        return self._accumulator.response(request_id_from(await self._call.initial_metadata()))

    def close(self) -> None:
        """Cancel the call: the server stops generating."""
        self._accumulator.closed = True
        self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
