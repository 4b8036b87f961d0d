"""The SDK's embed, count_tokens, logprob options and events, image parts and capabilities, and the CLI's embed and
tokens commands, against the real server with the tiny model (and the OpenAI fake for images)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.cli import warpcore
from tests.conftest import collect, greedy, load_tiny, serving
from tests.embeddings import load_tiny_embedder
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from tests.sdk_support import blocking
from warpcore.client import (
    ApiConfig,
    AsyncClient,
    Capabilities,
    Client,
    FailedPreconditionError,
    Image,
    InvalidArgumentError,
    LocalConfig,
    Message,
    TextDelta,
)
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


async def test_embed_and_count_tokens_with_both_clients(target: str) -> None:
    async with AsyncClient(target) as client:
        embedder = await client.load_model("hf:warpcore/tiny:tiny.gguf", model_id="e", embedding=True, pooling="last")
        assert embedder.capabilities == Capabilities(
            generate=False, embed=True, count_tokens=False, images=False, logprobs=False, tools=False
        )
        await client.load_model("hf:warpcore/tiny:tiny.gguf", model_id="g", config=LocalConfig(parallel=2))
        one = await client.embed("e", "the world")
        many = await client.embed("e", ["the world", "people"])
        assert len(one.embeddings) == 1
        assert len(many.embeddings) == 2
        assert len(one.embeddings[0]) == 64
        assert math.isclose(math.fsum(x * x for x in many.embeddings[0]), 1.0, rel_tol=1e-5)
        raw = await client.embed("e", ["the world"], normalize=False)
        assert not math.isclose(math.fsum(x * x for x in raw.embeddings[0]), 1.0, rel_tol=1e-3)
        with pytest.raises(FailedPreconditionError):
            await client.embed("g", ["the world"])

        counted = await client.count_tokens("g", messages=[("user", "the world")], include_tokens=True, system="Hi.")
        response = await client.generate("g", messages=[("user", "the world")], system="Hi.", max_tokens=2)
        assert response.usage is not None
        assert counted.prompt_tokens == response.usage.prompt_tokens == len(counted.tokens)
        assert b"the world" in b"".join(token.piece for token in counted.tokens)

    with Client(target) as sync:
        vectors = await blocking(sync.embed)("e", ["people", "the world"])
        assert vectors.embeddings[1] == pytest.approx(many.embeddings[0], abs=1e-4)
        plain = await blocking(sync.count_tokens)("g", prompt="the world")
        assert plain.prompt_tokens > 1
        assert plain.tokens == []


async def test_logprobs_in_events_and_in_the_final_response(stub: Stub, target: str) -> None:
    await load_tiny(stub)
    async with AsyncClient(target) as client:
        stream = await client.generate(
            "tiny", prompt="the world", stream=True, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2
        )
        deltas = [event async for event in stream if isinstance(event, TextDelta)]
        response = await stream.get_final_response()
    assert all(b"".join(token.bytes for token in delta.logprobs) == delta.text.encode() for delta in deltas)
    assert len(response.logprobs) == 6
    assert all(len(token.top_logprobs) == 2 and token.logprob <= 0 for token in response.logprobs)
    assert "".join(token.token for token in response.logprobs) == response.text


async def test_image_parts_from_bytes_a_path_and_a_url(
    target: str, openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n fake")  # a PNG's signature: the server checks it
    # A tester's finding: a PNG whose name says no image type was refused; its bytes say it, as the server reads them.
    unnamed = tmp_path / "x.bin"
    unnamed.write_bytes(b"\x89PNG\r\n\x1a\n fake")
    notes = tmp_path / "notes.txt"
    notes.write_text("no picture")
    async with AsyncClient(target) as client:
        await client.load_model(
            "gpt-4o-mini", backend="openai", model_id="m", api_key=OPENAI_KEY, base_url=openai_upstream.base_url
        )
        message = Message(
            "user",
            "Compare:",
            parts=(
                Image(b"GIF89a", "image/gif"),
                Image.from_path(picture),
                Image.from_path(unnamed),
                Image.from_path(notes, media_type="image/webp"),  # told: the server then refuses it
                Image.from_url("https://x.example/a.webp"),
                "ok?",
            ),
        )
        with pytest.raises(InvalidArgumentError, match=re.escape("messages[0].parts[3]: the data is no image/webp")):
            await client.generate("m", messages=[message])
        await client.generate("m", messages=[replace(message, parts=message.parts[:3] + message.parts[4:])])
    body = openai_upstream.requests[-1].body
    assert body is not None
    assert [part.get("image_url", {}).get("url") or part.get("text") for part in body["messages"][0]["content"]] == [
        "Compare:",
        "data:image/gif;base64,R0lGODlh",
        "data:image/png;base64,iVBORw0KGgogZmFrZQ==",
        "data:image/png;base64,iVBORw0KGgogZmFrZQ==",
        "https://x.example/a.webp",
        "ok?",
    ]
    with pytest.raises(ValueError, match=re.escape("cannot tell the image type of")):
        Image.from_path(notes)


async def test_cli_embed_prints_json_lines_and_tokens_prints_the_count(stub: Stub, target: str) -> None:
    await load_tiny(stub)
    await load_tiny_embedder(stub)
    run = await warpcore(target, "embed", "the world", "people")
    assert run.code == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["input"] for line in lines] == ["the world", "people"]
    assert all(len(line["embedding"]) == 64 for line in lines)
    piped = await warpcore(target, "embed", "--no-normalize", stdin="the world\n\npeople\n")
    assert [json.loads(line)["input"] for line in piped.stdout.splitlines()] == ["the world", "people"]

    counted = await warpcore(target, "tokens", "the world")  # the only model that counts: "tiny"
    assert counted.code == 0, counted.stderr
    _, result = await collect_usage(stub, "the world")
    assert int(counted.stdout.strip()) == result
    listed = await warpcore(target, "tokens", "--list", "--chat", "--system", "Hi.", "the world")
    *token_lines, total = listed.stdout.splitlines()
    assert len(token_lines) == int(total)
    assert all(line.split("\t")[0].isdigit() for line in token_lines)
    # A character cut into byte tokens: each piece shown as its bytes, where each read "\ufffd".
    pieces = await warpcore(target, "tokens", "--list", "\U00013000")
    shown = [json.loads(line.split("\t")[1]) for line in pieces.stdout.splitlines()[:-1]]
    assert "\ufffd" not in "".join(shown)
    assert "\\xf0\\x93\\x80\\x80" in "".join(shown)  # U+13000's UTF-8, whatever tokens cut it

    generated = await warpcore(target, "generate", "--max-tokens", "2", "the world")  # not the embedding model
    assert generated.code == 0, generated.stderr


async def collect_usage(stub: Stub, prompt: str) -> tuple[str, int]:
    text, result = await collect(stub.Generate(greedy(prompt, 2)))
    return text, result.usage.prompt_tokens


async def test_messages_as_vendor_style_mappings_give_the_same_answer(stub: Stub, target: str) -> None:
    await load_tiny(stub)
    async with AsyncClient(target) as client:
        pairs = await client.generate("tiny", messages=[("user", "the world")], max_tokens=6, temperature=0)
        mappings = await client.generate(
            "tiny", messages=[{"role": "user", "content": "the world"}], max_tokens=6, temperature=0
        )
        assert mappings.text == pairs.text
        assert mappings.usage is not None
        assert pairs.usage is not None
        assert mappings.usage.prompt_tokens == pairs.usage.prompt_tokens
        # Refused before anything is sent, with what to write instead.
        with pytest.raises(ValueError, match="unknown role 'wizard'; expected one of system, user, assistant, tool"):
            await client.generate("tiny", messages=[{"role": "wizard", "content": "hi"}])
        with pytest.raises(TypeError, match=r"use warpcore\.client\.Message for tool calls"):
            await client.generate("tiny", messages=[{"role": "tool", "content": "{}", "tool_call_id": "c1"}])
        with pytest.raises(TypeError, match="not str"):
            await client.generate("tiny", messages=["hello"])  # type: ignore[list-item]


async def test_an_answer_over_grpcs_default_4_mib_reaches_both_clients_when_the_server_sends_it(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: with --max-message-bytes 16 MiB, the server embedded 2,000 texts for 96 s, and the SDK
    then dropped the answer (RESOURCE_EXHAUSTED: Received message larger than max, 5132003 vs. 4194304)."""
    openai_upstream.models.append("text-embedding-3-small")
    async with serving(server_env, ServingOptions(max_message_bytes=16 << 20)) as server:
        target = f"127.0.0.1:{server.port}"
        async with AsyncClient(target) as client:
            config = ApiConfig(api_key=OPENAI_KEY, base_url=openai_upstream.base_url)
            await client.load_model("text-embedding-3-small", backend="openai", model_id="m", config=config)
            texts = ["x"] * 600  # 600 vectors of 2,048 values: about 4.9 MB
            vectors = await client.embed("m", texts, dimensions=2048)
            assert len(vectors.embeddings) == len(texts)
        with Client(target) as sync:
            assert len((await blocking(sync.embed)("m", texts, dimensions=2048)).embeddings) == len(texts)
