"""Fixtures of the pull tests: the tiny GGUF the loopback hub serves, the hub, MODELS_PATH, and the stub of a server
that pulls from that hub into it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fakes.hub import FakeHub
from tests.pull import PADDING, pulling_server
from tests.tiny_model import write_tiny_model

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_tiny_model(tmp_path_factory.mktemp("gguf") / "tiny.gguf", padding=PADDING).read_bytes()


@pytest.fixture
async def hub(gguf: bytes) -> AsyncIterator[FakeHub]:
    async with FakeHub() as started:
        started.add("acme/tiny-GGUF", "tiny-q8.gguf", gguf)
        yield started


@pytest.fixture
def models_root(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
async def stub(hub: FakeHub, models_root: Path) -> AsyncIterator[Stub]:
    async for _, started in pulling_server(hub, models_root):
        yield started
