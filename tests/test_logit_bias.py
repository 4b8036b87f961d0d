"""Logit bias, as OpenAI defines it: llama.cpp adds it to the scores (checked against the raw log-probabilities it
reports), -100 bans a token and +100 all but forces it, a bias out of range is refused by name, OpenAI receives it and
Anthropic refuses it by name, through gRPC and the HTTP door."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import grpc
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import TINY_MODEL, assert_healthy, collect, greedy, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load, prompt
from tests.http_door import async_openai_client
from tests.test_logprobs import scored_stream
from tests.tiny_model import token_ids
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

TOKEN_IDS = token_ids()


async def test_llama_adds_the_logit_bias_to_the_scores(stub: Stub, tiny: str) -> None:
    """Every pick is the best of the 20 most likely tokens once each biased one has its bias added; -100 bans a
    token, +100 all but forces it."""
    plain = greedy("the world", 16, logprobs=True, top_logprobs=20)
    _, plain_scored, _ = await scored_stream(stub.Generate(plain))
    generated = {TOKEN_IDS[token] for token, _, _ in plain_scored}
    for bias in (-3.0, -100.0):
        request = greedy("the world", 16, logprobs=True, top_logprobs=20, logit_bias=dict.fromkeys(generated, bias))
        _, scored, _ = await scored_stream(stub.Generate(request))
        assert [token for token, _, _ in scored] != [token for token, _, _ in plain_scored]
        for chosen, _, top in scored:
            scores = {token: logprob + bias * (TOKEN_IDS[token] in generated) for token, logprob in top}
            assert chosen in scores
            assert scores[chosen] == pytest.approx(max(scores.values()), abs=1e-4)
    _, scored, _ = await scored_stream(stub.Generate(request))
    assert not {TOKEN_IDS[token] for token, _, _ in scored} & generated  # -100 banned them all
    forced, _ = await collect(stub.Generate(greedy("the world", 8, logit_bias={TOKEN_IDS[b" people"]: 100.0})))
    assert forced == " people" * 8


async def test_a_logit_bias_out_of_range_is_refused_by_name(stub: Stub, tiny: str) -> None:
    for bias, message in (
        ({5: 100.5}, "each logit_bias must be between -100 and 100"),
        ({5: math.nan}, "each logit_bias must be between -100 and 100"),
        (dict.fromkeys(range(1025), 1.0), "logit_bias holds at most 1024 tokens"),
        ({2**31: 1.0}, "logit_bias: this model's token ids go from 0 to"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await collect(stub.Generate(greedy("the world", 4, logit_bias=bias)))
        assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert message in (failure.value.details() or "")
        assert rich_details(failure.value)[1] == ["options.logit_bias"]
    await assert_healthy(stub)


async def test_logit_bias_reaches_openai_and_anthropic_refuses_it(
    stub: Stub, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    await load(stub, openai_upstream)
    await collect(stub.Generate(prompt(logit_bias={50256: -100.0, 7: 2.0})))
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert body["logit_bias"] == {"7": 2.0, "50256": -100.0}
    await stub.UnloadModel(pb.UnloadModelRequest(model_id="m"))
    await load(stub, anthropic_upstream)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await collect(stub.Generate(prompt(logit_bias={7: 2.0})))
    assert rich_details(failure.value)[1] == ["options.logit_bias"]


async def test_the_door_takes_an_openai_logit_bias(doors: Doors) -> None:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    async with async_openai_client(doors) as client:
        chat = await client.chat.completions.create(
            model="tiny", messages=hello, max_tokens=6, temperature=0, logit_bias={str(TOKEN_IDS[b" people"]): 100}
        )
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="tiny", messages=hello, max_tokens=6, logit_bias={"people": 100})
    assert chat.choices[0].message.content == " people" * 6
    assert refused.value.param == "logit_bias"
