"""Shared by the tests/test_http_embeddings_vectors.py and tests/test_http_count_tokens.py modules: a gRPC stub on the
same engine as the HTTP door (`door_stub`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.test_http_door_sdks import tiny_door  # noqa: F401 - the fixture
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.fixture
async def door_stub(doors: Doors) -> AsyncIterator[Stub]:
    """A gRPC stub on the same engine as the HTTP door."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)
