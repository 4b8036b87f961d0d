"""The models of `--config` are known from the start: while the startup models load one after another, one whose
load has not begun is listed as loading, and a call naming it waits for its load, through either door, counted as
waiting; it gets that load's failure if it fails, and SHUTTING_DOWN if the server is stopped first. An outside
tester's finding: such a call was a 404 `model_not_found` (gRPC NOT_FOUND), which a router (LiteLLM) takes as
permanent, and `/v1/models` did not list the model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TINY_MODEL, collect, failed_stream, greedy, rich_details
from tests.fakes.openai_api import FakeOpenAI
from tests.hosted import OPENAI_KEY
from tests.http_door import openai_messages
from tests.test_model_lifecycle import HeldModelList
from tests.test_openai_compatible_server import free_loopback_port
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

WAIT_SECONDS = 60  # a timeout only turns a hang into a failure

TINY = f"""
[[models]]
id = "tiny"
backend = "llama_cpp"
model = "{TINY_MODEL}"

[models.local]
threads = 1
"""
HOSTED = """
[[models]]
id = "{model_id}"
backend = "openai"
model = "{model}"

[models.api]
base_url = "{base_url}"
api_key_env = "WARPCORE_TEST_KEY"
"""


@dataclass
class Starting:
    """A server process still loading its startup models, held at the first one's."""

    process: asyncio.subprocess.Process
    stub: inference_pb2_grpc.InferenceServiceAsyncStub
    http: openai.AsyncOpenAI
    metrics: str
    log: list[str] = field(default_factory=list)

    async def waiting(self, model_id: str, calls: list[asyncio.Future[Any]]) -> float | None:
        """The calls waiting for `model_id` in the metrics, read as a router scrapes until all of `calls` wait there
        (each call reaches its wait as it is scheduled), or until one has ended."""
        async with aiohttp.ClientSession() as session, asyncio.timeout(WAIT_SECONDS):
            while True:
                async with session.get(self.metrics) as response:
                    text = await response.text()
                waiting = {
                    sample.labels["model"]: sample.value
                    for family in text_string_to_metric_families(text)
                    if family.name == "warpcore_model_num_requests_waiting"
                    for sample in family.samples
                }.get(model_id)
                if waiting == len(calls) or any(call.done() for call in calls):
                    return waiting
                await asyncio.sleep(0.05)

    async def stopped(self) -> int:
        async with asyncio.timeout(WAIT_SECONDS):
            return await self.process.wait()


async def read_log(process: asyncio.subprocess.Process, log: list[str]) -> None:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        log.append(line.decode().rstrip("\n"))


@contextlib.asynccontextmanager
async def starting(
    models_path: Path, tmp_path: Path, upstream: HeldModelList, after: str, *arguments: str
) -> AsyncIterator[Starting]:
    """A server whose startup models are a hosted one, whose load `upstream` holds at its model list, then the
    entries `after` (a --config's text)."""
    config = tmp_path / "warpcore.toml"
    config.write_text(HOSTED.format(model_id="slow", model="gpt-4o-mini", base_url=upstream.base_url) + after)
    sock, http, metrics = tmp_path / "warpcore.sock", free_loopback_port(), free_loopback_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "warpcore.server", "--no-default-model", "--listen", f"unix://{sock}"),
        *("--http-host", "127.0.0.1", "--http-port", str(http), "--metrics-host", "127.0.0.1"),
        *("--metrics-port", str(metrics), "--config", str(config), *arguments),
        env={**os.environ, "MODELS_PATH": str(models_path), "WARPCORE_TEST_KEY": OPENAI_KEY},
        stderr=asyncio.subprocess.PIPE,
    )
    log: list[str] = []
    reading = asyncio.ensure_future(read_log(process, log))
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            await upstream.asked.wait()  # the doors are open, the first load under way
        async with grpc.aio.insecure_channel(f"unix://{sock}") as channel:
            client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{http}/v1", api_key="unused", max_retries=0)
            yield Starting(
                process,
                inference_pb2_grpc.InferenceServiceStub(channel),
                client,
                f"http://127.0.0.1:{metrics}/metrics",
                log,
            )
            await client.close()
    finally:
        upstream.answer.set()
        if process.returncode is None:
            process.kill()
            await process.wait()
        await reading


