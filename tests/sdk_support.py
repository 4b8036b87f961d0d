"""Helpers for tests of the Python SDK: a blocking SDK call run off the event loop, and the in-process server's address
(`target`)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from warpcore.server.rpc.server import WarpcoreServer

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
