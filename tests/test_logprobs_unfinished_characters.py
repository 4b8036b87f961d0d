"""Logprobs of a llama.cpp answer whose stop sequence follows bytes that never make a character (an outside tester's
finding: the stop sequence's own tokens came with them): the tokens sent are exactly those whose bytes begin before
the stop sequence's first byte, through gRPC (streamed, and whole and streamed through the SDK) and the HTTP door
(Chat Completions' `logprobs`, Completions' `text_offset`, which lie within the text). The tiny model samples byte
tokens only here (a +100 logit bias on each), so a character may come unfinished, and the stop sequence begins at a
token's first byte."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from tests.conftest import TINY_MODEL
from tests.http_door import async_openai_client
from tests.tiny_model import vocabulary
from warpcore.client import AsyncClient, TextDelta
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

PROMPT = "x"
TOKEN_IDS = {token: index for index, token in enumerate(vocabulary()[0])}


@dataclass(frozen=True)
class Case:
    stop: str
    seed: int
    letters: str = ""
    """Letters the model may write besides the stop sequence's bytes."""

    def options(self, max_tokens: int = 1000) -> dict[str, Any]:
        """Sampling that writes those bytes only, in the seed's random order (a four-byte stop sequence may take a few
        hundred tokens to come)."""
        written = (self.stop + self.letters).encode()
        bias = {TOKEN_IDS[f"<0x{byte:02X}>"]: 100.0 for byte in written}
        return {"max_tokens": max_tokens, "temperature": 1.0, "seed": self.seed, "logit_bias": bias}


CASES = [
    pytest.param(Case("é", 3), id="é after unfinished bytes"),  # the finding's: a9 c3 c3, then c3 a9
    *(pytest.param(Case("😀", seed), id=f"😀 seed {seed}") for seed in (1, 3, 5)),
    pytest.param(Case("é", 2, "ab"), id="é after whole characters"),  # "bbbbb"
    pytest.param(Case("é", 8, "ab"), id="é after whole and unfinished ones"),  # "ba\ufffda"
]


def before_the_stop(answer: bytes, text: str, stop: str) -> bytes:
    """The bytes of `answer` (one generation's, without a stop sequence) before the first place where the text so far
    is `text` and the stop sequence comes next: what the logprob tokens must spell with that stop sequence."""
    for end in range(len(answer) + 1):
        if answer[:end].decode(errors="replace") == text and answer[end:].decode(errors="replace").startswith(stop):
            return answer[:end]
    raise AssertionError(f"{stop!r} does not follow {text!r} in {answer!r}")


def character_starts(tokens: list[bytes]) -> list[int]:
    """In which character of the text each token's first byte lies (the text through that byte, decoded, ends with
    that character, finished or not)."""
    starts, answer = [], b""
    for token in tokens:
        starts.append(len((answer + token[:1]).decode(errors="replace")) - 1)
        answer += token
    return starts


@pytest.fixture
async def tiny_door(doors: Doors) -> Doors:
    await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    return doors


