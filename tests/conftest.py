"""Fixtures: a tiny GGUF model under a temporary MODELS_PATH, the real server on a loopback port, and fake
hosted upstreams (helpers for those in tests/hosted.py), with the doors (`hosted`) serving a model loaded on one."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import uvloop
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from llama_cpp import Llama

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.base import FakeUpstream
from tests.fakes.openai_api import FakeOpenAI
from tests.http_door import load_hosted
from tests.tiny_model import write_tiny_model
from warpcore.server.adapters.factory import create_adapter
from warpcore.server.core.registry import ModelRegistry
from warpcore.server.doors import Doors, open_doors
from warpcore.server.embedded import install_embedded_model
from warpcore.server.logs import LIBRARY_HANDLERS, QUIET_LIBRARIES
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer, start_server
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

TINY_MODEL = "hf:warpcore/tiny:tiny.gguf"


@pytest.fixture(scope="session")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root / "hf" / "warpcore" / "tiny" / "tiny.gguf")
    return root


@pytest.fixture(scope="module", params=["tiny", "gemma"])
def vocabulary(
    request: pytest.FixtureRequest, models_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Llama]:
    """A vocabulary that puts a space before every text (the tiny model's SentencePiece), and one that does not."""
    if request.param == "tiny":
        path = models_path / "hf" / "warpcore" / "tiny" / "tiny.gguf"
    else:
        root = tmp_path_factory.mktemp("gemma")
        path = root / install_embedded_model(root)
    llama = Llama(model_path=str(path), vocab_only=True, verbose=False)
    yield llama
    llama.close()


@pytest.fixture
def server_env(models_path: Path) -> dict[str, str]:
    """The environment the server's adapters see; tests may change it before the server starts."""
    return {"MODELS_PATH": str(models_path)}


@contextlib.asynccontextmanager
async def serving(env: Mapping[str, str], options: ServingOptions | None = None) -> AsyncIterator[WarpcoreServer]:
    """The real server on a free loopback port, SERVING, its adapters reading `env`; stopped and closed after."""
    registry = ModelRegistry(functools.partial(create_adapter, env=env), env.get("MODELS_PATH"))
    started = await start_server(registry, "127.0.0.1:0", options)
    await started.set_serving(True)
    try:
        yield started
    finally:
        await started.stop(None)
        await registry.close()


@contextlib.asynccontextmanager
async def serving_doors(
    env: Mapping[str, str], options: ServingOptions | None = None, http_host: str = "127.0.0.1"
) -> AsyncIterator[Doors]:
    """`serving`, with the HTTP door on another free port of `http_host`, on the same engine."""
    registry = ModelRegistry(functools.partial(create_adapter, env=env), env.get("MODELS_PATH"))
    doors = await open_doors(registry, "127.0.0.1:0", options, (http_host, 0))
    await doors.set_serving(True)
    try:
        yield doors
    finally:
        await doors.stop(None)
        await registry.close()


@pytest.fixture
async def doors(server_env: Mapping[str, str]) -> AsyncIterator[Doors]:
    async with serving_doors(server_env) as started:
        yield started


@pytest.fixture
async def server(server_env: Mapping[str, str]) -> AsyncIterator[WarpcoreServer]:
    async with serving(server_env) as started:
        yield started


@pytest.fixture
async def stub(server: WarpcoreServer) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield inference_pb2_grpc.InferenceServiceStub(channel)


async def load_tiny(
    stub: Stub, model_id: str = "tiny", context_size: int | None = None, parallel: int | None = None
) -> pb.Model:
    local = pb.LocalBackendConfig(parallel=parallel)
    response = await stub.LoadModel(
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP,
            model=TINY_MODEL,
            model_id=model_id,
            model_config=pb.ModelConfig(context_size=context_size),
            backend_config=pb.BackendConfig(local=local) if parallel is not None else None,
        )
    )
    return response.model


@pytest.fixture
async def tiny(stub: Stub) -> str:
    return (await load_tiny(stub)).id


