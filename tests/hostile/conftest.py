"""Fixtures of the hostile-input tests: the tiny model kept loaded and checked after each test, and fake upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import assert_healthy, load_tiny
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.hostile import ANTHROPIC_ID, ANTHROPIC_KEY, CALL_TIMEOUT, CONTEXT_SIZE, HEALTH_ID, OPENAI_ID, OPENAI_KEY
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.fixture
async def health_model(stub: Stub, server: WarpcoreServer) -> AsyncIterator[str]:
    """The tiny model, with the smallest context; when the test ends the server must still serve it, and report
    SERVING through grpc.health.v1."""
    await load_tiny(stub, model_id=HEALTH_ID, context_size=CONTEXT_SIZE)
    yield HEALTH_ID
    await assert_healthy(stub, HEALTH_ID, CALL_TIMEOUT)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "warpcore.v1.InferenceService", f"model:{HEALTH_ID}"):
            response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, service


@pytest.fixture
async def upstreams(stub: Stub, server_env: dict[str, str]) -> AsyncIterator[dict[int, FakeUpstream]]:
    """Loopback fakes of both APIs, as the server's environment defaults, each with one model loaded."""
    async with FakeOpenAI() as openai_fake, FakeAnthropic(models=["claude-test-large"]) as anthropic_fake:
        server_env.update(
            OPENAI_API_KEY=OPENAI_KEY,
            OPENAI_API_BASE=openai_fake.base_url,
            ANTHROPIC_API_KEY=ANTHROPIC_KEY,
            ANTHROPIC_API_BASE=anthropic_fake.base_url,
        )
        fakes: dict[int, FakeUpstream] = {
            pb.BACKEND_TYPE_OPENAI: openai_fake,
            pb.BACKEND_TYPE_ANTHROPIC: anthropic_fake,
        }
        for backend, model_id in ((pb.BACKEND_TYPE_OPENAI, OPENAI_ID), (pb.BACKEND_TYPE_ANTHROPIC, ANTHROPIC_ID)):
            request = pb.LoadModelRequest(backend=backend, model=fakes[backend].models[0], model_id=model_id)
            await stub.LoadModel(request, timeout=CALL_TIMEOUT)
        yield fakes
