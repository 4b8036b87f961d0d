"""The SDK's reach into the prompt cache and model residency, sync and asyncio, against the real server:
no_prompt_cache, prompt_cache_tokens and keep_alive as keyword arguments, Model.residency, their checks before any
call, and `warpcore load --keep-alive --prompt-cache-tokens` and `warpcore models --residency`."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.cli import Run, closed_port_target, usage_error, warpcore
from tests.conftest import TINY_MODEL
from tests.residency import ModelEvents
from warpcore.client import AsyncClient, Client, Model, Residency, UnavailableError
from warpcore.server.rpc.server import WarpcoreServer
from warpcore.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub

# Several prefill pieces of the tiny model: its repetition is served from the cache but for a short last piece.
PROMPT = " ".join(f"Rule {n}: answer briefly, politely and only about the village of Elm." for n in range(12))
CELL_BYTES = 512
"""The tiny model's KV cell: what each token of prompt cache adds to its memory estimate."""
UNREACHABLE = "127.0.0.1:1"
"""For checks made before any call: a call would fail there with UnavailableError instead."""


class Sdk:
    """A Client or an AsyncClient behind one awaitable call; the blocking client's calls run on a thread, off the
    event loop that serves the in-process server."""

    def __init__(self, client: Client | AsyncClient) -> None:
        self.client = client

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        bound = getattr(self.client, method)
        if isinstance(self.client, AsyncClient):
            return await bound(*args, **kwargs)
        return await asyncio.to_thread(bound, *args, **kwargs)

    async def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            await self.client.close()
        else:
            self.client.close()


async def sdk_for(kind: str, target: str) -> AsyncIterator[Sdk]:
    sdk = Sdk(Client(target, timeout=30) if kind == "sync" else AsyncClient(target, timeout=30))
    try:
        yield sdk
    finally:
        await sdk.close()


@pytest.fixture(params=["sync", "async"])
async def sdk(request: pytest.FixtureRequest, server: WarpcoreServer) -> AsyncIterator[Sdk]:
    async for made in sdk_for(request.param, f"127.0.0.1:{server.port}"):
        yield made


@pytest.fixture(params=["sync", "async"])
async def offline(request: pytest.FixtureRequest) -> AsyncIterator[Sdk]:
    async for made in sdk_for(request.param, UNREACHABLE):
        yield made


async def cached(sdk: Sdk, model_id: str, **options: Any) -> int:
    response = await sdk("generate", model_id, prompt=PROMPT, max_tokens=4, temperature=0, **options)
    prompt_tokens: int = response.usage.prompt_tokens
    assert prompt_tokens > 100
    cached_tokens: int = response.usage.cached_prompt_tokens
    return cached_tokens


async def test_no_prompt_cache_keeps_a_repeated_prompt_out_of_the_cache(sdk: Sdk) -> None:
    await sdk("load_model", TINY_MODEL, model_id="tiny", context_size=1024)
    assert await cached(sdk, "tiny") == 0  # the first time
    assert await cached(sdk, "tiny", no_prompt_cache=True) == 0  # neither served from the cache...
    assert await cached(sdk, "tiny") > 0  # ... nor did it push out the first one's
    assert await cached(sdk, "tiny", no_prompt_cache=False) > 0


async def test_prompt_cache_tokens_sizes_the_cache_and_0_turns_it_off(sdk: Sdk) -> None:
    memory = {}
    for tokens in (0, 256, 512):
        model: Model = await sdk(
            "load_model", TINY_MODEL, model_id=f"cache-{tokens}", context_size=1024, prompt_cache_tokens=tokens
        )
        assert model.residency is not None
        memory[tokens] = model.residency.memory_bytes
    # The memory estimate counts the cache at its size: the option reached the model.
    assert memory[512] - memory[256] == memory[256] - memory[0] == 256 * CELL_BYTES
    default: Model = await sdk("load_model", TINY_MODEL, model_id="cache-default", context_size=1024)
    assert default.residency is not None
    assert default.residency.memory_bytes - memory[0] == 1024 * CELL_BYTES  # default: the context_size
    assert [await cached(sdk, "cache-0") for _ in range(2)] == [0, 0]
    assert [await cached(sdk, "cache-512") > 0 for _ in range(2)] == [False, True]