@pytest.fixture
async def openai_upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
async def anthropic_upstream() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(models=["claude-test-large", "claude-test-small"]) as upstream:
        yield upstream


@pytest.fixture(params=["openai", "anthropic"])
def upstream(
    request: pytest.FixtureRequest, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> FakeUpstream:
    """Each test using this runs once against each provider."""
    return openai_upstream if request.param == "openai" else anthropic_upstream


@pytest.fixture
async def hosted(doors: Doors, upstream: FakeUpstream) -> Doors:
    await load_hosted(doors, upstream)
    return doors


async def collect(
    call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse],
) -> tuple[str, pb.GenerateResult]:
    """The text of a Generate stream and its result frame, checking that the result comes last and once."""
    text: list[str] = []
    results: list[pb.GenerateResult] = []
    async for frame in call:
        assert not results, "a frame arrived after the result frame"
        if frame.HasField("delta"):
            text.append(frame.delta.text)
        else:
            results.append(frame.result)
    assert len(results) == 1
    return "".join(text), results[0]


async def failed_stream(
    call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse],
) -> tuple[list[pb.GenerateResponse], grpc.aio.AioRpcError]:
    """The frames a Generate stream sent before failing, and its error."""
    frames = []
    try:
        async for frame in call:
            frames.append(frame)
    except grpc.aio.AioRpcError as error:
        return frames, error
    raise AssertionError("the call succeeded")


def greedy(prompt: str, max_tokens: int, model_id: str = "tiny", **options: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model_id=model_id,
        prompt=prompt,
        options=pb.GenerationOptions(max_tokens=max_tokens, temperature=0.0, **options),  # type: ignore[arg-type]
    )


async def assert_healthy(stub: Stub, model_id: str = "tiny", deadline: float = 5.0) -> None:
    """A normal greedy generation on the model still works, within `deadline` seconds: nothing left running holds
    its worker."""
    text, result = await collect(stub.Generate(greedy("the world", 4, model_id=model_id), timeout=deadline))
    assert text
    assert result.finish_reason == pb.FINISH_REASON_LENGTH
    assert result.usage.completion_tokens == 4


def rich_details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    """The ErrorInfo of a failed call, and the fields its BadRequest names (none without a BadRequest)."""
    status = rpc_status.from_call(error)
    assert status is not None, f"{error.code().name} without rich details: {error.details()!r}"
    info, fields = None, []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields = [violation.field for violation in bad_request.field_violations]
    assert info is not None, f"{error.code().name} without an ErrorInfo: {error.details()!r}"
    return info, fields


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Every test on uvloop, the server's event loop (`--event-loop`)."""
    return {"uvloop": uvloop.new_event_loop}


class AccessLines(logging.Handler):
    """The access log's lines as the server writes them (on the event loop; a line may follow its call's answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "method"):
            fields = record.__dict__
            self.records.append(record)
            self.lines.put_nowait((fields["method"], fields["model"], fields["code"]))

    async def next(self) -> tuple[str, str, str]:
        return await asyncio.wait_for(self.lines.get(), 10)


@pytest.fixture
def access_lines(caplog: pytest.LogCaptureFixture) -> Iterator[AccessLines]:
    caplog.set_level("INFO", logger="warpcore.access")
    lines = AccessLines()
    logging.getLogger("warpcore.access").addHandler(lines)
    yield lines
    logging.getLogger("warpcore.access").removeHandler(lines)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The logging set-up as it was before the test, which may call configure_logging."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    libraries = {name: logging.getLogger(name).handlers[:] for name in LIBRARY_HANDLERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)
    for name, saved_handlers in libraries.items():
        logging.getLogger(name).handlers[:] = saved_handlers


@contextlib.contextmanager
def handling(logger: logging.Logger, handler: logging.Handler) -> Iterator[None]:
    """`handler` on `logger` within, the logger passing on records of the handler's level."""
    level = logger.level
    logger.setLevel(handler.level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
