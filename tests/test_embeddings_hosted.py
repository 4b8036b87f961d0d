"""Embed end to end: the hosted backends: OpenAI's embeddings through its SDK, what its API cannot do, an upstream's
failures and bad vectors, a missing token count, and none from Anthropic."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import rich_details
from tests.embeddings import embed, refusal, vectors
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI, fake_embedding
from tests.hosted import load

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


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
