"""Images a llama.cpp model refuses, before llama.cpp decodes any: a URL (a local model never fetches one), bytes
that are no image its image decoder reads (given to no other decoder, and to no ffprobe or ffmpeg process), images
over the pixel bound by their headers, and any image on a model loaded without a projector
(which says how to load it with one); and the projectors a load refuses: on an embedding model, outside MODELS_PATH,
missing, made for a model of another width, or no projector at all."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from PIL import Image

from tests.conftest import TINY_MODEL, collect, load_tiny, rich_details
from tests.local_images_support import MMPROJ, generated, image, load_request, looking
from tests.tiny_projector import png, write_seeing_models, write_tiny_projector
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

MMPROJ_FIELD = ["backend_config.local.llama_cpp.mmproj"]


@pytest.fixture(scope="module")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model and its projector, and a projector made for a model of another width."""
    root = write_seeing_models(tmp_path_factory.mktemp("models"))
    write_tiny_projector(root / "hf" / "warpcore" / "tiny" / "narrow-mmproj.gguf", text_embedding=32)
    return root


async def refusal(stub: Stub, request: pb.GenerateRequest) -> tuple[grpc.StatusCode, str, str]:
    """The status, reason and the one field a refused Generate names."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(request))
    info, fields = rich_details(raised.value)
    assert len(fields) == 1
    return raised.value.code(), info.reason, fields[0]


async def test_a_local_model_never_fetches_an_image_url(stub: Stub) -> None:
    await stub.LoadModel(load_request(MMPROJ))
    url = cpb.ContentPart(image=cpb.ImagePart(url="https://images.example/cat.png"))
    refused = await refusal(stub, looking(image(1), url))
    assert refused == (grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_URL_UNSUPPORTED", "messages[0].parts[1]")
    text, _, _ = await generated(stub, looking(image(1)))  # the model serves on
    assert text


def webp() -> bytes:
    """A WebP: its signature passes the request's check, llama.cpp's image decoder reads no WebP."""
    out = io.BytesIO()
    Image.new("RGB", (28, 28), "teal").save(out, "WEBP")
    return out.getvalue()


MP4_HEADER = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomiso2"
UNREADABLE = {
    "image/webp": [webp()],
    "image/png": [
        png(1)[: len(png(1)) // 2],  # truncated
        b"\x89PNG\r\n\x1a\n",  # the signature alone
        b"\x89PNG\r\n\x1a\n" + MP4_HEADER,  # a video's header behind the signature
        b"\x89PNG\r\n\x1a\n" + bytes(64),
    ],
    "image/jpeg": [b"\xff\xd8\xff\xe0" + MP4_HEADER],
    "image/gif": [b"GIF89a" + MP4_HEADER],
}


@pytest.fixture
def media_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ffprobe and an ffmpeg first on the server's PATH, each writing down that it ran; the file they write."""
    runs, tools = tmp_path / "runs", tmp_path / "bin"
    tools.mkdir()
    for name in ("ffprobe", "ffmpeg"):
        (tools / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{runs}"\ncat > /dev/null\n')
        (tools / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ.get('PATH', '')}")
    return runs


async def test_bytes_no_image_decoder_reads_go_to_no_other_decoder_nor_process(
    stub: Stub, media_tools: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An outside tester's finding: llama.cpp's helper tried such bytes as a video next, starting an ffprobe found
    on PATH to read them, a process per request."""
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    await stub.LoadModel(load_request(MMPROJ))
    for media_type, samples in UNREADABLE.items():
        for data in samples:
            unreadable = cpb.ContentPart(image=cpb.ImagePart(data=data, media_type=media_type))
            refused = await refusal(stub, looking(image(1), unreadable))
            assert refused == (grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_UNREADABLE", "messages[0].parts[1]")
    assert not await asyncio.to_thread(media_tools.exists)
    native = " ".join(record.getMessage() for record in caplog.records if record.name == "llama.cpp")
    assert "ffprobe" not in native
    assert "video" not in native
    text, _, _ = await generated(stub, looking(image(1)))  # the model serves on
    assert text


def png_header(width: int, height: int) -> bytes:
    """A PNG that says it is `width` x `height` pixels (RGB), with its header alone and no picture."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


async def test_images_that_decode_past_the_pixel_bound_are_refused_by_their_headers(stub: Stub) -> None:
    """A tester's 750 kB PNG of 16000x16000 pixels took 1.5 GB as llama.cpp decoded it."""
    await stub.LoadModel(load_request(MMPROJ))
    huge = cpb.ContentPart(image=cpb.ImagePart(data=png_header(16000, 16000), media_type="image/png"))
    refused = await refusal(stub, looking(image(1), huge))
    assert refused == (grpc.StatusCode.RESOURCE_EXHAUSTED, "IMAGE_TOO_LARGE", "messages[0].parts[1]")
    # Within the bound each, over it together: the one that passes it is named.
    half = cpb.ContentPart(image=cpb.ImagePart(data=png_header(6000, 5000), media_type="image/png"))
    refused = await refusal(stub, looking(half, half))
    assert refused == (grpc.StatusCode.RESOURCE_EXHAUSTED, "IMAGE_TOO_LARGE", "messages[0].parts[1]")
    counted = stub.CountTokens(pb.CountTokensRequest(request=looking(huge)))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await counted
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    text, _, _ = await generated(stub, looking(image(1)))  # the model serves on
    assert text


async def test_a_model_loaded_without_mmproj_says_to_load_it_with_one_and_reads_text_parts(stub: Stub) -> None:
    await load_tiny(stub)
    for part in (image(1), cpb.ContentPart(image=cpb.ImagePart(url="https://images.example/cat.png"))):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await collect(stub.Generate(looking(cpb.ContentPart(text="x"), part, model_id="tiny")))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info, fields = rich_details(raised.value)
        assert (info.reason, fields) == ("IMAGES_UNSUPPORTED", ["messages[0].parts[1]"])
        assert "mmproj" in (raised.value.details() or "")
    assert not (await stub.ListModels(pb.ListModelsRequest())).models[0].capabilities.images
    with_parts = looking(cpb.ContentPart(text="the world"), model_id="tiny")
    counted = await stub.CountTokens(pb.CountTokensRequest(request=with_parts, include_tokens=True))
    assert b"What is this?\nthe world" in b"".join(token.piece for token in counted.count.tokens)
    _, result = await collect(stub.Generate(with_parts))
    assert result.usage.prompt_tokens == counted.count.prompt_tokens


async def test_a_model_loaded_for_embeddings_takes_no_mmproj(stub: Stub) -> None:
    request = load_request(MMPROJ)
    request.backend_config.local.llama_cpp.embedding = True
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(raised.value)[1] == MMPROJ_FIELD


@pytest.mark.parametrize(
    ("mmproj", "code", "reason"),
    [
        ("hf:warpcore/tiny:missing-mmproj.gguf", grpc.StatusCode.NOT_FOUND, "MODEL_FILE_NOT_FOUND"),
        ("../outside.gguf", grpc.StatusCode.INVALID_ARGUMENT, "MODEL_PATH_OUTSIDE_MODELS_PATH"),
        ("/etc/mmproj.gguf", grpc.StatusCode.INVALID_ARGUMENT, "MODEL_PATH_OUTSIDE_MODELS_PATH"),
        # A projector made for a model of another width.
        ("hf:warpcore/tiny:narrow-mmproj.gguf", grpc.StatusCode.FAILED_PRECONDITION, "MODEL_LOAD_FAILED"),
        # A text model is no projector.
        (TINY_MODEL, grpc.StatusCode.FAILED_PRECONDITION, "MODEL_LOAD_FAILED"),
    ],
)
async def test_an_mmproj_is_resolved_under_models_path_and_checked(
    stub: Stub, mmproj: str, code: grpc.StatusCode, reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LoadModel(load_request(mmproj))
    assert raised.value.code() == code
    assert rich_details(raised.value)[0].reason == reason
    assert rich_details(raised.value)[1] == MMPROJ_FIELD
    assert (await stub.ListModels(pb.ListModelsRequest())).models == []


async def test_an_mmproj_outside_models_path_through_a_link_is_refused(stub: Stub, models_path: Path) -> None:
    outside = models_path.parent / "outside-mmproj.gguf"
    write_tiny_projector(outside)
    link = models_path / "linked-mmproj.gguf"
    link.symlink_to(outside)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.LoadModel(load_request("linked-mmproj.gguf"))
    finally:
        link.unlink()
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(raised.value)[0].reason == "MODEL_PATH_OUTSIDE_MODELS_PATH"
