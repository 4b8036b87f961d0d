"""PullModel's downloads: the file lands checked and loadable where its id resolves to, with progress at a bounded rate,
resumption after a cut or a cancel, one download for concurrent pulls, and a gated repository's token."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import collect, greedy, rich_details
from tests.fakes.hub import PIECE, FakeHub
from tests.pull import MODEL, WAIT_SECONDS, destination, frames, logged, partial_files, pull, pulling_server
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import models_pb2

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


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
        assert len(gguf) // PIECE > elapsed + 4, "more pieces than frames allowed, or the bound proves nothing"
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


async def test_pulls_of_slow_files_hold_up_no_load(hub: FakeHub, gguf: bytes, models_root: Path) -> None:
    """A tester's finding: pulls took the threads loads use, and a load of a file on disk waited for them."""
    names = [f"part{index}.gguf" for index in range(12)]  # more than the threads of asyncio's default executor
    for name in names:
        hub.add("acme/tiny-GGUF", name, gguf)
    hub.hold_after = 1024 * 1024
    async for _, stub in pulling_server(hub, models_root):
        (models_root / "here.gguf").write_bytes(gguf)
        calls = [pull(stub, f"hf:acme/tiny-GGUF:{name}") for name in names]
        await hub.held.wait()
        load = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model="here.gguf", model_id="here")
        await stub.LoadModel(load, timeout=WAIT_SECONDS)
        hub.release.set()
        results = await asyncio.gather(*(frames(call) for call in calls))
        assert [done.size_bytes for _, done in results] == [len(gguf)] * len(names)


async def test_a_pull_naming_main_shares_the_download_of_one_naming_no_revision(stub: Stub, hub: FakeHub) -> None:
    hub.hold_after = 1024 * 1024
    first = pull(stub)
    await hub.held.wait()
    second = pull(stub, MODEL, "main")
    hub.release.set()
    results = await asyncio.gather(frames(first), frames(second))
    assert len(hub.downloads) == 1
    assert results[0][1].sha256 == results[1][1].sha256


async def test_progress_tells_the_size_before_the_first_piece_and_never_repeats_itself(stub: Stub, gguf: bytes) -> None:
    progress, done = await frames(pull(stub))
    sizes = [(frame.bytes_done, frame.bytes_total) for frame in progress]
    assert (0, len(gguf)) in sizes[:2]  # after the first frame (nothing yet), or as it
    assert all(before != after for before, after in itertools.pairwise(sizes))
    assert sizes[-1] == (done.size_bytes, done.size_bytes)
