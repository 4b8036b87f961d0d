"""PullModel: hf: models downloaded through huggingface_hub from a loopback hub (tests/fakes/hub.py) into the path
their id resolves to, with progress, resumption, the hub's SHA-256, one download for concurrent pulls, and
cancellation; only when the operator allows it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, greedy, rich_details, serving
from tests.fakes.hub import FakeHub
from tests.test_cli import finish, start, warpcore
from tests.tiny_model import write_tiny_model
from warpcore.client import AsyncClient, Client, NotFoundError, PulledModel, PullEvent, PullProgress
from warpcore.server.adapters.factory import hub_download
from warpcore.server.cli import serving_options, startup_models
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.core.errors import InvalidArgumentError
from warpcore.server.core.pulls import Pulls
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.server.settings import parse_settings
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc, models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

MODEL = "hf:acme/tiny-GGUF:tiny-q8.gguf"
PADDING = 4 * 1024 * 1024
WAIT_SECONDS = 10  # a timeout turns a hang into a failure  # a GGUF of a few MiB: a download in many pieces


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


@pytest.fixture
async def stub(hub: FakeHub, models_root: Path) -> AsyncIterator[Stub]:
    async for _, started in pulling_server(hub, models_root):
        yield started


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

    handler = Watch(logging.INFO)
    logger = logging.getLogger("warpcore.server")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def destination(models_root: Path) -> Path:
    return models_root / "hf" / "acme" / "tiny-GGUF" / "tiny-q8.gguf"


def partial_files(models_root: Path) -> list[Path]:
    return list(destination(models_root).parent.glob(".*.part"))


async def test_a_pull_lands_in_the_path_its_id_resolves_to_checked_and_loadable(
    hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    hub.hold_after = len(gguf) // 2  # a frame part-way, however fast the rest arrives
    async for _, stub in pulling_server(hub, models_root, interval=0):
        call = pull(stub)
        first = await call.read()
        assert isinstance(first, models_pb2.PullModelResponse)
        assert first.HasField("progress")
        hub.release.set()
        rest, done = await frames(call)
        progress = [first.progress, *rest]
        assert destination(models_root).read_bytes() == gguf
        assert (done.model, done.size_bytes, done.sha256, done.already_present) == (
            MODEL,
            len(gguf),
            hashlib.sha256(gguf).hexdigest(),
            False,
        )
        done_bytes = [frame.bytes_done for frame in progress]
        # Progress comes as the bytes arrive: before the last of them (how many frames depends on the reads).
        assert len(done_bytes) >= 2, done_bytes
        assert done_bytes[0] <= hub.hold_after, done_bytes
        assert done_bytes == sorted(done_bytes)
        assert progress[-1].bytes_done == progress[-1].bytes_total == len(gguf)
        assert not partial_files(models_root)
        assert hub.heads == ["/acme/tiny-GGUF/resolve/main/tiny-q8.gguf"]
        # The pulled file serves at once.
        await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=MODEL, model_id="pulled"))
        _, result = await collect(stub.Generate(greedy("the", 3, model_id="pulled")))
        assert result.usage.completion_tokens == 3
        # Pulled again: already there, nothing downloaded.
        _, again = await frames(pull(stub))
        assert again.already_present
        assert len(hub.downloads) == 1


async def test_progress_frames_come_at_a_bounded_rate(hub: FakeHub, gguf: bytes, models_root: Path) -> None:
    async for _, stub in pulling_server(hub, models_root, interval=1.0):
        started = time.monotonic()
        progress, done = await frames(pull(stub))
        elapsed = time.monotonic() - started
        # One a second at most, plus the first (nothing yet), the first bytes and the last two (all bytes on disk,
        # then checked), however many pieces the file came in.
        assert len(progress) <= elapsed + 4
        assert len(gguf) // (256 * 1024) > elapsed + 4, "more pieces than frames allowed, or the bound proves nothing"
        assert progress[-1].bytes_done == done.size_bytes == len(gguf)


async def test_a_cut_connection_resumes_where_it_stopped(
    stub: Stub, hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    hub.cut_after = 1024 * 1024
    _, done = await frames(pull(stub))
    assert destination(models_root).read_bytes() == gguf
    assert done.sha256 == hashlib.sha256(gguf).hexdigest()
    first, second = hub.downloads
    assert first.range is None
    assert second.range == f"bytes={first.sent}-"


async def test_cancelling_stops_the_download_and_the_next_pull_resumes(
    stub: Stub, hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    hub.hold_after = 2 * 1024 * 1024
    call = pull(stub)
    while True:  # until bytes are on the server's disk
        frame = await call.read()
        assert isinstance(frame, models_pb2.PullModelResponse)
        if frame.progress.bytes_done:
            break
    with logged("stopping the pull of") as stopping:
        call.cancel()
        await asyncio.wait_for(stopping.wait(), WAIT_SECONDS)
    # The hub sends the rest now, but the download has stopped: its next write ends it.
    hub.release.set()
    await hub.downloads[0].finished.wait()
    (partial,) = partial_files(models_root)
    assert 0 < partial.stat().st_size <= hub.hold_after
    assert not destination(models_root).exists()
    hub.hold_after = None
    _, done = await frames(pull(stub))
    assert destination(models_root).read_bytes() == gguf
    assert not partial.exists()
    resumed = hub.downloads[-1]
    assert resumed.range is not None
    assert int(resumed.range.removeprefix("bytes=").rstrip("-")) > 0
    assert resumed.sent < len(gguf)
    assert done.size_bytes == len(gguf)


async def test_concurrent_pulls_of_one_file_share_one_download(stub: Stub, hub: FakeHub, gguf: bytes) -> None:
    hub.hold_after = 1024 * 1024
    calls = [pull(stub) for _ in range(3)]
    await hub.held.wait()
    for call in calls:
        # A caller's first frame shows it has joined the pull.
        first = await call.read()
        assert isinstance(first, models_pb2.PullModelResponse)
        assert first.HasField("progress")
    # Another revision of the same file cannot share this download, nor write beside it.
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await frames(pull(stub, MODEL, "v2"))
    assert other.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(other.value)[0].reason == "PULL_IN_PROGRESS"
    hub.release.set()
    results = await asyncio.gather(*(frames(call) for call in calls))
    assert len(hub.downloads) == 1
    assert [done.sha256 for _, done in results] == [hashlib.sha256(gguf).hexdigest()] * 3
    assert not any(done.already_present for _, done in results)


async def test_a_download_that_does_not_match_the_hub_sha256_is_refused(
    hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    hub.add("acme/tiny-GGUF", "bad.gguf", gguf, sha256=hashlib.sha256(b"another file").hexdigest())
    async for _, stub in pulling_server(hub, models_root):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await frames(pull(stub, "hf:acme/tiny-GGUF:bad.gguf"))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert rich_details(refused.value)[0].reason == "PULL_HASH_MISMATCH"
        assert not (models_root / "hf" / "acme" / "tiny-GGUF" / "bad.gguf").exists()
        assert not partial_files(models_root)


@pytest.mark.parametrize("announced", [1000, -1000])
async def test_a_download_of_another_size_than_the_hub_announced_is_discarded(
    stub: Stub, hub: FakeHub, gguf: bytes, models_root: Path, announced: int
) -> None:
    """huggingface_hub's size check fails the download; the bytes are no copy of the file the hub describes, so
    they go, and each pull starts over rather than resuming them into the same failure."""
    hub.size_override = len(gguf) + announced
    for _ in range(2):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await frames(pull(stub))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert rich_details(refused.value)[0].reason == "PULL_SIZE_MISMATCH"
        assert f"came to {len(gguf)} bytes where the hub announced {len(gguf) + announced}" in (
            refused.value.details() or ""
        )
        assert not partial_files(models_root)
    assert [download.range for download in hub.downloads] == [None, None]
    hub.size_override = None
    _, done = await frames(pull(stub))
    assert destination(models_root).read_bytes() == gguf
    assert done.sha256 == hashlib.sha256(gguf).hexdigest()


@pytest.mark.parametrize("extra", [1, 0])
async def test_a_partial_file_left_at_or_over_the_whole_size_never_asks_the_hub_past_the_end(
    stub: Stub, hub: FakeHub, gguf: bytes, models_root: Path, extra: int
) -> None:
    """A partial file over the size (an older server kept what overran it) got HTTP 416 on every resumed pull, told
    as HUB_UNAVAILABLE; it is downloaded again. One of exactly the size is the file: it needs no download."""
    partial = destination(models_root).with_name(f".tiny-q8.gguf.{hashlib.sha256(gguf).hexdigest()[:16]}.part")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(gguf + b"\0" * extra)
    _, done = await frames(pull(stub))
    assert destination(models_root).read_bytes() == gguf
    assert done.sha256 == hashlib.sha256(gguf).hexdigest()
    assert not partial_files(models_root)
    assert [download.range for download in hub.downloads] == ([None] if extra else [])


@pytest.mark.parametrize("target", ["outside file", "missing outside file"])
async def test_a_link_at_the_partial_files_name_is_replaced_never_written_through(
    stub: Stub, hub: FakeHub, gguf: bytes, models_root: Path, tmp_path: Path, target: str
) -> None:
    """A link under the partial file's name (one that somebody able to write MODELS_PATH put there) had the download
    written, or appended, through it into a file outside MODELS_PATH."""
    outside = tmp_path / "outside.bin"
    if target == "outside file":
        outside.write_bytes(b"IMPORTANT DATA\n")
    partial = destination(models_root).with_name(f".tiny-q8.gguf.{hashlib.sha256(gguf).hexdigest()[:16]}.part")
    partial.parent.mkdir(parents=True)
    partial.symlink_to(outside)
    _, done = await frames(pull(stub))
    assert destination(models_root).read_bytes() == gguf
    assert not destination(models_root).is_symlink()
    assert done.sha256 == hashlib.sha256(gguf).hexdigest()
    assert not partial_files(models_root)
    assert (outside.read_bytes() if outside.exists() else None) == (
        b"IMPORTANT DATA\n" if target == "outside file" else None
    )
    assert [download.range for download in hub.downloads] == [None]  # nothing resumed from what the link held


async def test_a_folder_at_the_partial_files_name_is_refused(stub: Stub, gguf: bytes, models_root: Path) -> None:
    partial = destination(models_root).with_name(f".tiny-q8.gguf.{hashlib.sha256(gguf).hexdigest()[:16]}.part")
    partial.mkdir(parents=True)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(refused.value)[0].reason == "MODEL_PATH_UNREADABLE"
    assert "is not a regular file" in (refused.value.details() or "")


@pytest.mark.parametrize(
    ("model", "revision", "reason", "words"),
    [
        ("hf:acme/missing:tiny-q8.gguf", "", "HUB_REPO_NOT_FOUND", "the hub has no repository for"),
        (
            "hf:acme/tiny-GGUF:missing.gguf",
            "",
            "HUB_FILE_NOT_FOUND",
            "repository acme/tiny-GGUF has no file missing.gguf",
        ),
        (MODEL, "v9", "HUB_REVISION_NOT_FOUND", "the hub has no such revision for"),
    ],
)
async def test_what_the_hub_does_not_have_is_not_found(
    stub: Stub, model: str, revision: str, reason: str, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await frames(pull(stub, model, revision))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert rich_details(missing.value)[0].reason == reason
    assert words in (missing.value.details() or "")


@pytest.mark.parametrize(
    ("status", "token"), [(401, "hf_test_token_0123456789"), (401, None), (403, "hf_test_token_0123456789")]
)
async def test_a_hub_refusing_the_server_says_which_token_to_set_not_to_retry(
    hub: FakeHub, models_root: Path, status: int, token: str | None
) -> None:
    # A mirror refusing the server's token answers the same to every retry: only the operator can change that.
    hub.refusal = status
    async for _, stub in pulling_server(hub, models_root, token=token):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await frames(pull(stub))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rich_details(refused.value)[0].reason == "HUB_UNAUTHORIZED"
    message = refused.value.details() or ""
    assert f"HTTP {status}" in message
    assert "set an HF_TOKEN allowed to read acme/tiny-GGUF on the server" in message
    assert ("refused 'hf:acme/tiny-GGUF:tiny-q8.gguf' to the server's HF_TOKEN" in message) == (token is not None)
    assert "retry" not in message
    assert "0123456789" not in message
    assert not hub.downloads


async def test_a_load_during_the_pull_of_its_file_says_to_wait_for_that_pull(
    hub: FakeHub, models_root: Path, gguf: bytes
) -> None:
    """So does a Generate naming a lazy model of that file (a tester's finding: it was NOT_FOUND, "pull it first")."""
    async for server, stub in pulling_server(hub, models_root):
        server.engine.declare(LoadSpec("lazy", BackendKind.LLAMA_CPP, MODEL, None, None, lazy=True))
        hub.hold_after = 1024 * 1024
        call = pull(stub)
        await hub.held.wait()
        load = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=MODEL)
        with pytest.raises(grpc.aio.AioRpcError) as early:
            await stub.LoadModel(load)
        with pytest.raises(grpc.aio.AioRpcError) as lazy:
            await collect(stub.Generate(greedy("the world", 2, model_id="lazy")))
        for refused, field in ((early.value, "model"), (lazy.value, "model_id")):
            assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
            info, fields = rich_details(refused)
            assert (info.reason, fields) == ("PULL_IN_PROGRESS", [field])
            assert f"model file {MODEL!r} is being pulled now; wait for that pull to end" in (refused.details() or "")
        hub.release.set()
        _, done = await frames(call)
        assert done.size_bytes == len(gguf)
        assert (await stub.LoadModel(load)).model.id == MODEL
        _, result = await collect(stub.Generate(greedy("the world", 2, model_id="lazy")))
        assert result.usage.completion_tokens == 2


