"""The warpcore command at its edges: text that is not UTF-8, stdin or stdout closed, a token gRPC cannot send, more
texts to embed than one call takes, a refused text named by its place, hosted models' unknown context size, and
tokens that are characters past ASCII."""

from __future__ import annotations

import asyncio
import json
import os
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.cli import ENV, WARPCORE, Run, closed_port_target, finish, start, usage_error, warpcore
from tests.conftest import serving
from tests.embeddings import load_tiny_embedder
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.hosted import load
from tests.tiny_model import write_tiny_model
from warpcore.server.core.embeddings import RESPONSE_FRAMING_BYTES, VALUE_BYTES, VECTOR_FRAMING_BYTES
from warpcore.server.rpc.server import ServingOptions, WarpcoreServer
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

pytestmark = pytest.mark.timeout(120)

LATIN_1 = os.fsdecode(b"caf\xe9")
"""An argument holding the byte 0xE9 (é in Latin-1), not UTF-8: as Python reads such an argv."""


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


async def fed(target: str, stdin: bytes, *args: str) -> Run:
    process = await start(target, *args)
    stdout, stderr = await finish(process, stdin)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


@pytest.mark.parametrize(
    "command", [["generate", "--model", "m"], ["tokens", "--model", "m"], ["embed", "--model", "m"]]
)
async def test_stdin_that_is_not_utf8_is_a_usage_error(command: list[str]) -> None:
    """It was a traceback (UnicodeEncodeError, from protobuf)."""
    # The closed port shows that nothing is sent: a call would fail with UNAVAILABLE (exit 1).
    run = await fed(closed_port_target(), b"caf\xe9\n", *command)
    assert usage_error(run) == f"warpcore {command[0]}: error: stdin is not UTF-8 text"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["generate", "--model", "m", LATIN_1], "warpcore generate: error: argument PROMPT"),
        (["generate", "--model", "m", "--system", LATIN_1, "hi"], "warpcore generate: error: argument --system"),
        (["tokens", "--model", "m", LATIN_1], "warpcore tokens: error: argument PROMPT"),
        (["embed", "--model", "m", "fine", LATIN_1], "warpcore embed: error: argument TEXT"),
        (["load", LATIN_1], "warpcore load: error: argument MODEL"),
        (["--token", LATIN_1, "models"], "warpcore: error: argument --token"),
    ],
)
async def test_an_argument_that_is_not_utf8_is_a_usage_error_naming_it(args: list[str], named: str) -> None:
    run = await warpcore(closed_port_target(), *args)
    assert usage_error(run) == f"{named}: not UTF-8 text"


async def test_a_token_grpc_cannot_send_is_a_usage_error() -> None:
    """It was taken, and the call failed with INTERNAL "Invalid metadata" after gRPC's own log lines."""
    run = await warpcore(closed_port_target(), "--token", "two\tparts", "models")
    assert usage_error(run) == "warpcore: error: argument --token: must be printable ASCII, as a gRPC header value is"


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("", "must not be empty: give host:port, such as 127.0.0.1:50051"),
        ("127.0.0.1:99999", "port 99999 is not one of 1 to 65535"),
        ("ipv4:127.0.0.1:50051,127.0.0.1:0", "port 0 is not one of 1 to 65535"),
    ],
)
async def test_a_target_grpc_would_dial_otherwise_than_written_is_a_usage_error(target: str, error: str) -> None:
    """A tester's finding: an empty one dialed the default, 127.0.0.1:50051, and port 99999 dialed 34463."""
    run = await warpcore(target, "health")
    assert usage_error(run) == f"warpcore: error: argument --target: {error}"


@pytest.mark.parametrize(
    ("closed", "prompt", "error"),
    [(">&-", ["hi"], "stdout is closed"), ("<&-", [], "stdin is closed: give the text as an argument")],
)
async def test_stdin_or_stdout_closed_is_one_line(
    target: str, tiny: str, closed: str, prompt: list[str], error: str
) -> None:
    """Each was a traceback (AttributeError: Python leaves sys.stdin or sys.stdout None)."""
    process = await asyncio.create_subprocess_exec(
        *("sh", "-c", f'exec "$@" {closed}', "sh", WARPCORE, "--target", target),
        *("generate", "--model", tiny, "--max-tokens", "2", *prompt),
        stdin=PIPE,
        stdout=PIPE,
        stderr=PIPE,
        env=ENV,
    )
    stdout, stderr = await finish(process)
    assert (process.returncode, stdout, stderr.decode()) == (1, b"", f"warpcore: {error}\n")


async def test_more_texts_than_one_embed_call_takes_go_in_several(
    stub: Stub, openai_upstream: FakeOpenAI, target: str
) -> None:
    """All of stdin went in one call, which the server refused ("give between 1 and 2048 inputs")."""
    openai_upstream.models.append("text-embedding-3-small")
    await load(stub, openai_upstream, model="text-embedding-3-small")
    lines = [f"text {number}" for number in range(2049)]
    run = await warpcore(target, "embed", "--model", "m", "--dimensions", "2", stdin="\n".join(lines) + "\n")
    assert run.code == 0, run.stderr
    assert [json.loads(line)["input"] for line in run.stdout.splitlines()] == lines
    sent = [request.body for request in openai_upstream.requests if request.path == "/v1/embeddings"]
    assert [len(body["input"]) for body in sent if body is not None] == [2048, 1]
    assert run.stderr == f"[{2 * len(lines)} tokens]\n"  # both calls' tokens: two words a text


