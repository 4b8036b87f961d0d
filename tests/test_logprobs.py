"""Log-probabilities on Generate: llama.cpp computes them from the logits, the same for any `parallel`; OpenAI
streams them (the real SDK against the fake); Anthropic has none. Each delta carries the tokens its text is made of,
joined with the text when deltas are joined."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.conftest import collect, greedy, load_tiny, rich_details
from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load, prompt
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

PROMPTS = ["the world", "people say", "hello", "the people of the world"]
Scored = list[tuple[bytes, float, list[tuple[bytes, float]]]]


async def scored_stream(
    call: grpc.aio.UnaryStreamCall[pb.GenerateRequest, pb.GenerateResponse],
) -> tuple[str, Scored, pb.GenerateResult]:
    """The text, every token's (bytes, logprob, top alternatives), and the result; each delta's tokens spell its
    text."""
    text, scored, results = [], [], []
    async for frame in call:
        if frame.HasField("result"):
            results.append(frame.result)
            continue
        delta = frame.delta
        assert b"".join(token.bytes for token in delta.logprobs) == delta.text.encode()
        text.append(delta.text)
        scored += [
            (token.bytes, token.logprob, [(top.bytes, top.logprob) for top in token.top_logprobs])
            for token in delta.logprobs
        ]
    assert len(results) == 1
    return "".join(text), scored, results[0]


def scored_greedy(text: str, top: int = 5, **options: Any) -> pb.GenerateRequest:
    return greedy(text, 16, logprobs=True, top_logprobs=top, **options)


@pytest.mark.parametrize("parallel", [1, 4])
async def test_llama_logprobs_align_with_the_text_and_rank_the_greedy_choice_first(stub: Stub, parallel: int) -> None:
    await load_tiny(stub, parallel=parallel)
    text, scored, result = await scored_stream(stub.Generate(scored_greedy("the world")))
    assert text
    assert len(scored) == result.usage.completion_tokens == 16
    for token, logprob, top in scored:
        assert logprob <= 0
        assert len(top) == 5
        assert [value for _, value in top] == sorted((value for _, value in top), reverse=True)
        assert top[0] == (token, logprob)  # greedy picks the most likely token
        assert len({other for other, _ in top}) == 5


async def test_llama_logprobs_are_the_same_for_parallel_1_and_4(stub: Stub) -> None:
    await load_tiny(stub, model_id="one", parallel=1)
    await load_tiny(stub, model_id="four", parallel=4)
    alone = [await scored_stream(stub.Generate(scored_greedy(text, model_id="one"))) for text in PROMPTS]
    together = await asyncio.gather(
        *(scored_stream(stub.Generate(scored_greedy(text, model_id="four"))) for text in PROMPTS)
    )
    assert [text for text, _, _ in together] == [text for text, _, _ in alone]
    # The same tokens and alternatives; the values agree to float32 rounding: with other sequences in the shared
    # KV cache, attention sums over more (masked) cells, in another order.
    for (_, batched, _), (_, serial, _) in zip(together, alone, strict=True):
        assert [(token, [other for other, _ in top]) for token, _, top in batched] == [
            (token, [other for other, _ in top]) for token, _, top in serial
        ]
        values = [value for _, logprob, top in batched for value in (logprob, *(v for _, v in top))]
        expected = [value for _, logprob, top in serial for value in (logprob, *(v for _, v in top))]
        assert values == expected


async def test_tokens_that_spell_nothing_are_scored_too(stub: Stub) -> None:
    """A tester's finding: tokens without text (a control token, here the tiny model's <s>, forced by logit_bias)
    were counted in completion_tokens but had no logprobs: one entry per token, whatever its text."""
    await load_tiny(stub)
    forced = scored_greedy("the world", logit_bias={1: 100.0})
    text, scored, result = await scored_stream(stub.Generate(forced))
    assert text == ""
    assert len(scored) == result.usage.completion_tokens == 16
    assert {token for token, _, _ in scored} == {b""}


async def test_no_logprobs_unless_asked_and_without_alternatives_unless_asked(stub: Stub) -> None:
    await load_tiny(stub)
    frames = [frame async for frame in stub.Generate(greedy("the world", 8))]
    assert all(not frame.delta.logprobs for frame in frames[:-1])
    _, scored, _ = await scored_stream(stub.Generate(scored_greedy("the world", top=0)))
    assert len(scored) == 16
    assert all(top == [] for _, _, top in scored)


@pytest.mark.parametrize("cut", [False, True], ids=["a word", "from inside a word into the next"])
async def test_a_stop_sequence_leaves_its_tokens_out(stub: Stub, cut: bool) -> None:
    """The tokens spell the text, and beyond it only what of the stop sequence the last of them holds: a tester's
    finding was the tokens that complete it sent too (text " f", tokens " five", ",", " six" for the stop "ive, s")."""
    await load_tiny(stub)
    full, _, _ = await scored_stream(stub.Generate(scored_greedy("the world")))
    words = full.split()
    middle = len(words) // 2
    stop = f"{words[middle][1:]} {words[middle + 1][:2]}" if cut else words[middle]
    frames = [frame async for frame in stub.Generate(scored_greedy("the world", stop_sequences=[stop]))]
    text = "".join(frame.delta.text for frame in frames[:-1])
    tokens = [token.bytes for frame in frames[:-1] for token in frame.delta.logprobs]
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_STOP_SEQUENCE
    assert b"".join(tokens).startswith(text.encode())
    assert len(b"".join(tokens[:-1])) < len(text.encode())  # the last token begins in the text: none after it
    assert (text + stop).encode().startswith(b"".join(tokens))  # what it spells beyond the text is the stop's


async def test_text_held_back_inside_a_token_goes_out_with_that_tokens_logprob(stub: Stub) -> None:
    """A token's last character that may begin a stop sequence is held back until the next token shows it does
    not: the delta before it must not carry the token while its text is cut short (scored_stream checks)."""
    await load_tiny(stub)
    full, scored, _ = await scored_stream(stub.Generate(scored_greedy("the world")))
    endings = sorted({token.decode(errors="ignore")[-1:] for token, _, _ in scored if len(token) > 1} - {""})
    stops = [ending + "\x7f" for ending in endings[:16]]  # never written: each holds back, none matches
    assert stops
    assert (await scored_stream(stub.Generate(scored_greedy("the world", stop_sequences=stops))))[:2] == (full, scored)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"logprobs": True, "top_logprobs": 21}, "options.top_logprobs"),
        ({"top_logprobs": 3}, "options.top_logprobs"),
    ],
)
async def test_bad_logprob_options_name_the_field(stub: Stub, options: dict[str, Any], field: str) -> None:
    await load_tiny(stub)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(greedy("the world", 4, **options)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(raised.value)[1] == [field]


async def test_openai_streams_logprobs_through_the_sdk(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script = Script(chunks=["Hel", "lo", " wörld"])
    await load(stub, openai_upstream)
    text, scored, _ = await scored_stream(stub.Generate(prompt(logprobs=True, top_logprobs=3)))
    assert text == "Hello wörld"
    expected = [(piece.encode(), -len(piece) / 10) for piece in ("Hel", "lo", " wörld")]
    assert [token for token, _, _ in scored] == [token for token, _ in expected]
    for (_, logprob, top), (token, value) in zip(scored, expected, strict=True):
        assert logprob == pytest.approx(value)
        assert [other for other, _ in top] == [token, b"alt1", b"alt2"]
        assert [v for _, v in top] == pytest.approx([value, value - 1, value - 2])
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    await collect(stub.Generate(prompt()))
    plain = openai_upstream.requests[-1].body
    assert plain is not None
    assert "logprobs" not in plain
    assert "top_logprobs" not in plain


async def test_joined_deltas_keep_their_logprobs(stub: Stub, openai_upstream: FakeOpenAI) -> None:
    burst = [f" t{index}" for index in range(2000)]
    openai_upstream.script = Script(chunks=burst)
    await load(stub, openai_upstream)
    frames = [frame async for frame in stub.Generate(prompt(max_tokens=len(burst), logprobs=True))]
    deltas = [frame.delta for frame in frames[:-1]]
    assert len(deltas) < len(burst)  # joined under backlog
    assert [token.bytes for delta in deltas for token in delta.logprobs] == [text.encode() for text in burst]
    for delta in deltas:
        assert b"".join(token.bytes for token in delta.logprobs) == delta.text.encode()


async def test_anthropic_refuses_logprobs(stub: Stub, anthropic_upstream: FakeAnthropic) -> None:
    await load(stub, anthropic_upstream)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await collect(stub.Generate(prompt(logprobs=True)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(raised.value)[1] == ["options.logprobs"]
    assert not any(request.path == "/v1/messages" for request in anthropic_upstream.requests)
