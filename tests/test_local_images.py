"""Images on a llama.cpp model loaded with a multimodal projector (a tiny synthetic one, through llama.cpp's own
libmtmd): the image's embeddings go into the prompt's place, so the text depends on the image; a local model never
fetches a URL, and one loaded without a projector says how to load it with one."""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, load_tiny, rich_details
from tests.test_leaks import Snapshot
from tests.tiny_model import WORDS, write_tiny_model
from tests.tiny_projector import IMAGE_TOKENS, png, write_tiny_projector
from warpcore.client import AsyncClient, Image, InvalidArgumentError, Message
from warpcore.server.adapters.llama.context import PREFILL_PIECE
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import capabilities_pb2 as capb
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

MMPROJ = "hf:warpcore/tiny:mmproj.gguf"
MMPROJ_FIELD = ["backend_config.local.llama_cpp.mmproj"]
LONG_TEXT = " ".join(WORDS)


@pytest.fixture(scope="module")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    folder = root / "hf" / "warpcore" / "tiny"
    write_tiny_model(folder / "tiny.gguf")
    write_tiny_projector(folder / "mmproj.gguf")
    write_tiny_projector(folder / "narrow-mmproj.gguf", text_embedding=32)
    return root


def load_request(mmproj: str, model_id: str = "seeing", parallel: int | None = None) -> pb.LoadModelRequest:
    local = pb.LocalBackendConfig(parallel=parallel, llama_cpp=pb.LlamaCppConfig(mmproj=mmproj))
    return pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        model_id=model_id,
        backend_config=pb.BackendConfig(local=local),
    )


def image(seed: int) -> cpb.ContentPart:
    return cpb.ContentPart(image=cpb.ImagePart(data=png(seed), media_type="image/png"))


def looking(*parts: cpb.ContentPart, model_id: str = "seeing", logprobs: bool = False) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        model_id=model_id,
        messages=[pb.ChatMessage(role=pb.ROLE_USER, content="What is this?", parts=parts)],
        options=pb.GenerationOptions(max_tokens=8, temperature=0, logprobs=logprobs or None),
    )


async def generated(stub: Stub, request: pb.GenerateRequest) -> tuple[str, list[float], pb.GenerateResult]:
    text: list[str] = []
    scores: list[float] = []
    results = []
    async for frame in stub.Generate(request):
        if frame.HasField("delta"):
            text.append(frame.delta.text)
            scores += [token.logprob for token in frame.delta.logprobs]
        else:
            results.append(frame.result)
    assert len(results) == 1
    return "".join(text), scores, results[0]


async def refusal(stub: Stub, request: pb.GenerateRequest) -> tuple[grpc.StatusCode, str, str]:
    """The status, reason and the one field a refused Generate names."""
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(request))
    info, fields = rich_details(raised.value)
    assert len(fields) == 1
    return raised.value.code(), info.reason, fields[0]


async def test_an_image_turn_generates_from_the_image(stub: Stub) -> None:
    loaded = (await stub.LoadModel(load_request(MMPROJ))).model
    expected = capb.ModelCapabilities(generate=True, count_tokens=True, images=True, logprobs=True, tools=True)
    assert loaded.capabilities == expected
    listed = {model.id: model for model in (await stub.ListModels(pb.ListModelsRequest())).models}
    assert listed["seeing"].capabilities == expected
    request = looking(image(1), logprobs=True)
    first, second = [await generated(stub, request) for _ in range(2)]
    assert first[0]
    assert first[:2] == second[:2]  # the same image gives the same text and the same scores
    counted = await stub.CountTokens(pb.CountTokensRequest(request=request, include_tokens=True))
    assert [token.id for token in counted.count.tokens].count(-1) == IMAGE_TOKENS
    assert all(token.piece == b"" for token in counted.count.tokens if token.id == -1)
    assert first[2].usage.prompt_tokens == second[2].usage.prompt_tokens == counted.count.prompt_tokens
    other = await generated(stub, looking(image(2), logprobs=True))
    assert other[:2] != first[:2]


async def cache_aligned(stub: Stub, seed: int) -> pb.GenerateRequest:
    """An image whose embeddings end where a prompt cache piece does, then text for a few pieces more: the beginning
    a cache keyed on tokens alone would save holds the image, and would serve it for any other image."""
    request = looking(cpb.ContentPart(text=""), image(seed), cpb.ContentPart(text=LONG_TEXT), logprobs=True)
    for _ in range(2):  # the padding's letters are a token each; the second count checks it
        counted = await stub.CountTokens(pb.CountTokensRequest(request=request, include_tokens=True))
        end = [token.id for token in counted.count.tokens].index(-1) + IMAGE_TOKENS
        request.messages[0].parts[0].text += "a" * (-end % PREFILL_PIECE)
    assert end % PREFILL_PIECE == 0
    assert counted.count.prompt_tokens > end + 2 * PREFILL_PIECE
    return request