@pytest.mark.parametrize(
    ("model", "rule"),
    [
        ("hf:owner/repo.git:tiny.gguf", "(Repo_id cannot end by '.git')"),
        ("hf:a--b/repo:tiny.gguf", "(Cannot have -- or .. in repo_id)"),
        ("hf:a..b/repo:tiny.gguf", "(Cannot have -- or .. in repo_id)"),
        ("hf:owner/repo.:tiny.gguf", "cannot start or end with '-' or '.'"),
        (f"hf:owner/{'r' * 100}:tiny.gguf", "the maximum length is 96)"),
    ],
)
async def test_a_repository_name_the_hub_cannot_have_is_refused_alike_by_pull_load_and_preload(
    stub: Stub, hub: FakeHub, models_root: Path, tmp_path: Path, model: str, rule: str
) -> None:
    # Our own shape of hf: ids is looser than the hub's rules, which huggingface_hub checks (and words) for us.
    expected = f"model {model!r} names a repository the hub cannot have "
    with pytest.raises(grpc.aio.AioRpcError) as pulled:
        await frames(pull(stub, model))
    with pytest.raises(grpc.aio.AioRpcError) as loaded:
        await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=model))
    for refused in (pulled.value, loaded.value):
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        info, fields = rich_details(refused)
        assert (info.reason, fields) == ("MODEL_ID_MALFORMED", ["model"])
        assert expected in (refused.details() or "")
        assert rule in (refused.details() or "")
    config = tmp_path / "models.toml"
    config.write_text(f'[[models]]\nbackend = "llama_cpp"\nmodel = "{model}"\nlazy = true\n')
    settings = parse_settings(["--config", str(config), "--models-path", str(models_root), "--allow-pull"], {})
    with pytest.raises(InvalidArgumentError) as preloaded:
        startup_models(settings, {})
    assert expected in preloaded.value.message
    assert rule in preloaded.value.message
    assert not hub.heads