async def test_texts_whose_vectors_one_response_cannot_carry_go_in_as_many_calls_as_it_takes(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: 1,700 lines for Gemma's 640-dimension vectors were refused whole (at most 1,633 fit in
    the server's 4 MiB), and nothing was printed."""
    limit, dimensions = 20_000, 64
    fitting = (limit - RESPONSE_FRAMING_BYTES) // (VALUE_BYTES * dimensions + VECTOR_FRAMING_BYTES)
    async with (
        serving(server_env, ServingOptions(max_message_bytes=limit)) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        openai_upstream.models.append("text-embedding-3-small")
        await load(inference_pb2_grpc.InferenceServiceStub(channel), openai_upstream, model="text-embedding-3-small")
        lines = [f"text {number}" for number in range(2 * fitting + 3)]
        stdin = "\n".join(lines) + "\n"
        run = await warpcore(f"127.0.0.1:{server.port}", "embed", "--dimensions", str(dimensions), stdin=stdin)
    assert run.code == 0, run.stderr
    assert [json.loads(line)["input"] for line in run.stdout.splitlines()] == lines
    sent = [request.body for request in openai_upstream.requests if request.path == "/v1/embeddings"]
    assert [len(body["input"]) for body in sent if body is not None] == [fitting, fitting, 3]


async def test_a_hosted_models_unknown_context_size_is_a_dash(
    stub: Stub, openai_upstream: FakeOpenAI, target: str
) -> None:
    await load(stub, openai_upstream)
    listed = await warpcore(target, "models")
    assert listed.code == 0
    _, row = listed.stdout.splitlines()
    assert row.split()[:4] == ["m", "openai", "ready", "-"]


@pytest.mark.parametrize(
    ("given", "place"),
    [
        ({"stdin": "a\n\nthe world\n" + "the world " * 40 + "\nb\n"}, "stdin line 4"),
        ({"args": ["a", "the world " * 40]}, "argument 2"),
    ],
    ids=["stdin, a blank line skipped", "arguments"],
)
async def test_a_refused_text_is_named_by_its_place_in_the_commands_input(
    stub: Stub, target: str, given: dict[str, Any], place: str
) -> None:
    """The refusal named the text's place in its call (`inputs[2]`) and the API's field (`options.truncate`)."""
    await load_tiny_embedder(stub, "embedder", context_size=64)
    run = await warpcore(target, "embed", "--model", "embedder", *given.get("args", ()), stdin=given.get("stdin", ""))
    assert run.code == 1
    assert run.stdout == ""
    assert run.stderr.startswith(f"warpcore: INVALID_ARGUMENT: {place}: it is ")
    assert "maximum context length is 64 tokens; shorten it, set --truncate, or load" in run.stderr
    assert "inputs[" not in run.stderr


async def test_a_generation_the_server_stops_at_its_shutdown_is_status_1(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: the command ended 0, with the text cut short on stdout, as if it were the answer."""
    openai_upstream.script = Script(chunks=["tick"] * 1000, delay=0.01)  # far longer than the grace
    async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await load(inference_pb2_grpc.InferenceServiceStub(channel), openai_upstream)
        process = await start(f"127.0.0.1:{server.port}", "generate", "--max-tokens", "2000", "hi")
        assert process.stdout is not None
        first = await process.stdout.read(4)  # the stream runs
        await server.stop(0.1)
        stdout, stderr = await finish(process)
    text = (first + stdout).decode()
    assert text.startswith("tick")
    assert text.rstrip("\n").replace("tick", "") == ""  # the text it gave, then its line ended
    assert process.returncode == 1
    assert "finish: cancelled" in stderr.decode()
    said = "warpcore: UNAVAILABLE: the server stopped the generation before its end (it is shutting down); retry\n"
    assert stderr.decode().endswith(said)


async def test_a_server_gone_mid_generation_is_not_said_to_have_never_answered(
    server_env: dict[str, str], openai_upstream: FakeOpenAI
) -> None:
    """A tester's finding: a server that died mid-stream was told as one that never answered, with the hint to
    start it or check --target."""
    openai_upstream.script = Script(chunks=["tick"] * 1000, delay=0.01)
    async with serving(server_env) as server, grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await load(inference_pb2_grpc.InferenceServiceStub(channel), openai_upstream)
        process = await start(f"127.0.0.1:{server.port}", "generate", "--max-tokens", "2000", "hi")
        assert process.stdout is not None
        await process.stdout.read(4)  # the stream runs
        await server.stop(None)  # no grace: the call is cut, without a last frame
        _, stderr = await finish(process)
    assert process.returncode == 1
    assert stderr.decode().startswith("warpcore: UNAVAILABLE: ")  # gRPC's words, with no hint that misleads
    assert "no warpcore server answered" not in stderr.decode()


async def test_tokens_list_shows_whole_characters_as_themselves(tmp_path: Path) -> None:
    """A tester's finding: every character past ASCII showed as its JSON escape, an emoji as two UTF-16 halves
    ("\\ud83d\\udc4b")."""
    write_tiny_model(tmp_path / "words.gguf", extra_words=("👋", "é", "\u200d"))
    async with serving({"MODELS_PATH": str(tmp_path)}) as server:
        target = f"127.0.0.1:{server.port}"
        assert (await warpcore(target, "load", "words.gguf")).code == 0
        run = await warpcore(target, "tokens", "--list", "👋 é \u200d")
    assert run.code == 0, run.stderr
    shown = [line.split("\t")[1] for line in run.stdout.splitlines()[:-1]]
    # A zero-width joiner, which does not print, stays escaped.
    assert shown[-3:] == ['" 👋"', '" é"', '" \\u200d"']
