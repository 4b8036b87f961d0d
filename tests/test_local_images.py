"""Images on a llama.cpp model loaded with a multimodal projector (a tiny synthetic one, through llama.cpp's own
libmtmd): the image's embeddings go into the prompt's place, so the text depends on the image, alone or beside other
generations; a prompt with images bypasses the prompt cache and leaves no native memory behind (what is refused:
test_local_image_refusals.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL
from tests.local_images_support import MMPROJ, generated, image, load_request, looking
from tests.test_leaks import Snapshot
from tests.tiny_model import WORDS
from tests.tiny_projector import IMAGE_TOKENS, png, write_seeing_models
from warpcore.client import AsyncClient, Image, InvalidArgumentError, Message
from warpcore.server.adapters.llama.context import PREFILL_PIECE
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import capabilities_pb2 as capb
from warpcore.v1 import content_pb2 as cpb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

LONG_TEXT = " ".join(WORDS)


@pytest.fixture(scope="module")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_seeing_models(tmp_path_factory.mktemp("models"))


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
