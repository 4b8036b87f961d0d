"""PullModel: hf: models downloaded through huggingface_hub from a loopback hub (tests/fakes/hub.py) into the path their
id resolves to, with progress, resumption, the hub's SHA-256, one download for concurrent pulls, and cancellation; only
when the operator allows it.

What the modules of this package share: the model pulled, a server that pulls, a pull and its frames, the server's log
watched, and where the file lands. The fixtures (the hub, MODELS_PATH, the stub of a pulling server) are in `conftest`;
the tests in `test_*`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from tests.conftest import handling, serving
from tests.fakes.hub import FakeHub
from warpcore.server.adapters.factory import hub_download
from warpcore.server.core.pulls import Pulls
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.v1 import inference_pb2_grpc, models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


MODEL = "hf:acme/tiny-GGUF:tiny-q8.gguf"
PADDING = 4 * 1024 * 1024
WAIT_SECONDS = 10  # a timeout turns a hang into a failure  # a GGUF of a few MiB: a download in many pieces


async def pulling_server(
    hub: FakeHub, models_root: Path, interval: float = 0.25, token: str | None = None
) -> AsyncIterator[tuple[WarpcoreServer, Stub]]:
    models_root.mkdir(exist_ok=True)  # noqa: ASYNC240 - a test's own folder, before the server starts
    env = {"MODELS_PATH": str(models_root), "HF_ENDPOINT": hub.endpoint}
    if token is not None:
        env["HF_TOKEN"] = token
    options = ServingOptions(pulls=Pulls(hub_download(env), interval=interval))
    async with serving(env, options) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield server, inference_pb2_grpc.InferenceServiceStub(channel)


def pull(
    stub: Stub, model: str = MODEL, revision: str = ""
) -> grpc.aio.UnaryStreamCall[models_pb2.PullModelRequest, models_pb2.PullModelResponse]:
    return stub.PullModel(models_pb2.PullModelRequest(model=model, revision=revision))


async def frames(
    call: grpc.aio.UnaryStreamCall[models_pb2.PullModelRequest, models_pb2.PullModelResponse],
) -> tuple[list[models_pb2.PullProgress], models_pb2.PulledModel]:
    """The progress frames of a pull, and its done frame, which comes last and once."""
    progress: list[models_pb2.PullProgress] = []
    done: list[models_pb2.PulledModel] = []
    while (frame := await call.read()) is not grpc.aio.EOF:
        assert isinstance(frame, models_pb2.PullModelResponse)
        assert not done, "a frame came after the done frame"
        if frame.HasField("progress"):
            progress.append(frame.progress)
        else:
            done.append(frame.done)
    assert len(done) == 1
    return progress, done[0]


@contextlib.contextmanager
def logged(text: str) -> Iterator[asyncio.Event]:
    """An event set when the server logs a message containing `text`."""
    loop = asyncio.get_running_loop()
    seen = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                loop.call_soon_threadsafe(seen.set)

    with handling(logging.getLogger("warpcore.server"), Watch(logging.INFO)):
        yield seen


def destination(models_root: Path) -> Path:
    return models_root / "hf" / "acme" / "tiny-GGUF" / "tiny-q8.gguf"


def partial_files(models_root: Path) -> list[Path]:
    return list(destination(models_root).parent.glob(".*.part"))
