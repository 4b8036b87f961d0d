"""PullModel's files: a download of the wrong SHA-256 or size, the partial file (over the size, a link or a folder at
its name, no room for its name), the free disk, and links or loops in MODELS_PATH."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import rich_details
from tests.fakes.hub import FakeHub
from tests.pull import destination, frames, partial_files, pull, pulling_server

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


async def test_a_download_that_does_not_match_the_hub_sha256_is_refused(
    hub: FakeHub, gguf: bytes, models_root: Path
) -> None:
    hub.add("acme/tiny-GGUF", "bad.gguf", gguf, sha256=hashlib.sha256(b"another file").hexdigest())
    async for _, stub in pulling_server(hub, models_root):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await frames(pull(stub, "hf:acme/tiny-GGUF:bad.gguf"))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert rich_details(refused.value)[0].reason == "PULL_HASH_MISMATCH"
        assert not partial_files(models_root)
        assert not (models_root / "hf").exists()  # nor the folders it made for the file


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


async def test_a_folder_that_loops_is_refused_saying_so(stub: Stub, hub: FakeHub, models_root: Path) -> None:
    (models_root / "hf").mkdir(parents=True)
    (models_root / "hf" / "acme").symlink_to(models_root / "hf" / "acme", target_is_directory=True)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await frames(pull(stub))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(refused.value)[0].reason == "MODEL_PATH_UNREADABLE"
    assert not hub.downloads
