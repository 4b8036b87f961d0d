"""Streams of a generation: iterate events, or just the text, then take the final response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import grpc

from warpcore.client._errors import error_from_rpc
from warpcore.client._protocol import Accumulator
from warpcore.client._tools import Parse
from warpcore.client._types import GenerateResponse, StreamEvent, TextDelta
from warpcore.v1 import inference_pb2 as pb


class Stream:
    """A running generation. Iterating yields TextDelta, ToolCallDelta and ReasoningDelta events, then one
    GenerateResult; `close()` cancels it."""

    def __init__(self, call: Iterator[pb.GenerateResponse], parse: Parse | None = None) -> None:
        self._call = call
        self._accumulator = Accumulator(parse)
        self._events = self._read()

    def _read(self) -> Iterator[StreamEvent]:
        try:
            for frame in self._call:
                yield self._accumulator.add(frame)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def __iter__(self) -> Iterator[StreamEvent]:
        return self

    def __next__(self) -> StreamEvent:
        return next(self._events)

    @property
    def text_stream(self) -> Iterator[str]:
        """The rest of the text, piece by piece (a refusal's apart: see GenerateResponse.refusal)."""
        return (event.text for event in self if isinstance(event, TextDelta) and not event.refusal)

    def get_final_response(self) -> GenerateResponse:
        """Read to the end; the whole text, finish reason, usage and timings."""
        for _ in self:
            pass
        return self._accumulator.response()

    def close(self) -> None:
        """Cancel the call: the server stops generating."""
        self._call.cancel()  # type: ignore[attr-defined]  # the iterator is the grpc call

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncStream:
    """The asyncio twin of Stream."""

    def __init__(
        self, call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse], parse: Parse | None = None
    ) -> None:
        self._call = call
        self._accumulator = Accumulator(parse)
        self._events = self._read()

    async def _read(self) -> AsyncIterator[StreamEvent]:
        try:
            async for frame in self._call:
                yield self._accumulator.add(frame)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        return await anext(self._events)

    @property
    async def text_stream(self) -> AsyncIterator[str]:
        """The rest of the text, piece by piece (a refusal's apart: see GenerateResponse.refusal)."""
        async for event in self:
            if isinstance(event, TextDelta) and not event.refusal:
                yield event.text

    async def get_final_response(self) -> GenerateResponse:
        """Read to the end; the whole text, finish reason, usage and timings."""
        async for _ in self:
            pass
        return self._accumulator.response()

    def close(self) -> None:
        """Cancel the call: the server stops generating."""
        self._call.cancel()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
