"""Helpers for tests of the Python SDK: a blocking SDK call run off the event loop, the in-process server's address
(`target`), and a hosted model whose streams stall (`stalled`)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load
from warpcore.server.rpc.server import WarpcoreServer

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

T = TypeVar("T")


def blocking(function: Callable[..., T]) -> Callable[..., asyncio.Future[T]]:
    """Run a blocking SDK call off the event loop, which serves the in-process server meanwhile."""

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> asyncio.Future[T]:
        return asyncio.ensure_future(asyncio.to_thread(function, *args, **kwargs))

    return run


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
async def stalled(stub: Stub, openai_upstream: FakeOpenAI) -> FakeOpenAI:
    """An OpenAI model "m" whose streams send "Once", then nothing until their client goes away."""
    await load(stub, openai_upstream)
    openai_upstream.script = Script(chunks=["Once", " upon"], stall_after=1)
    return openai_upstream
