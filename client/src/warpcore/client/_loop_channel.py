"""AsyncClient's channel. grpc.aio ties a channel to the event loop running (or, outside one, current) when the
channel is made, and a call on it from another loop fails or hangs; so it is made on first use in a running loop, and
made again when the client is next used in another loop, once the first has stopped (as each asyncio.run does)."""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import TYPE_CHECKING, NamedTuple

import grpc

from warpcore.client._channel import ChannelSettings, closed_error
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:  # only the stubs' .pyi has it
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub

NO_LOOP = (
    "AsyncClient calls run in an event loop: make them from a coroutine (e.g. under asyncio.run), "
    "or use Client, which blocks"
)
OTHER_LOOP = (
    "this AsyncClient is in use in another event loop, still running (in another thread); an AsyncClient serves one "
    "running loop at a time: make an AsyncClient for each"
)


class Bound(NamedTuple):
    loop: asyncio.AbstractEventLoop
    channel: grpc.aio.Channel
    stub: InferenceServiceAsyncStub
    streams: weakref.WeakSet[grpc.aio.Call]


def _running_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(NO_LOOP) from None


def _open(settings: ChannelSettings) -> grpc.aio.Channel:
    if settings.credentials is not None:
        return grpc.aio.secure_channel(settings.target, settings.credentials, options=settings.arguments)
    return grpc.aio.insecure_channel(settings.target, options=settings.arguments)


def _abandon(stopped: Bound) -> None:
    """Leave the channel of a loop that has stopped. Its streams still open (kept past their asyncio.run) can never be
    read again: they are cancelled, or the server would generate them to their end. The channel is dropped, not
    closed: its close() is a coroutine of that loop, which cannot run again. Dropping the last reference has grpc's
    Channel.__del__ destroy it."""
    for stream in list(stopped.streams):
        stream.cancel()


class LoopChannel:
    """The grpc.aio channel of one AsyncClient, and its stub, for the running event loop."""

    def __init__(self, settings: ChannelSettings) -> None:
        self._settings = settings
        # Threads, each running a loop of its own, may share the client: the check and the swap must not interleave.
        self._lock = threading.Lock()
        self._bound: Bound | None = None
        self._closed = False

    def _owned_elsewhere(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether the channel is another loop's, still running: that loop alone may use or close it."""
        return self._bound is not None and self._bound.loop is not loop and self._bound.loop.is_running()

    def get(self) -> Bound:
        loop = _running_loop()
        with self._lock:
            if self._closed:
                raise closed_error("AsyncClient")
            if self._owned_elsewhere(loop):
                raise RuntimeError(OTHER_LOOP)
            if self._bound is None or self._bound.loop is not loop:
                if self._bound is not None:
                    _abandon(self._bound)
                channel = _open(self._settings)
                stub = inference_pb2_grpc.InferenceServiceStub(channel)
                self._bound = Bound(loop, channel, stub, weakref.WeakSet())
            return self._bound

    def track(self, stream: grpc.aio.Call) -> None:
        """Have `stream`, a call of the running loop's channel, cancelled if the client moves to another loop."""
        self.get().streams.add(stream)

    async def close(self) -> None:
        """Close the channel, if one was made; the client cannot be used afterwards."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._owned_elsewhere(loop):
                raise RuntimeError(OTHER_LOOP)
            bound, self._bound, self._closed = self._bound, None, True
        if bound is not None and bound.loop is loop:
            await bound.channel.close()
        elif bound is not None:  # another loop's, which has stopped
            _abandon(bound)
