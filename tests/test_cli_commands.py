"""The warpcore command end to end: the real executable against the in-process server: load and models, generate, chat,
unload and health, a call's error in one line, a closed pipe and an interrupt."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from asyncio.subprocess import DEVNULL
from typing import TYPE_CHECKING

import pytest

from tests.cli import Run, closed_port_target, finish, start, usage_error, warpcore
from tests.conftest import TINY_MODEL, collect, greedy, load_tiny
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


pytestmark = pytest.mark.timeout(120)
USAGE = re.compile(
    r"\[(\d+) prompt \+ (\d+) completion tokens, [\d.]+ tokens/s, first token [\d.]+ s, finish: (\w+)\]\n"
)


@pytest.fixture
def target(server: WarpcoreServer) -> str:
    return f"127.0.0.1:{server.port}"


async def test_load_then_models_as_a_table_and_as_json(target: str) -> None:
    assert await warpcore(target, "load", TINY_MODEL, "--id", "tiny") == Run(0, "tiny\n", "")

    listed = await warpcore(target, "models")
    assert listed.code == 0
    header, row = listed.stdout.splitlines()
    assert header.split() == ["ID", "BACKEND", "STATE", "CONTEXT", "NAME"]
    assert row.split() == ["tiny", "llama_cpp", "ready", "2048", TINY_MODEL]
    assert [header.index(column) for column in ("STATE", "NAME")] == [row.index("ready"), row.index(TINY_MODEL)]

    as_json = await warpcore(target, "models", "--json")
    capabilities = {
        "generate": True,
        "embed": False,
        "count_tokens": True,
        "images": False,
        "logprobs": True,
        "tools": True,
        "documents": False,
    }
    assert json.loads(as_json.stdout) == [
        {
            "id": "tiny",
            "backend": "llama_cpp",
            "state": "ready",
            "context_size": 2048,
            "name": TINY_MODEL,
            "loads_on_demand": False,
            "capabilities": capabilities,
        }
    ]
    offered = json.loads((await warpcore(target, "models", "--backend", "llama_cpp", "--json")).stdout)
    assert [(model["id"], model["state"]) for model in offered] == [("tiny", "ready"), (TINY_MODEL, "available")]


async def test_generate_prints_the_greedy_text_and_a_usage_line(stub: Stub, tiny: str, target: str) -> None:
    expected, result = await collect(stub.Generate(greedy("the world", 16)))
    run = await warpcore(target, "generate", "--max-tokens", "16", "--temperature", "0", "the world")
    assert (run.code, run.stdout) == (0, expected + "\n")
    usage = USAGE.fullmatch(run.stderr)
    assert usage is not None, run.stderr
    assert usage.groups() == (str(result.usage.prompt_tokens), "16", "length")


async def test_generate_reads_the_prompt_from_stdin(stub: Stub, tiny: str, target: str) -> None:
    expected, _ = await collect(stub.Generate(greedy("people work", 8)))
    run = await warpcore(target, "generate", "--max-tokens", "8", "--temperature", "0", stdin="people work\n")
    assert (run.code, run.stdout) == (0, expected + "\n")
    dash = await warpcore(target, "generate", "--max-tokens", "8", "--temperature", "0", "-", stdin="people work\n")
    assert (dash.code, dash.stdout) == (0, expected + "\n")  # "-" was taken as the prompt itself
    counted = await warpcore(target, "tokens", "people work")
    assert await warpcore(target, "tokens", "-", stdin="people work\n") == counted


async def test_generate_passes_stop_and_system(stub: Stub, tiny: str, target: str) -> None:
    reference, _ = await collect(stub.Generate(greedy("the state", 24)))
    stop = " " + reference.split(" ")[4]
    args = ["generate", "--max-tokens", "24", "--temperature", "0", "--stop", stop, "--stop", "never", "the state"]
    run = await warpcore(target, *args)
    assert run.stdout == reference[: reference.index(stop)] + "\n"
    assert run.stderr.endswith("finish: stop_sequence]\n")

    with_system, _ = await collect(stub.Generate(greedy("the state", 8, system="be brief")))
    run = await warpcore(
        target, "generate", "--system", "be brief", "--max-tokens", "8", "--temperature", "0", "the state"
    )
    assert run.stdout == with_system + "\n"


async def test_generate_passes_the_penalties(stub: Stub, tiny: str, target: str) -> None:
    expected, _ = await collect(stub.Generate(greedy("the world", 16, presence_penalty=1.5, frequency_penalty=-0.5)))
    plain, _ = await collect(stub.Generate(greedy("the world", 16)))
    assert expected != plain
    args = ["generate", "--max-tokens", "16", "--temperature", "0", "the world"]
    run = await warpcore(target, *args, "--presence-penalty", "1.5", "--frequency-penalty", "-0.5")
    assert run.stdout == expected + "\n"
    refused = await warpcore(target, *args, "--presence-penalty", "3")
    assert usage_error(refused).endswith("argument --presence-penalty: must be a number from -2 to 2, not 3")


async def test_generate_with_a_backend_loads_the_model_first(stub: Stub, target: str) -> None:
    args = ["generate", "--backend", "llama_cpp", "--model", TINY_MODEL, "--max-tokens", "8", "--temperature", "0"]
    first = await warpcore(target, *args, "people")
    assert first.code == 0, first.stderr
    listed = (await stub.ListModels(pb.ListModelsRequest())).models
    assert [(model.id, model.name) for model in listed] == [(TINY_MODEL, TINY_MODEL)]
    expected, _ = await collect(stub.Generate(greedy("people", 8, model_id=TINY_MODEL)))
    assert first.stdout == expected + "\n"
    again = await warpcore(target, *args, "people")  # already loaded: generates without loading again
    assert (again.code, again.stdout) == (0, first.stdout)


async def test_generate_without_model_uses_the_only_loaded_one(stub: Stub, target: str) -> None:
    none = await warpcore(target, "generate", "hi")
    assert none.code == 1
    assert none.stderr == "warpcore: no model is loaded; load one with `warpcore load`, or give --model and --backend\n"
    for command in (["chat"], ["embed", "hi"], ["tokens", "hi"]):  # no --backend to give: a tester's finding
        without = await warpcore(target, *command, stdin="hi\n")
        assert without.stderr == "warpcore: no model is loaded; load one with `warpcore load`\n", command

    await load_tiny(stub, model_id="tiny")
    assert (await warpcore(target, "generate", "--max-tokens", "2", "hi")).code == 0
    unable = await warpcore(target, "embed", "hi")  # a generative model gives no embeddings
    assert (unable.code, unable.stderr) == (
        1,
        "warpcore: none of the loaded models (tiny) can embed; load one that can, or give --model\n",
    )

    await load_tiny(stub, model_id="other")
    several = await warpcore(target, "generate", "hi")
    assert several.code == 1
    assert "(tiny, other)" in several.stderr or "(other, tiny)" in several.stderr


async def test_a_model_not_loaded_is_no_default_beside_one_that_is(
    server: WarpcoreServer, stub: Stub, target: str
) -> None:
    """A tester's finding: a model known but not loaded (declared lazy, or unloaded by its keep_alive) counted as a
    loaded one able to do anything, so that a command without --model found several beside the only one loaded."""
    await load_tiny(stub, model_id="tiny")
    server.engine.declare(LoadSpec("lazy", BackendKind.LLAMA_CPP, TINY_MODEL, None, None, lazy=True))
    picked = await warpcore(target, "generate", "--max-tokens", "2", "hi")
    assert (picked.code, picked.stderr.count("several")) == (0, 0)
    states = {model.id: model.state for model in (await stub.ListModels(pb.ListModelsRequest())).models}
    assert states == {"tiny": pb.MODEL_STATE_READY, "lazy": pb.MODEL_STATE_AVAILABLE}  # the loaded one answered
    # A tester's finding: the file the backend offers was "available" too, yet a generate naming it is NOT_FOUND.
    listed = await warpcore(target, "models", "--backend", "llama_cpp")
    rows = {line.split()[0]: line.split()[2] for line in listed.stdout.splitlines()[1:]}
    assert rows == {"tiny": "ready", "lazy": "available", TINY_MODEL: "offered"}
    as_json = json.loads((await warpcore(target, "models", "--backend", "llama_cpp", "--json")).stdout)
    assert {entry["id"]: entry["loads_on_demand"] for entry in as_json} == {
        "tiny": False,
        "lazy": True,
        TINY_MODEL: False,
    }


async def test_chat_answers_each_line_until_end_of_input(tiny: str, target: str) -> None:
    run = await warpcore(target, "chat", "--max-tokens", "6", stdin="hello\nhow are you\n")
    assert run.code == 0, run.stderr
    replies = run.stdout.splitlines()
    assert len(replies) == 2
    assert all(reply.strip() for reply in replies)
    assert run.stderr == "> " * 3


async def test_chat_stops_at_exit_command(tiny: str, target: str) -> None:
    run = await warpcore(target, "chat", "--max-tokens", "4", stdin="hello\n/exit\nnot sent\n")
    assert run.code == 0
    assert len(run.stdout.splitlines()) == 1


async def test_unload_prints_the_id(stub: Stub, tiny: str, target: str) -> None:
    assert await warpcore(target, "unload", "tiny") == Run(0, "tiny\n", "")
    assert (await stub.ListModels(pb.ListModelsRequest())).models == []


async def test_health_exits_zero_only_when_serving(server: WarpcoreServer, target: str) -> None:
    assert await warpcore(target, "health") == Run(0, "SERVING\n", "")
    await server.set_serving(False)
    assert await warpcore(target, "health") == Run(1, "NOT_SERVING\n", "")

    unreachable = await warpcore(closed_port_target(), "health")
    assert (unreachable.code, unreachable.stdout) == (1, "")
    assert unreachable.stderr.startswith("warpcore: UNAVAILABLE: ")
    assert "no warpcore server answered there: start warpcore-server, or name its address" in unreachable.stderr
    # A tester's finding: --tls against a plaintext server was told to add --tls.
    over_tls = await warpcore(target, "--tls", "health")
    assert over_tls.code == 1
    assert "add --tls" not in over_tls.stderr
    assert "drop --tls for a server that serves plaintext" in over_tls.stderr


async def test_call_error_is_one_line_without_traceback(tiny: str, target: str) -> None:
    run = await warpcore(target, "generate", "--model", "nope", "hello")
    assert run.code == 1
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1
    assert run.stderr.startswith("warpcore: NOT_FOUND: ")
    assert "Traceback" not in run.stderr


async def test_health_of_an_unknown_service_says_it_is_unknown(target: str) -> None:
    run = await warpcore(target, "health", "--service", "no-such")
    assert run == Run(1, "", "warpcore: health: the server knows no service 'no-such'\n")


async def test_generate_streams_and_a_closed_pipe_ends_it_quietly(stub: Stub, target: str) -> None:
    await load_tiny(stub, model_id="long", context_size=32768)
    read_end, write_end = os.pipe()
    process = await start(target, "generate", "--max-tokens", "32768", "the", stdin=DEVNULL, stdout=write_end)
    os.close(write_end)
    try:
        first = await asyncio.wait_for(asyncio.to_thread(os.read, read_end, 64), timeout=60)
        assert first  # text arrives while it is still generating
        assert process.returncode is None
    finally:
        os.close(read_end)  # its next write fails with EPIPE
        _, stderr = await finish(process)
    assert process.returncode == 141
    assert stderr == b""


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is signal.SIG_IGN, reason="SIGINT is ignored, so is the child's")
async def test_interrupt_exits_130_quietly(stub: Stub, target: str) -> None:
    await load_tiny(stub, model_id="long", context_size=32768)
    process = await start(target, "generate", "--max-tokens", "32768", "the", stdin=DEVNULL)
    assert process.stdout is not None
    try:
        assert await asyncio.wait_for(process.stdout.read(16), timeout=60)
        process.send_signal(signal.SIGINT)
    finally:
        _, stderr = await finish(process)
    assert process.returncode == 130
    assert stderr == b""