async def test_a_prompt_with_images_bypasses_the_prompt_cache(stub: Stub) -> None:
    await stub.LoadModel(load_request(MMPROJ))
    request = await cache_aligned(stub, 1)
    first, second = [await generated(stub, request) for _ in range(2)]
    assert second[2].usage.cached_prompt_tokens == 0
    assert first[:2] == second[:2]
    other = await generated(stub, await cache_aligned(stub, 2))
    assert other[:2] != first[:2]


async def test_the_sdk_loads_a_projector_and_sends_image_bytes(server: WarpcoreServer, stub: Stub) -> None:
    async with AsyncClient(f"127.0.0.1:{server.port}") as client:
        model = await client.load_model(TINY_MODEL, model_id="seeing", mmproj=MMPROJ)
        assert model.capabilities is not None
        assert model.capabilities.images
        turn = Message("user", "What is this?", parts=(Image(data=png(1), media_type="image/png"),))
        reply = await client.generate("seeing", messages=[turn], max_tokens=8, temperature=0)
        linked = Message("user", "What is this?", parts=(Image.from_url("https://images.example/cat.png"),))
        with pytest.raises(InvalidArgumentError):
            await client.generate("seeing", messages=[linked], max_tokens=8)
    text, _, result = await generated(stub, looking(image(1)))
    assert reply.usage is not None
    assert (reply.text, reply.usage.prompt_tokens) == (text, result.usage.prompt_tokens)


async def test_images_decode_beside_other_generations(stub: Stub) -> None:
    await stub.LoadModel(load_request(MMPROJ, parallel=3))
    requests = [looking(image(seed), logprobs=True) for seed in (1, 2)]
    alone = [await generated(stub, request) for request in requests]
    together = await asyncio.gather(
        *(generated(stub, request) for request in requests),
        generated(stub, looking(model_id="seeing", logprobs=True)),
    )
    assert [result[:2] for result in together[:2]] == [result[:2] for result in alone]


async def test_two_images_in_one_turn_are_read_in_order(stub: Stub) -> None:
    await stub.LoadModel(load_request(MMPROJ))
    one_two = await generated(stub, looking(image(1), cpb.ContentPart(text="and"), image(2), logprobs=True))
    two_one = await generated(stub, looking(image(2), cpb.ContentPart(text="and"), image(1), logprobs=True))
    assert one_two[2].usage.prompt_tokens == two_one[2].usage.prompt_tokens
    assert one_two[:2] != two_one[:2]


async def test_image_prompts_leave_no_native_memory_behind(stub: Stub) -> None:
    """Each request decodes a 512 x 512 image (768 KiB of pixels in llama.cpp's memory) and preprocesses it: a
    hundred requests leaking either would add far more than the limit."""
    await stub.LoadModel(load_request(MMPROJ))
    request = looking(cpb.ContentPart(image=cpb.ImagePart(data=png(3, size=512), media_type="image/png")))
    request.options.max_tokens = 1
    for _ in range(5):  # allocator caches and first-use buffers settle
        await generated(stub, request)
    baseline = Snapshot.take()
    for _ in range(50):
        await generated(stub, request)
        await stub.CountTokens(pb.CountTokensRequest(request=request))
    assert Snapshot.take().rss - baseline.rss < 20 * 1024 * 1024


async def test_unloading_with_image_generations_running_and_waiting(stub: Stub) -> None:
    """The projector goes after the generations that use it: the running one finishes, the waiting ones are told to
    retry, and the model loads and reads images again."""
    await stub.LoadModel(load_request(MMPROJ, parallel=1))
    running = stub.Generate(looking(image(1)))
    waiting = [asyncio.ensure_future(generated(stub, looking(image(seed)))) for seed in (2, 3, 4)]
    first = await running.read()
    assert isinstance(first, pb.GenerateResponse)
    assert first.HasField("delta")
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="seeing"))
    while (frame := await running.read()) is not grpc.aio.EOF:
        assert isinstance(frame, pb.GenerateResponse)
        last = frame
    assert last.result.finish_reason == pb.FINISH_REASON_LENGTH
    for outcome in await asyncio.gather(*waiting, return_exceptions=True):
        if isinstance(outcome, grpc.aio.AioRpcError):
            assert outcome.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND}
        else:
            assert not isinstance(outcome, BaseException)
    await stub.LoadModel(load_request(MMPROJ))
    assert (await generated(stub, looking(image(1))))[0]


async def test_a_local_model_never_fetches_an_image_url_and_refuses_unreadable_bytes(stub: Stub) -> None:
    await stub.LoadModel(load_request(MMPROJ))
    url = cpb.ContentPart(image=cpb.ImagePart(url="https://images.example/cat.png"))
    refused = await refusal(stub, looking(image(1), url))
    assert refused == (grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_URL_UNSUPPORTED", "messages[0].parts[1]")
    garbage = cpb.ContentPart(image=cpb.ImagePart(data=b"\x89PNG\r\n\x1a\n" + bytes(64), media_type="image/png"))
    refused = await refusal(stub, looking(image(1), garbage))
    assert refused == (grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_UNREADABLE", "messages[0].parts[1]")
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