async def test_a_file_larger_than_the_free_disk_is_refused_before_downloading(
    stub: Stub, hub: FakeHub, models_root: Path
) -> None:
    hub.size_override = 1 << 60
    with pytest.raises(grpc.aio.AioRpcError) as full:
        await frames(pull(stub))
    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rich_details(full.value)[0].reason == "DISK_FULL"
    assert not hub.downloads
    assert not partial_files(models_root)  # a tester's finding: an empty partial file was left behind


async def test_a_file_whose_name_leaves_no_room_for_the_partial_names_is_pulled(
    stub: Stub, hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    """A tester's finding: an id within its 256 characters, a file name within the file system's 255 bytes, and yet
    no pull could write it, the partial file's name (".NAME.HASH.part") too long; the answer's words were cut short."""
    name = "a" * 230 + ".gguf"
    hub.add("acme/tiny-GGUF", name, gguf)
    _, done = await frames(pull(stub, f"hf:acme/tiny-GGUF:{name}"))
    assert done.size_bytes == len(gguf)
    assert (destination(models_root).parent / name).read_bytes() == gguf
    assert not partial_files(models_root)


async def test_pulling_is_off_unless_the_operator_allows_it(server: WarpcoreServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await frames(pull(stub))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert rich_details(denied.value)[0].reason == "PULL_DENIED"
        # LoadModel of a missing hf: file says how to get it.
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.LoadModel(pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=MODEL))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert f"warpcore pull {MODEL}" in (missing.value.details() or "")


@pytest.mark.parametrize("revision", [".", "..", "../main", "refs/../main", "refs//main", ".hidden", "main/"])
async def test_a_revision_that_is_no_ref_name_is_refused_before_the_hub_is_asked(
    stub: Stub, hub: FakeHub, revision: str
) -> None:
    """A tester's finding: ".." and "." went into the file's URL, which they moved (the hub was asked for another
    path, with the server's token), and the answer blamed the repository."""
    asked = len(hub.heads), len(hub.downloads)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub, MODEL, revision))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(refused.value)[1] == ["revision"]
    assert (len(hub.heads), len(hub.downloads)) == asked


