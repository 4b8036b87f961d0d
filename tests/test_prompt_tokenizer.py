"""Long prompts are tokenized in pieces: the same tokens as in one call, without the quadratic cost; where a
vocabulary's safe cuts are known, a conversation's next turn tokenizes only what it adds."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from llama_cpp import Llama

from tests.conftest import collect, failed_stream, greedy, load_tiny, rich_details
from warpcore.server.adapters.llama.cuts import SafeCuts
from warpcore.server.adapters.llama.prompt import MAX_BYTES_PER_TOKEN
from warpcore.server.adapters.llama.tokenizer import PIECE_BYTES, REMEMBERED_PIECE_BYTES, PromptTokenizer

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

README = Path(__file__).parent.parent / "README.md"


def sample_texts() -> Iterator[bytes]:
    words = README.read_text().split()
    rng = random.Random(7)
    for length in (500, 3000, 9000):
        text = " ".join(rng.choice(words) for _ in range(length))
        yield text.encode()
        yield f"<start_of_turn>user\n{text}\n\ncafé  naïve\t{text}<end_of_turn>\n<start_of_turn>model\n".encode()
    # No space for several pieces: cut between characters.
    for run in ("é" * 3 * PIECE_BYTES, "x" * 3 * PIECE_BYTES, "日本語の文章です。" * 1000):
        yield (run + " tail").encode()


def test_pieces_give_the_tokens_of_the_whole_text(vocabulary: Llama) -> None:
    tokenizer = PromptTokenizer(vocabulary)
    for text in sample_texts():
        whole = vocabulary.tokenize(text, add_bos=True, special=True)
        pieces = tokenizer.tokenize(text, add_bos=True, limit=10**9, stop=threading.Event())
        if b" " not in text[: PIECE_BYTES + 1]:  # a cut inside a word may tokenize differently, the text the same
            assert vocabulary.detokenize(pieces, special=True) == vocabulary.detokenize(whole, special=True)
            assert len(pieces) == pytest.approx(len(whole), rel=0.01)
        else:
            assert pieces == whole, f"{len(text)} bytes"


def test_safe_cuts_are_known_for_gemma_and_not_for_a_vocabulary_that_adds_a_space(vocabulary: Llama) -> None:
    # The tiny model's SentencePiece vocabulary adds a space before every text (llama.cpp's default).
    assert (SafeCuts.of(vocabulary) is None) == (vocabulary.metadata["general.name"] == "warpcore-tiny-test")


def random_texts(count: int) -> Iterator[bytes]:
    """Texts made of what prompts hold: words, runs of spaces and newlines, punctuation, tabs, accents, digits,
    markup and a chat template's special tokens, glued in any order."""
    parts = [
        "the",
        " the",
        "  ",
        " ",
        "\n",
        "\n\n",
        ".",
        ",",
        ":",
        "?",
        "\t",
        "é",
        "naïve",
        "东京",
        "42",
        "2026",
        "<start_of_turn>",
        "<end_of_turn>",
        "user",
        "model",
        "<b>",
        "**",
        "- ",
        "'s",
        "(",
        ")",
        "\u2581",
        "Rule",
    ]
    rng = random.Random(11)
    for _ in range(count):
        yield "".join(rng.choice(parts) for _ in range(rng.randint(1, 200))).encode()


def test_text_cut_at_every_safe_cut_gives_the_tokens_of_the_whole(vocabulary: Llama) -> None:
    cuts = SafeCuts.of(vocabulary)
    if cuts is None:
        pytest.skip("no safe cuts for this vocabulary")
    pieces_seen = 0
    for text in random_texts(300):
        edges = [0]
        while edges[-1] < len(text):
            edges.append(cuts.cut(text, edges[-1], 4, 10**9))  # tiny pieces: as many cuts as the text has
        pieces_seen += len(edges) - 1
        tokens = [token for a, b in itertools.pairwise(edges) for token in vocabulary.tokenize(text[a:b], False, True)]
        assert tokens == vocabulary.tokenize(text, add_bos=False, special=True), text
    assert pieces_seen > 3000  # the texts were cut, often