async def test_keep_alive_set_at_load_is_the_models_residency(sdk: Sdk, server: WarpcoreServer) -> None:
    loaded: Model = await sdk("load_model", TINY_MODEL, model_id="tiny", context_size=256, keep_alive=90)
    residency = loaded.residency
    assert isinstance(residency, Residency)
    assert residency.keep_alive == 90.0
    assert (residency.slots_busy, residency.slots_total, residency.queue_depth) == (0, 1, 0)
    assert residency.memory_bytes > 0
    assert residency.last_used is not None
    assert residency.expires_at is not None
    assert abs((residency.expires_at - residency.last_used).total_seconds() - 90) < 1e-3
    # Loading the loaded model again changes its keep_alive; a timedelta is as good as seconds.
    half = timedelta(minutes=5, seconds=0.5)
    again: Model = await sdk("load_model", TINY_MODEL, model_id="tiny", context_size=256, keep_alive=half)
    assert again.residency is not None
    assert again.residency.keep_alive == 300.5
    (listed,) = await sdk("list_models")
    assert listed.residency is not None
    assert listed.residency.keep_alive == 300.5
    for forever in ("forever", math.inf):
        kept: Model = await sdk("load_model", TINY_MODEL, model_id="tiny", context_size=256, keep_alive=forever)
        assert kept.residency is not None
        assert (kept.residency.keep_alive, kept.residency.expires_at) == (None, None)
    unloaded: Model = await sdk("unload_model", "tiny")
    assert (unloaded.state, unloaded.residency) == ("ready", None)  # residency ends with the model
    # 0: unloaded as soon as it is idle, which it is from the start; then listed without a residency.
    events = ModelEvents(server)
    brief: Model = await sdk("load_model", TINY_MODEL, model_id="brief", context_size=256, keep_alive=0)
    assert brief.residency is not None
    assert brief.residency.keep_alive == 0.0
    await events.wait_for("brief", loaded=False)
    (dormant,) = await sdk("list_models")
    assert (dormant.id, dormant.state, dormant.residency) == ("brief", "available", None)


