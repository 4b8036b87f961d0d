"""Embed end to end: the real server, the real llama.cpp with the tiny model, the real OpenAI SDK against the fake,
and each refusal."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import TINY_MODEL, collect, greedy, load_tiny, rich_details, serving
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import EMBEDDING_DIMENSIONS, FakeOpenAI, fake_embedding
from tests.hosted import load
from warpcore.server.core.bounds import MAX_REQUEST_ID
from warpcore.server.core.domain import LocalSettings
from warpcore.server.core.embeddings import Pooling, response_bytes
from warpcore.server.preload import ConfigError, read_preload
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import embeddings_pb2 as epb
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

TINY_DIMENSIONS = 64  # the tiny model's embedding length (tests/tiny_model.py)
TEXTS = ["the world", "people say hello", "a", "the world and the people of the world say hello again"]


async def load_tiny_embedder(
    stub: Stub, model_id: str = "tiny-embed", context_size: int | None = None, pooling: int = 0
) -> pb.Model:
    llama_cpp = pb.LlamaCppConfig(embedding=True, pooling=pooling)  # type: ignore[arg-type]
    response = await stub.LoadModel(
        pb.LoadModelRequest(
            backend=pb.BACKEND_TYPE_LLAMA_CPP,
            model=TINY_MODEL,
            model_id=model_id,
            model_config=pb.ModelConfig(context_size=context_size),
            backend_config=pb.BackendConfig(local=pb.LocalBackendConfig(llama_cpp=llama_cpp)),
        )
    )
    return response.model


async def embed(
    stub: Stub, inputs: Sequence[str], model_id: str = "tiny-embed", **options: object
) -> epb.EmbedResponse:
    request = epb.EmbedRequest(model_id=model_id, inputs=inputs, options=epb.EmbedOptions(**options))  # type: ignore[arg-type]
    return await stub.Embed(request)


def vectors(response: epb.EmbedResponse) -> list[list[float]]:
    return [list(embedding.values) for embedding in response.embeddings]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def refusal(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call  # type: ignore[misc]
    return raised.value


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
    # it (on this tiny model in its last bits; on Gemma, with its larger activations, cosine stays above 0.999).
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


async def test_an_input_longer_than_the_context_is_refused_unless_truncated(stub: Stub) -> None:
    await load_tiny_embedder(stub, context_size=16)
    long_text = " ".join(["the world"] * 40)
    error = await refusal(embed(stub, ["hello", long_text]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = rich_details(error)
    assert (info.reason, fields) == ("CONTEXT_LENGTH_EXCEEDED", ["inputs[1]"])

    truncated = await embed(stub, ["hello", long_text], truncate=True)
    assert len(truncated.embeddings) == 2
    assert len(truncated.embeddings[1].values) == TINY_DIMENSIONS
    short = await embed(stub, ["hello"])
    assert truncated.prompt_tokens == short.prompt_tokens + 16


@pytest.mark.parametrize(
    ("inputs", "options", "field"),
    [
        ([], {}, "inputs"),
        (["ok", ""], {}, "inputs[1]"),
        (["x"] * 2049, {}, "inputs"),
        (["ok"], {"dimensions": 0}, "options.dimensions"),
        (["ok"], {"dimensions": 32}, "options.dimensions"),  # the tiny model's vectors have 64
    ],
)
async def test_bad_requests_name_the_field(stub: Stub, inputs: list[str], options: dict[str, Any], field: str) -> None:
    await load_tiny_embedder(stub)
    error = await refusal(embed(stub, inputs, **options))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == [field]


async def test_a_generation_model_refuses_to_embed_and_an_embedding_model_to_generate(stub: Stub) -> None:
    await load_tiny(stub, model_id="tiny")
    await load_tiny_embedder(stub)
    error = await refusal(embed(stub, ["hello"], model_id="tiny"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(error)[0].reason == "MODEL_NOT_LOADED_FOR_EMBEDDINGS"
    assert rich_details(error)[1] == ["model_id"]  # the model named is what cannot embed
    assert "embedding" in (error.details() or "")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(greedy("the world", 4, model_id="tiny-embed")))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(raised.value)[0].reason == "MODEL_LOADED_FOR_EMBEDDINGS"
    assert rich_details(raised.value)[1] == ["model_id"]

    missing = await refusal(embed(stub, ["hello"], model_id="nobody"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_pooling_without_embedding_is_refused(stub: Stub) -> None:
    llama_cpp = pb.LlamaCppConfig(pooling=epb.POOLING_CLS)
    request = pb.LoadModelRequest(
        backend=pb.BACKEND_TYPE_LLAMA_CPP,
        model=TINY_MODEL,
        backend_config=pb.BackendConfig(local=pb.LocalBackendConfig(llama_cpp=llama_cpp)),
    )
    error = await refusal(stub.LoadModel(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == ["backend_config.local.llama_cpp.pooling"]


async def test_openai_embeddings_through_the_sdk(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.models.append("text-embedding-3-small")
    await load(stub, openai_upstream, model="text-embedding-3-small")
    response = await embed(stub, ["one text", "another text here"], model_id="m", dimensions=12)
    assert vectors(response) == [
        pytest.approx(fake_embedding("one text", 12), abs=1e-6),
        pytest.approx(fake_embedding("another text here", 12), abs=1e-6),
    ]
    assert response.prompt_tokens == 5
    assert response.upstream_request_id == openai_upstream.script.request_id
    sent = openai_upstream.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/v1/embeddings")
    assert sent.body is not None
    assert sent.body["model"] == "text-embedding-3-small"
    assert sent.body["input"] == ["one text", "another text here"]
    assert sent.body["dimensions"] == 12


@pytest.mark.parametrize(
    ("options", "field"), [({"normalize": False}, "options.normalize"), ({"truncate": True}, "options.truncate")]
)
async def test_openai_refuses_what_its_api_cannot_do(
    stub: Stub, openai_upstream: FakeOpenAI, options: dict[str, Any], field: str
) -> None:
    await load(stub, openai_upstream)
    sent_before = len(openai_upstream.requests)
    error = await refusal(embed(stub, ["hello"], model_id="m", **options))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[1] == [field]
    assert len(openai_upstream.requests) == sent_before  # refused before anything went upstream


async def test_openai_upstream_failure_is_mapped(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    openai_upstream.script.status = 429
    error = await refusal(embed(stub, ["hello"], model_id="m"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    ("vectors_sent", "flaw"),
    [
        ([[0.6, math.nan], [0.6, 0.8]], "a value that is no finite number"),
        ([[0.6, 0.8], [1.0]], "vectors of different lengths (1, 2)"),
        ([[], []], "an empty vector"),
    ],
)
async def test_vectors_an_upstream_should_not_have_sent_are_unavailable(
    stub: Stub, openai_upstream: FakeOpenAI, vectors_sent: list[list[float]], flaw: str
) -> None:
    """Never passed on: a NaN is no JSON number for the HTTP door to write, and vectors of different lengths answer
    no one question."""
    await load(stub, openai_upstream)
    openai_upstream.script.embedding_vectors = vectors_sent
    error = await refusal(embed(stub, ["one", "two"], model_id="m"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert rich_details(error)[0].reason == "UPSTREAM_MALFORMED"
    assert f"the embeddings hold {flaw}" in (error.details() or "")


async def test_vectors_of_another_length_than_the_dimensions_asked_are_refused(
    stub: Stub, openai_upstream: FakeOpenAI
) -> None:
    """An OpenAI-compatible server that cannot shorten its vectors (llama.cpp's) ignores dimensions: its vectors
    would not fit the caller's index, so the option is refused as one the model cannot honour."""
    await load(stub, openai_upstream)
    openai_upstream.script.embedding_vectors = [[0.6, 0.8], [0.8, 0.6]]
    error = await refusal(embed(stub, ["one", "two"], model_id="m", dimensions=4))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[0].reason == "OPTION_UNSUPPORTED"
    assert rich_details(error)[1] == ["options.dimensions"]
    assert "gives vectors of 2 dimensions, not the 4 asked for" in (error.details() or "")
    assert len(vectors(await embed(stub, ["one", "two"], model_id="m", dimensions=2))[0]) == 2


@pytest.mark.parametrize("usage", [None, {"prompt_tokens": None, "total_tokens": None}])
async def test_an_embeddings_answer_without_its_token_count_counts_none(
    stub: Stub, openai_upstream: FakeOpenAI, usage: dict[str, None] | None
) -> None:
    await load(stub, openai_upstream)
    openai_upstream.script.embedding_usage = usage
    response = await embed(stub, ["one text"], model_id="m", dimensions=4)
    assert (len(vectors(response)), response.prompt_tokens) == (1, 0)


async def test_anthropic_has_no_embeddings(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    await load(stub, anthropic_upstream)
    error = await refusal(embed(stub, ["hello"], model_id="m"))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert rich_details(error)[0].reason == "EMBEDDINGS_UNSUPPORTED"
    assert rich_details(error)[1] == ["model_id"]
    assert "openai" in (error.details() or "")


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


async def test_vectors_that_would_not_fit_in_one_response_are_refused_naming_how_many_fit(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """Inputs whose vectors exceed the server's max message size are INVALID_ARGUMENT, never a transport failure
    logged as OK: before any work where the vectors' length is known (a local model, or dimensions asked for), once
    measured where not (an API's own length); as many as the refusal names fit."""
    limit = 20_000
    async with (
        serving(server_env, ServingOptions(max_message_bytes=limit)) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        await load_tiny_embedder(stub)
        openai_upstream.models.append("text-embedding-3-small")
        await load(stub, openai_upstream, model="text-embedding-3-small")
        cases: list[tuple[str, dict[str, int], int, bool]] = [
            ("tiny-embed", {}, TINY_DIMENSIONS, False),
            ("m", {"dimensions": TINY_DIMENSIONS}, TINY_DIMENSIONS, False),
            ("m", {}, EMBEDDING_DIMENSIONS, True),
        ]
        for model_id, options, dimensions, measured in cases:
            too_many = limit // (4 * dimensions) + 1  # their values alone do not fit
            sent = len(openai_upstream.requests)
            refused = await refusal(embed(stub, ["x"] * too_many, model_id=model_id, **options))
            assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
            info, fields = rich_details(refused)
            assert (info.reason, fields) == ("RESPONSE_TOO_LARGE", ["inputs"])
            assert len(openai_upstream.requests) == sent + measured  # refused before any work where it can be
            named = re.search(r"at most (\d+) inputs", refused.details() or "")
            assert named is not None, refused.details()
            most = int(named.group(1))
            assert len(vectors(await embed(stub, ["x"] * most, model_id=model_id, **options))) == most
            sent = len(openai_upstream.requests)
            # Known length: one more than the most named is refused before any work, never once done. Unknown:
            # the values fit, but not with the response's framing, which only the vectors tell.
            over = too_many - 1 if measured else most + 1
            refused = await refusal(embed(stub, ["x"] * over, model_id=model_id, **options))
            assert rich_details(refused)[0].reason == "RESPONSE_TOO_LARGE"
            assert len(openai_upstream.requests) == sent + measured


@pytest.mark.parametrize("dimensions", [1, 64, 640, 4096, 65_536])
@pytest.mark.parametrize("count", [1, 7])
def test_the_response_size_named_before_any_work_is_the_most_a_response_takes(dimensions: int, count: int) -> None:
    """check_response_room's bound holds for any vectors, token count and request id a response may carry."""
    response = epb.EmbedResponse(
        embeddings=[epb.Embedding(values=[-1.5e38] * dimensions) for _ in range(count)],
        prompt_tokens=2**32 - 1,
        upstream_request_id="r" * MAX_REQUEST_ID,
    )
    assert response.ByteSize() <= response_bytes(count, dimensions)


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