def test_a_conversation_tokenizes_only_what_each_turn_adds(vocabulary: Llama, monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = PromptTokenizer(vocabulary)
    if SafeCuts.of(vocabulary) is None:
        pytest.skip("no safe cuts for this vocabulary")
    tokenized: list[int] = []
    whole_text = vocabulary.tokenize

    def counted(text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        tokenized.append(len(text))
        return whole_text(text, add_bos, special)

    monkeypatch.setattr(vocabulary, "tokenize", counted)
    words = README.read_text().split()
    rng = random.Random(3)
    text = b"<start_of_turn>user\n" + " ".join(rng.choice(words) for _ in range(2000)).encode()
    for turn in range(4):
        added = f"<end_of_turn>\n<start_of_turn>model\nTurn {turn}: " + " ".join(rng.choice(words) for _ in range(60))
        text += added.encode()
        runs, counts = [], []
        for remember in (False, True, True):
            tokenized.clear()
            runs.append(tokenizer.tokenize(text, add_bos=True, limit=10**9, stop=threading.Event(), remember=remember))
            counts.append(sum(tokenized))
        (private, first, again), (private_bytes, first_bytes, again_bytes) = runs, counts
        assert private == first == again == whole_text(text, True, True)
        assert private_bytes == len(text)  # a private prompt is tokenized whole every time...
        if turn == 0:
            assert first_bytes == len(text)  # ...and nothing of it was kept
        else:  # the turn before is remembered but for its last piece
            assert 0 < first_bytes <= 2 * REMEMBERED_PIECE_BYTES + len(added)
        assert again_bytes == 0


def test_tokenizing_stops_past_the_limit_or_when_asked(vocabulary: Llama) -> None:
    tokenizer = PromptTokenizer(vocabulary)
    text = ("\x0f" * 300_000).encode()  # byte fallback: one call on this takes seconds
    cut_short = tokenizer.tokenize(text, add_bos=True, limit=4096, stop=threading.Event())
    assert 4096 < len(cut_short) <= 4096 + PIECE_BYTES + 2  # BOS and a space prefix
    stopped = threading.Event()
    stopped.set()
    assert len(tokenizer.tokenize(text, add_bos=True, limit=10**9, stop=stopped)) <= PIECE_BYTES + 2


async def test_a_prompt_just_under_the_byte_cap_is_refused_quickly(stub: Stub) -> None:
    model = await load_tiny(stub, context_size=4096)
    hostile = "\x0f" * (4096 * MAX_BYTES_PER_TOKEN - 1)  # byte fallback: one tokenizer call takes seconds here
    started = time.monotonic()
    frames, error = await failed_stream(stub.Generate(greedy(hostile, 4, model.id), timeout=5))
    refused_in = time.monotonic() - started
    assert frames == []
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_details(error)[0].reason == "CONTEXT_LENGTH_EXCEEDED"
    assert refused_in < 1.5  # tokenizing the whole of it would take seconds
    # The model's worker is free again: a short generation runs (its deadline catches a worker still busy).
    _, result = await collect(stub.Generate(greedy("the world", 4, model.id), timeout=5))
    assert result.usage.completion_tokens == 4


@pytest.mark.parametrize("unit", ["<", "<x>", "[a]<b"])
def test_text_dense_with_brackets_costs_about_what_plain_text_does_and_reads_the_same(
    vocabulary: Llama, unit: str
) -> None:
    """llama.cpp looks for every control token's text in a text tokenized with special tokens on: on Gemma's 6,250,
    100 kB of '<' took seconds. A piece that spells none is tokenized with them off, to the same tokens."""
    tokenizer = PromptTokenizer(vocabulary)

    def seconds(text: bytes) -> float:
        started = time.perf_counter()
        tokenizer.tokenize(text, add_bos=True, limit=len(text) + 1, stop=threading.Event())
        return time.perf_counter() - started

    dense = (unit * (100_000 // len(unit))).encode()
    assert seconds(dense) < 10 * seconds(b"a b " * 25_000) + 0.5
    sample = f"<start_of_turn>user\n{unit * 2000}<end_of_turn>\n</s>".encode()
    whole = vocabulary.tokenize(sample, add_bos=True, special=True)
    assert tokenizer.tokenize(sample, add_bos=True, limit=len(sample) + 1, stop=threading.Event()) == whole
