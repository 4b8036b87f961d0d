"""Presence and frequency penalties, as OpenAI defines them: llama.cpp applies them to the scores (checked against the
raw log-probabilities it reports, and under a grammar), OpenAI receives them, Anthropic refuses them by name, and a
penalty of 0 is the same as none, through gRPC and the HTTP door (logit bias: tests/test_logit_bias.py)."""

from __future__ import annotations

import asyncio
import collections
import ctypes
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import jsonschema
import llama_cpp
import numpy as np
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import TINY_MODEL, collect, greedy, load_tiny, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import load, prompt
from tests.http_door import async_openai_client, load_hosted
from tests.local_engine import json_params, load_local, local_engine, run
from tests.test_logprobs import scored_stream
from tests.tiny_model import token_ids
from warpcore.server.adapters.llama.constraint import Constraint
from warpcore.server.adapters.llama.context import LoadedWeights, NativeContext
from warpcore.server.adapters.llama.grammar_sampler import Sampler
from warpcore.server.adapters.llama.schema_grammar import json_grammar
from warpcore.server.core.domain import BackendKind, FinishReason, LoadSpec
from warpcore.server.core.engine import Engine
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

PENALTIES = ("presence_penalty", "frequency_penalty")
TOKEN_IDS = token_ids()
SCHEMA = {
    "type": "object",
    "properties": {"words": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4}},
    "required": ["words"],
    "additionalProperties": False,
}


def with_option(request: pb.GenerateRequest, name: str, value: float) -> pb.GenerateRequest:
    setattr(request.options, name, value)
    return request


@pytest.mark.parametrize(
    ("presence", "frequency"), [(1.5, 0.0), (0.0, 0.75), (0.0, 0.2), (0.3, 0.1), (1.0, 0.5), (-1.0, -0.5)]
)
async def test_llama_takes_each_penalty_off_the_scores_of_tokens_already_generated(
    stub: Stub, tiny: str, presence: float, frequency: float
) -> None:
    """Every pick is the best of the 20 most likely tokens once each has lost `frequency` times its count in the
    answer so far plus `presence` if it is there at all: OpenAI's formula, over generated tokens only."""
    penalized = greedy(
        "the world", 48, logprobs=True, top_logprobs=20, presence_penalty=presence, frequency_penalty=frequency
    )
    text, scored, result = await scored_stream(stub.Generate(penalized))
    plain, _ = await collect(stub.Generate(greedy("the world", 48)))
    assert result.usage.completion_tokens == len(scored) == 48
    assert text != plain  # the tiny model repeats itself without penalties
    counts: collections.Counter[bytes] = collections.Counter()
    for chosen, _, top in scored:
        assert len({token for token, _ in top}) == len(top)  # the tokens' texts tell them apart
        scores = {token: logprob - frequency * counts[token] - presence * (counts[token] > 0) for token, logprob in top}
        assert chosen in scores
        assert scores[chosen] == pytest.approx(max(scores.values()), abs=1e-4)
        counts[chosen] += 1


async def test_penalized_text_is_the_same_alone_and_beside_others(stub: Stub) -> None:
    """Each generation counts its own tokens: four penalized greedy streams together give what each gives alone."""
    await load_tiny(stub, parallel=4)
    requests = [
        greedy(text, 24, presence_penalty=0.5 * n, frequency_penalty=0.25)
        for n, text in enumerate(("the world", "people say", "hello", "the state"))
    ]
    alone = [(await collect(stub.Generate(request)))[0] for request in requests]
    together = await asyncio.gather(*(collect(stub.Generate(request)) for request in requests))
    assert [text for text, _ in together] == alone


async def test_a_penalty_of_zero_is_no_penalty(stub: Stub, tiny: str) -> None:
    plain, _ = await collect(stub.Generate(greedy("the world", 24)))
    zero, _ = await collect(stub.Generate(greedy("the world", 24, presence_penalty=0.0, frequency_penalty=0.0)))
    assert zero == plain


@pytest.mark.parametrize("temperature", [1e-45, 1e-40, 1e-31])
async def test_a_temperature_near_zero_samples_as_greedy(stub: Stub, tiny: str, temperature: float) -> None:
    """Scores divided by a temperature near the smallest float overflowed, and the picks were other tokens."""
    plain, _ = await collect(stub.Generate(greedy("the world", 24)))
    tiny_temperature = greedy("the world", 24, seed=7)
    tiny_temperature.options.temperature = temperature
    assert (await collect(stub.Generate(tiny_temperature)))[0] == plain


async def test_sampled_penalized_output_repeats_with_its_seed(stub: Stub, tiny: str) -> None:
    options = {"max_tokens": 24, "temperature": 0.9, "seed": 11, "presence_penalty": 0.8, "frequency_penalty": 0.4}
    request = pb.GenerateRequest(model_id=tiny, prompt="the world", options=pb.GenerationOptions(**options))  # type: ignore[arg-type]
    first, _ = await collect(stub.Generate(request))
    second, _ = await collect(stub.Generate(request))
    assert first == second


@pytest.mark.parametrize("name", PENALTIES)
@pytest.mark.parametrize("value", [2.01, -2.5, math.nan, math.inf])
async def test_a_penalty_out_of_range_is_refused_by_name(stub: Stub, tiny: str, name: str, value: float) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await collect(stub.Generate(with_option(greedy("the world", 4), name, value)))
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"{name} must be between -2 and 2" in (failure.value.details() or "")
    _, fields = rich_details(failure.value)
    assert fields == [f"options.{name}"]