async def grpc_frames(doors: Doors, case: Case, unstopped: int = 0) -> list[pb.GenerateResponse]:
    """The generation's frames, stopped by the case's stop sequence, or when `unstopped`, that many tokens without
    it."""
    options = case.options(unstopped) if unstopped else {**case.options(), "stop_sequences": [case.stop]}
    generation = pb.GenerationOptions(**options, logprobs=True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        call = stub.Generate(pb.GenerateRequest(model_id="tiny", prompt=PROMPT, options=generation))
        return [frame async for frame in call]


def tokens_of(frames: list[pb.GenerateResponse]) -> list[bytes]:
    return [token.bytes for frame in frames[:-1] for token in frame.delta.logprobs]


async def test_the_findings_answer_leaves_the_stop_sequences_tokens_out(tiny_door: Doors) -> None:
    """The tester's repro: the answer's bytes a9 c3 c3 c3 a9, with stop "é", are three U+FFFD and the stop."""
    frames = await grpc_frames(tiny_door, Case("é", 3))
    assert "".join(frame.delta.text for frame in frames[:-1]) == "\ufffd" * 3
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_STOP_SEQUENCE
    assert tokens_of(frames) == [b"\xa9", b"\xc3", b"\xc3"]


@pytest.mark.parametrize("case", CASES)
async def test_grpc_and_the_sdk_send_the_tokens_before_the_stop_sequence(tiny_door: Doors, case: Case) -> None:
    frames = await grpc_frames(tiny_door, case)
    assert frames[-1].result.finish_reason == pb.FINISH_REASON_STOP_SEQUENCE
    answer = b"".join(tokens_of(await grpc_frames(tiny_door, case, frames[-1].result.usage.completion_tokens)))
    text = "".join(frame.delta.text for frame in frames[:-1])
    expected = before_the_stop(answer, text, case.stop)
    for frame in frames[:-1]:  # each delta's tokens spell its text
        assert b"".join(token.bytes for token in frame.delta.logprobs).decode(errors="replace") == frame.delta.text
    assert b"".join(tokens_of(frames)) == expected
    if "\ufffd" not in text:  # only whole characters: the tokens are the text's bytes
        assert expected == text.encode()
    async with AsyncClient(f"127.0.0.1:{tiny_door.grpc.port}") as client:
        asked = {"prompt": PROMPT, "stop": [case.stop], "logprobs": True, **case.options()}
        whole = await client.generate("tiny", **asked)
        stream = await client.generate("tiny", **asked, stream=True)
        deltas = [event async for event in stream if isinstance(event, TextDelta)]
        streamed = await stream.get_final_response()
    for response in (whole, streamed):
        assert response.text == text
        assert b"".join(token.bytes for token in response.logprobs) == expected
    assert b"".join(token.bytes for delta in deltas for token in delta.logprobs) == expected


@pytest.mark.parametrize("case", CASES)
async def test_completions_tokens_are_grpcs_at_offsets_within_the_text(tiny_door: Doors, case: Case) -> None:
    """Each token's offset is the character its first byte lies in."""
    frames = await grpc_frames(tiny_door, case)
    tokens = tokens_of(frames)
    text = "".join(frame.delta.text for frame in frames[:-1])
    asked = {"model": "tiny", "prompt": PROMPT, "logprobs": 0, "stop": [case.stop], "extra_body": case.options()}
    async with async_openai_client(tiny_door) as client:
        whole = await client.completions.create(**asked)  # type: ignore[call-overload]
        chunks = [chunk async for chunk in await client.completions.create(**asked, stream=True)]  # type: ignore[call-overload]
    assert (whole.choices[0].text, whole.choices[0].finish_reason) == (text, "stop")
    logprobs = whole.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == [token.decode(errors="replace") for token in tokens]
    assert logprobs.text_offset == character_starts(tokens)
    assert all(0 <= offset < len(text) for offset in logprobs.text_offset)
    streamed: dict[str, list[Any]] = {"tokens": [], "text_offset": []}
    for chunk in chunks:
        if chunk.choices[0].logprobs is not None:
            for name, values in streamed.items():
                values += getattr(chunk.choices[0].logprobs, name)
    assert "".join(chunk.choices[0].text for chunk in chunks) == text
    assert streamed == {"tokens": logprobs.tokens, "text_offset": logprobs.text_offset}


@pytest.mark.parametrize("case", CASES)
async def test_chat_logprobs_are_the_tokens_before_the_stop_sequence(tiny_door: Doors, case: Case) -> None:
    asked = {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "logprobs": True}
    async with async_openai_client(tiny_door) as client:
        whole = await client.chat.completions.create(**asked, stop=[case.stop], extra_body=case.options())  # type: ignore[call-overload]
        chunks = await client.chat.completions.create(**asked, stop=[case.stop], extra_body=case.options(), stream=True)  # type: ignore[call-overload]
        pieces = [chunk.choices[0] async for chunk in chunks if chunk.choices]
        assert whole.usage is not None
        unstopped = await client.chat.completions.create(
            **asked, extra_body=case.options(whole.usage.completion_tokens)
        )  # type: ignore[call-overload]
    answer = b"".join(bytes(token.bytes or ()) for token in unstopped.choices[0].logprobs.content)
    expected = before_the_stop(answer, whole.choices[0].message.content or "", case.stop)
    assert whole.choices[0].finish_reason == "stop"
    assert b"".join(bytes(token.bytes or ()) for token in whole.choices[0].logprobs.content) == expected
    streamed = [token for piece in pieces if piece.logprobs for token in piece.logprobs.content or ()]
    assert b"".join(bytes(token.bytes or ()) for token in streamed) == expected