SECONDS = "keep_alive must be between 0 and 2592000 seconds, or forever, not "
KINDS = 'keep_alive is a number of seconds, a datetime.timedelta or "forever"'
RANGE = "prompt_cache_tokens must be from 0 (no prompt cache) to 1048576 tokens, not "


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"keep_alive": -1}, ValueError, SECONDS + "-1"),
        ({"keep_alive": float("nan")}, ValueError, SECONDS + "nan"),
        ({"keep_alive": -math.inf}, ValueError, SECONDS + "-inf"),
        ({"keep_alive": timedelta(seconds=-2)}, ValueError, SECONDS + "-2 s"),
        ({"keep_alive": 1e12}, ValueError, SECONDS + "1000000000000.0"),
        ({"keep_alive": 2592001}, ValueError, SECONDS + "2592001"),  # the server's own words, before a call
        ({"keep_alive": timedelta(days=30, seconds=1)}, ValueError, SECONDS + "2592001 s"),
        ({"keep_alive": "5m"}, ValueError, KINDS + ", not '5m'"),
        ({"keep_alive": True}, TypeError, KINDS + " (or None for the server's default), not bool"),
        ({"keep_alive": [90]}, TypeError, KINDS + " (or None for the server's default), not list"),
        ({"prompt_cache_tokens": -1}, ValueError, RANGE + "-1"),
        ({"prompt_cache_tokens": 1048577}, ValueError, RANGE + "1048577"),
        ({"prompt_cache_tokens": 2**32}, ValueError, RANGE + "4294967296"),
        ({"prompt_cache_tokens": "0"}, TypeError, "prompt_cache_tokens is a number of tokens (an int), not str"),
        ({"prompt_cache_tokens": 1.5}, TypeError, "prompt_cache_tokens is a number of tokens (an int), not float"),
        (
            {"prompt_cache_tokenz": 0},
            TypeError,
            "unexpected option 'prompt_cache_tokenz'; did you mean 'prompt_cache_tokens'?",
        ),
        ({"prompt_cache_tokens": 0, "api_key": "k"}, TypeError, "API settings and local settings cannot be mixed"),
    ],
)
async def test_bad_load_options_fail_at_the_call(
    offline: Sdk, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    # The unreachable target shows that nothing is sent: a call would fail with UnavailableError.
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        await offline("load_model", TINY_MODEL, **options)


async def test_the_sdk_holds_prompt_cache_tokens_to_the_servers_own_bound(offline: Sdk, stub: Stub) -> None:
    """A tester's finding: the SDK took up to 4294967295 (the field's uint32) and said so, where the server refuses
    more than its bound; now both hold to the one bound, found here from the server's refusal."""
    config = pb.BackendConfig(local=pb.LocalBackendConfig(prompt_cache_tokens=2**32 - 1))
    request = pb.LoadModelRequest(backend=pb.BACKEND_TYPE_LLAMA_CPP, model=TINY_MODEL, backend_config=config)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.LoadModel(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = re.search(r"prompt_cache_tokens must be between 0 \(no cache\) and (\d+)$", refused.value.details() or "")
    assert found is not None, refused.value.details()
    bound = int(found[1])
    too_many = f"prompt_cache_tokens must be from 0 (no prompt cache) to {bound} tokens, not {bound + 1}"
    with pytest.raises(ValueError, match=f"^{re.escape(too_many)}$"):
        await offline("load_model", TINY_MODEL, prompt_cache_tokens=bound + 1)
    with pytest.raises(UnavailableError):  # the bound itself passes the SDK's check, and is sent
        await offline("load_model", TINY_MODEL, prompt_cache_tokens=bound)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"no_prompt_cache": "yes"}, TypeError, "no_prompt_cache is a bool, not str"),
        ({"no_prompt_cache": 1}, TypeError, "no_prompt_cache is a bool, not int"),
        ({"no_prompt_cach": True}, TypeError, "unexpected option 'no_prompt_cach'; did you mean 'no_prompt_cache'?"),
    ],
)
async def test_bad_no_prompt_cache_fails_at_the_call(
    offline: Sdk, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        await offline("generate", "tiny", prompt="x", **options)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        await offline("count_tokens", "tiny", prompt="x", **options)


async def test_cli_load_keep_alive_and_prompt_cache_then_models_with_residency(server: WarpcoreServer) -> None:
    target = f"127.0.0.1:{server.port}"
    load = ("load", TINY_MODEL, "--context-size", "256")
    assert await warpcore(target, *load, "--id", "a", "--keep-alive", "90", "--prompt-cache-tokens", "0") == Run(
        0, "a\n", ""
    )
    assert await warpcore(target, *load, "--id", "b", "--keep-alive", "forever") == Run(0, "b\n", "")
    assert await warpcore(target, *load, "--id", "c", "--keep-alive", "300") == Run(0, "c\n", "")

    listed = await warpcore(target, "models", "--residency")
    assert listed.code == 0, listed
    header, *rows = [line.split() for line in listed.stdout.splitlines()]
    assert header == ["ID", "BACKEND", "STATE", "CONTEXT", "MEMORY", "SLOTS", "QUEUE", "KEEP-ALIVE", "EXPIRES", "NAME"]
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert [(row["SLOTS"], row["QUEUE"], row["KEEP-ALIVE"]) for row in by_id.values()] == [
        ("0/1", "0", "90s"),
        ("0/1", "0", "forever"),
        ("0/1", "0", "5m"),
    ]
    assert re.fullmatch(r"\d+s|1m", by_id["a"]["EXPIRES"])  # 90 s from its load, less the time since
    assert by_id["b"]["EXPIRES"] == "-"  # kept until unloaded
    assert all(re.fullmatch(r"[\d.]+[KM]iB", row["MEMORY"]) for row in by_id.values())

    as_json = json.loads((await warpcore(target, "models", "--residency", "--json")).stdout)
    residency = {model["id"]: model["residency"] for model in as_json}
    assert [residency[name]["keep_alive"] for name in "abc"] == [90.0, None, 300.0]
    assert residency["b"]["expires_at"] is None
    assert residency["a"]["expires_at"] > residency["a"]["last_used"]
    # The default cache (the context_size) against none: the memory estimate says which model has one.
    assert residency["b"]["memory_bytes"] - residency["a"]["memory_bytes"] == 256 * CELL_BYTES
    # Without --residency, the output is as before.
    plain = json.loads((await warpcore(target, "models", "--json")).stdout)
    assert all("residency" not in model for model in plain)
    assert (await warpcore(target, "models")).stdout.splitlines()[0].split()[-1] == "NAME"
    offered = json.loads((await warpcore(target, "models", "--backend", "llama_cpp", "--residency", "--json")).stdout)
    assert [model["residency"] is None for model in offered] == [False, False, False, True]  # the file, not loaded


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--keep-alive", "-2"], "argument --keep-alive: must be seconds (90), a number with a unit ms, s, m, h or d"),
        (["--keep-alive", "nan"], "argument --keep-alive: must be seconds (90), a number with a unit ms, s, m, h or d"),
        (["--keep-alive", "721h"], "argument --keep-alive: keep_alive must be between 0 and 2592000 seconds, or"),
        (["--prompt-cache-tokens", "-1"], "argument --prompt-cache-tokens: must be an integer from 0 to 1048576"),
        (["--prompt-cache-tokens", "1048577"], "argument --prompt-cache-tokens: must be an integer from 0 to 1048576"),
        (["--prompt-cache-tokens", "1.5"], "argument --prompt-cache-tokens: '1.5' is not an integer"),
    ],
)
async def test_cli_load_options_out_of_range_are_usage_errors(args: list[str], error: str) -> None:
    run = await warpcore(closed_port_target(), "load", "x.gguf", *args)
    assert usage_error(run).startswith(f"warpcore load: error: {error}")