@pytest.fixture
async def engine(models_path: Path) -> AsyncIterator[Engine]:
    async with local_engine(models_path) as started:
        yield started


async def test_penalized_output_under_a_grammar_still_validates(engine: Engine) -> None:
    """With a grammar, the pick is made among the tokens it allows, so that only the token picked is counted; the
    penalties still change what it picks."""
    model = await load_local(engine, "tiny")
    texts = []
    for penalty in (None, 2.0):
        params = json_params(SCHEMA, temperature=0.0, presence_penalty=penalty, frequency_penalty=penalty)
        outcome = await run(engine, model, params)
        assert outcome.result is not None
        assert outcome.result.finish.reason is FinishReason.STOP, outcome.text
        jsonschema.validate(json.loads(outcome.text), SCHEMA)
        texts.append(outcome.text)
    assert texts[0] != texts[1]


async def test_openai_receives_the_penalties(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    await load(stub, openai_upstream)
    await collect(stub.Generate(prompt(presence_penalty=0.5, frequency_penalty=-0.25)))
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.5, -0.25)


@pytest.mark.parametrize("name", PENALTIES)
async def test_anthropic_refuses_a_penalty_by_name(stub: Stub, anthropic_upstream: FakeAnthropic, name: str) -> None:
    await load(stub, anthropic_upstream)
    sent = len(anthropic_upstream.requests)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await collect(stub.Generate(with_option(prompt(), name, 0.5)))
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(failure.value)[1] == [f"options.{name}"]
    assert len(anthropic_upstream.requests) == sent  # refused before anything went upstream
    await collect(stub.Generate(with_option(prompt(), name, 0.0)))  # 0 is no penalty: nothing to refuse


async def test_the_door_passes_penalties_to_llama_and_refuses_them_for_anthropic(
    doors: Doors, anthropic_upstream: FakeAnthropic
) -> None:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    await load_hosted(doors, anthropic_upstream, "claude")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        request = pb.GenerateRequest(
            model_id="tiny",
            messages=[pb.ChatMessage(role=pb.ROLE_USER, content="hello")],
            options=pb.GenerationOptions(max_tokens=24, temperature=0, presence_penalty=1.0, frequency_penalty=0.5),
        )
        expected, _ = await collect(inference_pb2_grpc.InferenceServiceStub(channel).Generate(request))
    hello: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    async with async_openai_client(doors) as client:
        penalized = await client.chat.completions.create(
            model="tiny", messages=hello, max_tokens=24, temperature=0, presence_penalty=1.0, frequency_penalty=0.5
        )
        plain = await client.chat.completions.create(model="tiny", messages=hello, max_tokens=24, temperature=0)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model="claude", messages=hello, max_tokens=8, presence_penalty=0.5)
        # What clients written for OpenAI send by default reaches any backend.
        await client.chat.completions.create(
            model="claude", messages=hello, max_tokens=8, presence_penalty=0, frequency_penalty=0
        )
    assert penalized.choices[0].message.content == expected
    assert plain.choices[0].message.content != expected
    assert refused.value.param == "presence_penalty"


def test_under_a_grammar_the_penalties_count_only_the_tokens_picked(models_path: Path) -> None:
    """Step by step on the tiny model's native context: each pick is the best token the JSON grammar allows once
    OpenAI's penalties for the tokens picked so far are taken off, though the grammar refuses the model's own first
    choice on the way; a token refused is never counted."""
    presence, frequency = 1.5, 0.5
    weights = LoadedWeights(models_path / "hf" / "warpcore" / "tiny" / "tiny.gguf", 0, True, False)
    native = NativeContext(weights, slots=1, context_size=256, threads=1, batch_threads=1)
    vocab = llama_cpp.llama_model_get_vocab(native.model)
    params = json_params(None, temperature=0.0, presence_penalty=presence, frequency_penalty=frequency)
    constraint = Constraint(json_grammar(None, "response_format"), "response_format")
    sampler = Sampler.of(params, vocab, native.vocabulary_size, constraint)
    oracle = llama_cpp.llama_sampler_init_grammar(vocab, constraint.grammar.encode(), b"root")
    ids = np.arange(native.vocabulary_size, dtype=np.int32)
    counts = np.zeros(native.vocabulary_size)
    refused = 0
    try:
        for position, token in enumerate([1, TOKEN_IDS[b" the"], TOKEN_IDS[b" world"]]):
            native.put(token, position, 0, logits=position == 2)
        assert native.decode()
        for position in range(3, 43):
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(native.ctx, -1), shape=(len(ids),)).copy()
            candidates = np.zeros(len(ids), dtype=[("id", np.int32), ("logit", np.float32), ("p", np.float32)])
            candidates["id"] = ids
            array = llama_cpp.llama_token_data_array(
                data=candidates.ctypes.data_as(llama_cpp.llama_token_data_p), size=len(ids), selected=-1, sorted=False
            )
            llama_cpp.llama_sampler_apply(oracle, ctypes.byref(array))
            allowed = np.isfinite(candidates["logit"])
            scores = logits - frequency * counts - presence * (counts > 0)
            refused += not allowed[int(scores.argmax())]
            token = sampler.sample(native.ctx, -1)
            assert token == int(np.where(allowed, scores, -np.inf).argmax())
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            llama_cpp.llama_sampler_accept(oracle, token)
            counts[token] += 1
            native.put(token, position, 0, logits=True)
            assert native.decode()
        assert refused > 0  # the case the rule is for did happen
    finally:
        llama_cpp.llama_sampler_free(oracle)
        sampler.free()
        native.free()