async def test_only_hf_models_can_be_pulled(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub, "local/file.gguf"))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(refused.value)[1] == ["model"]
    assert rich_details(refused.value)[0].reason == "MODEL_ID_MALFORMED"  # one reason, whichever rule it breaks


async def test_the_cli_pulls_with_a_progress_bar(hub: FakeHub, gguf: bytes, models_root: Path) -> None:
    hub.hold_after = len(gguf) // 2  # a bar part-way, however fast the rest arrives
    async for server, _ in pulling_server(hub, models_root, interval=0):
        process = await start(f"127.0.0.1:{server.port}", "pull", MODEL)
        assert process.stderr is not None
        partway = await asyncio.wait_for(process.stderr.readuntil(b"%"), 30)
        hub.release.set()
        stdout, rest = await finish(process)
        assert process.returncode == 0, rest
        assert stdout.decode() == f"{MODEL}  {len(gguf)} bytes  sha256 {hashlib.sha256(gguf).hexdigest()}\n"
        bars = (partway + rest).decode().rstrip("\n").split("\r")[1:]
        percents = [int(match[1]) for bar in bars if (match := re.search(r"\] +(\d+)%", bar))]
        assert len(percents) == len(bars)
        assert percents[0] <= 50
        assert percents == sorted(percents)
        assert bars[-1].startswith(f"[{'#' * 30}] 100%  ")
        again = await warpcore(f"127.0.0.1:{server.port}", "pull", MODEL)
        assert again.stdout == f"{MODEL}  {len(gguf)} bytes  already present\n"
        denied = await warpcore(f"127.0.0.1:{server.port}", "pull", "hf:acme/missing:x.gguf")
        assert denied.code == 1
        assert denied.stderr.splitlines()[-1].startswith("warpcore: NOT_FOUND: the hub has no repository")


