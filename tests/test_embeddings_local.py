"""Embed end to end: the real server and the real llama.cpp with the tiny model: vectors of the model's size and unit
length in order, batches, normalize and pooling, the preload file, model type embeddings, and a cancelled embed stopping
its decode."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from tests.conftest import TINY_MODEL, load_tiny, rich_details
from tests.embeddings import TEXTS, TINY_DIMENSIONS, cosine, embed, load_tiny_embedder, refusal, vectors
from warpcore.server.core.domain import LocalSettings
from warpcore.server.core.embeddings import Pooling
from warpcore.server.preload import ConfigError, read_preload
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.mark.parametrize("model_type", [pb.MODEL_TYPE_UNSPECIFIED, pb.MODEL_TYPE_TEXT_TO_TEXT])
async def test_a_text_model_asked_for_under_an_embedders_id_is_already_exists(stub: Stub, model_type: int) -> None:
    """A tester's finding: MODEL_TYPE_TEXT_TO_TEXT under the id of a model loaded for embeddings answered with the
    embedding model, as a request leaving everything unset gets it."""
    await load_tiny_embedder(stub)
    request = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_id="tiny-embed")
    request.model_type = model_type  # type: ignore[assignment]
    if model_type == pb.MODEL_TYPE_UNSPECIFIED:  # the model as it is loaded
        assert (await stub.LoadModel(request)).model.type == pb.MODEL_TYPE_TEXT_TO_EMBEDDING
        return
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await stub.LoadModel(request)
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "embedding" in (taken.value.details() or "")
    request.model_id = "tiny-text"
    assert (await stub.LoadModel(request)).model.type == pb.MODEL_TYPE_TEXT_TO_TEXT


async def test_vectors_have_the_model_size_unit_length_and_one_per_input_in_order(stub: Stub) -> None:
    await load_tiny_embedder(stub)
    response = await embed(stub, TEXTS)
    got = vectors(response)
    assert len(got) == len(TEXTS)
    assert all(len(vector) == TINY_DIMENSIONS for vector in got)
    assert all(math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-5) for vector in got)
    assert all(math.isclose(cosine(vector, vector), 1.0, rel_tol=1e-6) for vector in got)
    assert len({tuple(vector) for vector in got}) == len(TEXTS)  # different texts, different vectors
    assert response.prompt_tokens > len(TEXTS)  # a BOS and at least one token each
    assert response.upstream_request_id == ""

    reversed_order = vectors(await embed(stub, TEXTS[::-1]))
    together = [cosine(a, b) for a, b in zip(reversed_order[::-1], got, strict=True)]
    assert together == pytest.approx([1.0] * len(TEXTS), abs=1e-6)


async def test_identical_texts_get_identical_vectors_and_a_batch_equals_one_by_one(stub: Stub) -> None:
    await load_tiny_embedder(stub)
    batch = vectors(await embed(stub, [*TEXTS, TEXTS[0]]))
    assert batch == vectors(await embed(stub, [*TEXTS, TEXTS[0]]))  # the same call, bit for bit the same vectors
    # llama.cpp's CPU kernels are not batch-invariant: a text's vector changes slightly with the texts decoded beside
    # it (on this tiny model in its last bits; on Gemma, with its larger activations, more: see embeddings.proto).
    assert cosine(batch[0], batch[-1]) == pytest.approx(1.0, abs=1e-6)
    one_by_one = [vectors(await embed(stub, [text]))[0] for text in TEXTS]
    assert one_by_one[0] == vectors(await embed(stub, TEXTS[:1]))[0]
    for alone, together in zip(one_by_one, batch, strict=False):
        assert cosine(alone, together) == pytest.approx(1.0, abs=1e-6)


async def test_more_texts_than_one_batch_holds_come_back_in_order(stub: Stub) -> None:
    await load_tiny_embedder(stub, context_size=32)  # a few texts per llama.cpp batch
    texts = [f"{TEXTS[n % 3]} {n}" for n in range(40)]
    many = vectors(await embed(stub, texts))
    assert len(many) == 40
    for index in (0, 17, 39):
        assert cosine(vectors(await embed(stub, [texts[index]]))[0], many[index]) == pytest.approx(1.0, abs=1e-6)


async def test_normalize_off_gives_the_pooled_vector(stub: Stub) -> None:
    await load_tiny_embedder(stub)
    raw = vectors(await embed(stub, TEXTS[:1], normalize=False))[0]
    unit = vectors(await embed(stub, TEXTS[:1]))[0]
    length = math.sqrt(sum(x * x for x in raw))
    assert not math.isclose(length, 1.0, rel_tol=1e-3)
    assert [x / length for x in raw] == pytest.approx(unit, abs=1e-6)


async def test_pooling_setting_changes_the_vectors(stub: Stub) -> None:
    await load_tiny_embedder(stub, model_id="mean", pooling=epb.POOLING_MEAN)
    await load_tiny_embedder(stub, model_id="last", pooling=epb.POOLING_LAST)
    mean = vectors(await embed(stub, TEXTS[1:2], model_id="mean"))[0]
    last = vectors(await embed(stub, TEXTS[1:2], model_id="last"))[0]
    assert cosine(mean, last) < 0.9999


def test_the_preload_file_loads_embedding_models(tmp_path: Path) -> None:
    config = tmp_path / "warpcore.toml"
    entry = f'[[models]]\nbackend = "llama_cpp"\nmodel = "{TINY_MODEL}"\n[models.local]\nembedding = true\n'
    config.write_text(entry + 'pooling = "last"\n')
    (spec,) = read_preload(config, {})
    assert spec.settings == LocalSettings(embedding=True, pooling=Pooling.LAST)
    config.write_text(entry + 'pooling = "sideways"\n')
    with pytest.raises(ConfigError, match=r"models\[0\]\.local\.pooling must be one of mean, cls, last"):
        read_preload(config, {})
    config.write_text(entry.replace("embedding = true", 'pooling = "mean"'))
    with pytest.raises(ConfigError, match=r"models\[0\]\.local\.pooling: pooling applies only"):
        read_preload(config, {})


async def test_a_cancelled_embed_stops_its_long_decode(stub: Stub, caplog: pytest.LogCaptureFixture) -> None:
    """One long text is one llama.cpp decode of seconds: a call whose deadline passes stops it, so that the next call
    is not kept waiting behind vectors nobody will read; and the stop, asked for, is logged as no failure."""
    await load_tiny_embedder(stub, context_size=4096)
    long_text = " ".join(["the world"] * 1500)
    started = time.monotonic()
    await embed(stub, [long_text], truncate=True)
    whole = time.monotonic() - started
    caplog.set_level(logging.DEBUG, logger="llama.cpp")
    caplog.clear()
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await stub.Embed(
            epb.EmbedRequest(model_id="tiny-embed", inputs=[long_text], options=epb.EmbedOptions(truncate=True)),
            timeout=whole / 5,
        )
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    started = time.monotonic()
    await embed(stub, ["a"])  # after the stopped decode, on the same worker: its lines are logged by now
    assert time.monotonic() - started < whole / 2, whole
    native = [record for record in caplog.records if record.name == "llama.cpp"]
    assert any("decode" in record.getMessage() for record in native)  # llama.cpp did report the stop...
    assert [record.getMessage() for record in native if record.levelno >= logging.WARNING] == []  # ...as debug


async def test_a_model_type_of_embeddings_loads_a_model_to_embed_and_is_reported(stub: Stub) -> None:
    embedding = pb.MODEL_TYPE_TEXT_TO_EMBEDDING
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, model_id="typed", model_type=embedding
    )
    loaded = (await stub.LoadModel(request)).model
    assert (loaded.type, loaded.capabilities.embed, loaded.capabilities.generate) == (
        pb.MODEL_TYPE_TEXT_TO_EMBEDDING,
        True,
        False,
    )
    assert len(vectors(await embed(stub, ["the world"], model_id="typed"))[0]) == TINY_DIMENSIONS
    await load_tiny(stub)
    listed = {model.id: model.type for model in (await stub.ListModels(pb.ListModelsRequest())).models}
    assert listed == {"typed": pb.MODEL_TYPE_TEXT_TO_EMBEDDING, "tiny": pb.MODEL_TYPE_TEXT_TO_TEXT}
    request.model_id = "contradicted"
    request.backend_config.local.llama_cpp.embedding = False
    error = await refusal(stub.LoadModel(request))
    assert (error.code(), rich_details(error)[1]) == (grpc.StatusCode.INVALID_ARGUMENT, ["model_type"])