async def http_generation(client: openai.AsyncOpenAI, model_id: str) -> str:
    completion = await client.chat.completions.create(
        model=model_id, messages=openai_messages("the"), max_tokens=4, temperature=0
    )
    return completion.choices[0].message.content or ""


async def test_a_call_for_a_startup_model_not_yet_loading_waits_for_its_load(models_path: Path, tmp_path: Path) -> None:
    async with HeldModelList() as upstream, starting(models_path, tmp_path, upstream, TINY) as server:
        listed = await server.stub.ListModels(pb.ListModelsRequest())
        assert {model.id: model.state for model in listed.models} == {
            "slow": pb.MODEL_STATE_LOADING,
            "tiny": pb.MODEL_STATE_LOADING,
        }
        assert [model.id async for model in server.http.models.list()] == ["slow", "tiny"]
        grpc_call = asyncio.ensure_future(collect(server.stub.Generate(greedy("the", 4, model_id="tiny"))))
        http_call = asyncio.ensure_future(http_generation(server.http, "tiny"))
        assert await server.waiting("tiny", [grpc_call, http_call]) == 2
        assert not grpc_call.done()
        assert not http_call.done()
        upstream.answer.set()  # the first load ends, then tiny's begins
        text, result = await grpc_call
        assert text
        assert await http_call
        assert result.finish_reason == pb.FINISH_REASON_LENGTH
        server.process.send_signal(signal.SIGTERM)
        assert await server.stopped() == 0


def absent(upstream: FakeOpenAI) -> str:
    """A model the upstream does not list: its load fails."""
    return HOSTED.format(model_id="absent", model="gpt-absent", base_url=upstream.base_url)


async def test_a_call_for_a_startup_model_whose_load_fails_gets_its_failure(models_path: Path, tmp_path: Path) -> None:
    async with HeldModelList() as upstream, starting(models_path, tmp_path, upstream, absent(upstream)) as server:
        grpc_call = asyncio.ensure_future(failed_stream(server.stub.Generate(greedy("hi", 4, model_id="absent"))))
        http_call = asyncio.ensure_future(http_generation(server.http, "absent"))
        assert await server.waiting("absent", [grpc_call, http_call]) == 2
        upstream.answer.set()  # the first load ends; the upstream does not list gpt-absent: its load fails
        _, error = await grpc_call
        with pytest.raises(openai.NotFoundError) as http_error:
            await http_call
        assert await server.stopped() == 1
    said = "model 'absent' could not be loaded for this call: "
    assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
    assert (error.details() or "").startswith(said), error.details()
    assert rich_details(error)[1] == ["model_id"]
    failure = (error.details() or "").removeprefix(said)
    assert isinstance(http_error.value.body, dict)
    assert http_error.value.body["message"] == said + failure
    assert server.log[-1] == f"warpcore-server: cannot load startup model 'absent' (gpt-absent): {failure}"


async def test_a_call_for_a_startup_model_not_yet_loading_is_refused_when_the_server_stops(
    models_path: Path, tmp_path: Path
) -> None:
    # A grace far longer than the wait below: the calls are refused at the shutdown's start, not at the grace's end.
    grace = ("--grace", str(WAIT_SECONDS * 2))
    async with HeldModelList() as upstream, starting(models_path, tmp_path, upstream, TINY, *grace) as server:
        grpc_call = asyncio.ensure_future(failed_stream(server.stub.Generate(greedy("the", 4, model_id="tiny"))))
        http_call = asyncio.ensure_future(http_generation(server.http, "tiny"))
        assert await server.waiting("tiny", [grpc_call, http_call]) == 2
        server.process.send_signal(signal.SIGTERM)  # tiny's load will never begin: its calls are told at once
        _, error = await grpc_call
        with pytest.raises(openai.InternalServerError) as http_error:
            await http_call
        assert await server.stopped() == 0
    assert (error.code(), rich_details(error)[0].reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    assert http_error.value.status_code == 503
    assert "the server is shutting down" in http_error.value.message