async def test_a_gated_repository_takes_the_servers_hf_token_which_stays_with_the_hub(
    hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    hub.gated["acme/tiny-GGUF"] = "hf_test_token_0123456789"
    async for _, stub in pulling_server(hub, models_root):
        with pytest.raises(grpc.aio.AioRpcError) as gated:
            await frames(pull(stub))
        assert gated.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert rich_details(gated.value)[0].reason == "HUB_REPO_GATED"
        assert "HF_TOKEN" in (gated.value.details() or "")
    async for _, stub in pulling_server(hub, models_root, token="hf_test_token_0123456789"):
        _, done = await frames(pull(stub))
        assert done.size_bytes == len(gguf)
        # The CDN gets a signed address, never the token.
        assert [download.authorization for download in hub.downloads] == [None]


async def test_the_sdk_pulls_with_progress_events(hub: FakeHub, gguf: bytes, models_root: Path) -> None:
    async for server, _ in pulling_server(hub, models_root, interval=0):
        target = f"127.0.0.1:{server.port}"
        async with AsyncClient(target) as client:
            events = [event async for event in client.pull_model(MODEL)]
        *progress, done = events
        assert all(isinstance(event, PullProgress) for event in progress)
        assert isinstance(done, PulledModel)
        assert (done.model, done.size, done.sha256) == (MODEL, len(gguf), hashlib.sha256(gguf).hexdigest())
        assert isinstance(progress[-1], PullProgress)
        assert progress[-1].done == progress[-1].total == len(gguf)

        (*_, again) = await asyncio.to_thread(blocking_pull, target)
        assert isinstance(again, PulledModel)
        assert again.already_present
        async with AsyncClient(target) as client:
            with pytest.raises(NotFoundError):
                async for _ in client.pull_model("hf:acme/missing:x.gguf"):
                    pass


def blocking_pull(target: str) -> list[PullEvent]:
    with Client(target) as client:
        return list(client.pull_model(MODEL, revision="main"))


def test_allow_pull_gives_the_server_a_puller() -> None:
    assert serving_options(parse_settings([], {})).pulls is None
    assert serving_options(parse_settings(["--allow-pull"], {})).pulls is not None


@pytest.mark.parametrize("linked", ["file", "folder"])
async def test_a_link_out_of_models_path_is_neither_reported_nor_written_through(
    stub: Stub, hub: FakeHub, models_root: Path, tmp_path: Path, linked: str
) -> None:
    """Where the model's file (or its folder) is a link to outside MODELS_PATH, a pull is refused as LoadModel is:
    no size of a file outside is told, and nothing is downloaded or written there."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "tiny-q8.gguf"
    secret.write_bytes(b"x" * 12345)
    (models_root / "hf" / "acme").mkdir(parents=True)
    if linked == "file":
        destination(models_root).parent.mkdir()
        destination(models_root).symlink_to(secret)
    else:
        destination(models_root).parent.symlink_to(outside, target_is_directory=True)
        secret.unlink()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(refused.value)[0].reason == "MODEL_PATH_OUTSIDE_MODELS_PATH"
    assert "12345" not in str(refused.value)
    assert not hub.downloads
    assert [path.name for path in outside.iterdir()] == ([] if linked == "folder" else ["tiny-q8.gguf"])


@pytest.mark.parametrize("model", ["local/file.gguf", "hf:acme/tiny-GGUF", "hf:../x:y.gguf"])
async def test_a_name_that_cannot_be_pulled_is_refused_before_any_frame(stub: Stub, model: str) -> None:
    call = pull(stub, model)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call.read()  # the first read: no progress frame comes before the refusal
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(refused.value)[1] == ["model"]


async def test_a_folder_that_loops_is_refused_saying_so(stub: Stub, hub: FakeHub, models_root: Path) -> None:
    (models_root / "hf").mkdir(parents=True)
    (models_root / "hf" / "acme").symlink_to(models_root / "hf" / "acme", target_is_directory=True)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(refused.value)[0].reason == "MODEL_PATH_UNREADABLE"
    assert not hub.downloads


async def test_a_hub_that_cannot_be_reached_is_reported_at_once_with_its_cause(models_root: Path) -> None:
    # No network: the name of the hub does not resolve. The caller hears why, in the resolver's own words, without
    # the server's token or the endpoint's password, and without huggingface_hub's 23 s of retries first.
    host = "warpcore-hub.invalid"
    with pytest.raises(socket.gaierror) as unresolved:
        socket.getaddrinfo(host, 80)
    models_root.mkdir()  # noqa: ASYNC240 - a test's own folder, before the server starts
    token, password = "hf_test_token_0123456789", "endpoint-password-0123"
    env = {"MODELS_PATH": str(models_root), "HF_ENDPOINT": f"http://user:{password}@{host}", "HF_TOKEN": token}
    async with (
        serving(env, ServingOptions(pulls=Pulls(hub_download(env)))) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await frames(stub.PullModel(models_pb2.PullModelRequest(model=MODEL), timeout=WAIT_SECONDS))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(failed.value)[0].reason == "HUB_UNAVAILABLE"
    message = failed.value.details() or ""
    assert f"ConnectError: {unresolved.value}" in message
    assert token[-8:] not in message
    assert password[-8:] not in message
