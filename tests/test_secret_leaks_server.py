"""No API key leaves `warpcore-server`: not in its output, responses, errors, metrics or reflection, over one whole run
of the server process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.fakes.anthropic_api import FakeAnthropic
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.script import Script
from tests.key_leaks import ANTHROPIC_KEY, OPENAI_KEY, REQUEST_KEY, Key, Transcript, leaks
from tests.tool_wire import WEATHER, Call, script_steps, user
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

PRELOAD_KEY = Key("api_key_env", "", "PreloadKey4Gm8Tz2Wq6Lv9Rc3Xn7Bk5Sj1Hf")
KEYS = (OPENAI_KEY, ANTHROPIC_KEY, REQUEST_KEY, PRELOAD_KEY)

PRELOAD = """
[[models]]
id = "preloaded"
backend = "openai"
model = "gpt-4o"

[models.api]
api_key_env = "WARPCORE_TEST_PRELOAD_KEY"
"""


def echoing(key: Key, status: int = 401, headers: dict[str, str] | None = None) -> Script:
    """An upstream error whose message quotes the key it was called with, as OpenAI's 401 does."""
    return Script(
        status=status,
        error_message=f"Incorrect API key provided: {key.value}. You can find your API key in your account.",
        headers=headers or {},
    )


def generate(model_id: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(model_id=model_id, prompt="Say hello", options=pb.GenerationOptions(max_tokens=16))


def calling(model_id: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(model_id=model_id, messages=[user("Weather?")], tools=[WEATHER])


async def reflect(channel: grpc.aio.Channel, transcript: Transcript) -> None:
    """Lists the services over reflection, then asks for the file defining each one."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    listing = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    services = [service.name async for answer in listing for service in answer.list_services_response.service]
    transcript.outcomes["reflection services"] = ",".join(sorted(services))
    requests = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=name) for name in services]
    async for answer in stub.ServerReflectionInfo(iter(requests)):
        transcript.add("reflection", answer)


async def exercise(channel: grpc.aio.Channel, openai: FakeOpenAI, anthropic: FakeAnthropic, t: Transcript) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    request_key = pb.ApiConfig(api_key=REQUEST_KEY.value)
    with_base_url = pb.ApiConfig(api_key=REQUEST_KEY.value, base_url=openai.base_url)

    def load(
        model: str, model_id: str, backend: pb.BackendType.ValueType, api: pb.ApiConfig | None = None
    ) -> pb.LoadModelRequest:
        config = pb.BackendConfig(api=api) if api is not None else None
        return pb.LoadModelRequest(backend=backend, model=model, model_id=model_id, backend_config=config)

    await t.call("load openai, env key", stub.LoadModel(load("gpt-4o-mini", "gpt-env", pb.BACKEND_TYPE_OPENAI)))
    await t.call(
        "load openai, request key and base_url",
        stub.LoadModel(load("gpt-4o", "gpt-request", pb.BACKEND_TYPE_OPENAI, with_base_url)),
    )
    await t.call(
        "load anthropic, env key", stub.LoadModel(load("claude-sonnet-4-5", "claude-env", pb.BACKEND_TYPE_ANTHROPIC))
    )
    await t.call(
        "load anthropic, request key",
        stub.LoadModel(load("claude-haiku-4-5", "claude-request", pb.BACKEND_TYPE_ANTHROPIC, request_key)),
    )
    for model_id in ("preloaded", "gpt-env", "gpt-request", "claude-env", "claude-request"):
        await t.call(f"generate {model_id}", stub.Generate(generate(model_id)))
    await t.call("list loaded", stub.ListModels(pb.ListModelsRequest()))
    await t.call("list openai", stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_OPENAI)))
    anthropic_with_request_key = pb.ListModelsRequest(
        backend=pb.BACKEND_TYPE_ANTHROPIC, backend_config=pb.BackendConfig(api=request_key)
    )
    await t.call("list anthropic, request key", stub.ListModels(anthropic_with_request_key))

    # Upstream errors that quote the key each call was made with.
    for model_id, key in (("preloaded", PRELOAD_KEY), ("gpt-env", OPENAI_KEY), ("gpt-request", REQUEST_KEY)):
        openai.script = echoing(key)
        await t.call(f"generate {model_id}, 401", stub.Generate(generate(model_id)))
    openai.script = echoing(OPENAI_KEY)
    await t.call("load openai, 401", stub.LoadModel(load("gpt-4o", "gpt-denied", pb.BACKEND_TYPE_OPENAI)))
    await t.call("list openai, 401", stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_OPENAI)))
    # OpenAI's own 401 shows the key masked but for its prefix and last characters.
    masked = f"{OPENAI_KEY.value[:8]}{'*' * 24}{OPENAI_KEY.value[-4:]}"
    openai.script = Script(status=401, error_message=f"Incorrect API key provided: {masked}.")
    await t.call("generate gpt-env, masked 401", stub.Generate(generate("gpt-env")))
    # An OpenAI-compatible server quoting a key of no vendor's shape, partly masked.
    partly = f"{REQUEST_KEY.value[:12]}{'*' * 20}{REQUEST_KEY.value[-4:]}"
    openai.script = Script(status=401, error_message=f"invalid api key {partly}")
    await t.call("generate gpt-request, masked 401", stub.Generate(generate("gpt-request")))
    openai.script = echoing(OPENAI_KEY, 429, headers={"retry-after": "7"})
    await t.call("generate gpt-env, 429", stub.Generate(generate("gpt-env")))
    for model_id, key in (("claude-env", ANTHROPIC_KEY), ("claude-request", REQUEST_KEY)):
        anthropic.script = echoing(key)
        await t.call(f"generate {model_id}, 401", stub.Generate(generate(model_id)))
    anthropic.script = echoing(ANTHROPIC_KEY, 429)
    await t.call("list anthropic, 429", stub.ListModels(pb.ListModelsRequest(backend=pb.BACKEND_TYPE_ANTHROPIC)))

    # A tool call that names a tool after the Authorization header the upstream got, refused with the name quoted.
    for upstream, model_id, key in ((openai, "gpt-env", OPENAI_KEY), (anthropic, "claude-env", ANTHROPIC_KEY)):
        events, reason = script_steps(upstream, [Call(0, "call_1", f"fn_Bearer_{key.value}")])
        upstream.script = Script(events=events, finish_reason=reason)
        await t.call(f"generate {model_id}, tool named after the key", stub.Generate(calling(model_id)))

    # Streams that fail after their first text.
    openai.script = Script(cut_after=1)
    await t.call("generate gpt-env, cut", stub.Generate(generate("gpt-env")))
    openai.script = Script(malformed_after=1)
    await t.call("generate gpt-request, malformed", stub.Generate(generate("gpt-request")))
    anthropic.script = Script(error_event_after=1)
    await t.call("generate claude-request, error event", stub.Generate(generate("claude-request")))
    openai.script = anthropic.script = Script()

    await t.call("unload gpt-request", stub.UnloadModel(pb.UnloadModelRequest(model_id="gpt-request")))
    await reflect(channel, t)
    for service in ("", "warpcore.v1.InferenceService", "model:gpt-env", "model:claude-request"):
        await t.call(f"health {service}", health.Check(health_pb2.HealthCheckRequest(service=service)))


async def drain(stream: asyncio.StreamReader | None) -> str:
    assert stream is not None
    return (await stream.read()).decode(errors="replace")


@contextlib.asynccontextmanager
async def running_server(
    openai: FakeOpenAI, anthropic: FakeAnthropic, tmp_path: Path, transcript: Transcript
) -> AsyncIterator[tuple[int, int]]:
    """Runs `warpcore-server` with the keys in play and its output captured; yields its gRPC and metrics ports."""
    config = tmp_path / "warpcore.toml"
    config.write_text(PRELOAD)
    env = {
        **os.environ,
        "MODELS_PATH": str(tmp_path / "models"),
        OPENAI_KEY.name: OPENAI_KEY.value,
        "OPENAI_API_BASE": openai.base_url,
        ANTHROPIC_KEY.name: ANTHROPIC_KEY.value,
        "ANTHROPIC_API_BASE": anthropic.base_url,
        "WARPCORE_TEST_PRELOAD_KEY": PRELOAD_KEY.value,
        # The server has no log-level setting: these make the vendor SDKs and their HTTP clients log at DEBUG.
        "OPENAI_LOG": "debug",
        "ANTHROPIC_LOG": "debug",
        "GRPC_VERBOSITY": "debug",
    }
    arguments = ["--port", "0", "--no-default-model", "--config", str(config), "--log-format", "json"]
    arguments += ["--metrics-port", "0", "--metrics-host", "127.0.0.1", "--grace", "2"]
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "warpcore.server", *arguments),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    stdout = asyncio.ensure_future(drain(process.stdout))
    startup: list[str] = []
    try:
        async with asyncio.timeout(60):
            while line := (await process.stderr.readline()).decode(errors="replace"):
                startup.append(line)
                if match := re.search(r"serving on 127\.0\.0\.1:(\d+).*metrics on 127\.0\.0\.1:(\d+)", line):
                    break
        assert match, f"the server exited before serving: {''.join(startup)}"
        rest = asyncio.ensure_future(drain(process.stderr))
        yield int(match.group(1)), int(match.group(2))
        process.send_signal(signal.SIGTERM)
        transcript.exit_code = await asyncio.wait_for(process.wait(), 30)
        transcript.stderr = "".join(startup) + await rest
        transcript.stdout = await stdout
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def whole_run(tmp_path: Path) -> tuple[Transcript, dict[str, list[str]]]:
    transcript = Transcript()
    async with FakeOpenAI() as openai, FakeAnthropic() as anthropic:
        async with running_server(openai, anthropic, tmp_path, transcript) as (port, metrics_port):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await exercise(channel, openai, anthropic, transcript)
            scrape = f"http://127.0.0.1:{metrics_port}/metrics"
            metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(scrape, timeout=5).read())
            transcript.add("metrics", metrics)
        received = {
            "openai": [value for request in openai.requests for value in request.headers.values()],
            "anthropic": [value for request in anthropic.requests for value in request.headers.values()],
        }
    transcript.add("stdout", transcript.stdout)
    transcript.add("stderr", transcript.stderr)
    return transcript, received


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Transcript, dict[str, list[str]]]:
    """One whole run of the server, shared by the tests below: what came out, and the headers each upstream saw."""
    return asyncio.run(whole_run(tmp_path_factory.mktemp("secret-leaks")))


def test_the_run_went_as_scripted(run: tuple[Transcript, dict[str, list[str]]]) -> None:
    transcript, _ = run
    assert transcript.exit_code == 0, transcript.stderr
    assert transcript.outcomes == {
        "load openai, env key": "OK",
        "load openai, request key and base_url": "OK",
        "load anthropic, env key": "OK",
        "load anthropic, request key": "OK",
        "generate preloaded": "OK",
        "generate gpt-env": "OK",
        "generate gpt-request": "OK",
        "generate claude-env": "OK",
        "generate claude-request": "OK",
        "list loaded": "OK",
        "list openai": "OK",
        "list anthropic, request key": "OK",
        "generate preloaded, 401": "UNAUTHENTICATED",
        "generate gpt-env, 401": "UNAUTHENTICATED",
        "generate gpt-request, 401": "UNAUTHENTICATED",
        "load openai, 401": "UNAUTHENTICATED",
        "list openai, 401": "UNAUTHENTICATED",
        "generate gpt-env, masked 401": "UNAUTHENTICATED",
        "generate gpt-request, masked 401": "UNAUTHENTICATED",
        "generate gpt-env, 429": "RESOURCE_EXHAUSTED",
        "generate claude-env, 401": "UNAUTHENTICATED",
        "generate claude-request, 401": "UNAUTHENTICATED",
        "list anthropic, 429": "RESOURCE_EXHAUSTED",
        "generate gpt-env, tool named after the key": "UNAVAILABLE",
        "generate claude-env, tool named after the key": "UNAVAILABLE",
        "generate gpt-env, cut": "UNAVAILABLE",
        "generate gpt-request, malformed": "UNAVAILABLE",
        "generate claude-request, error event": "UNAVAILABLE",
        "unload gpt-request": "OK",
        "reflection services": "grpc.health.v1.Health,grpc.reflection.v1alpha.ServerReflection,"
        "warpcore.v1.InferenceService",
        "health ": "OK",
        "health warpcore.v1.InferenceService": "OK",
        "health model:gpt-env": "OK",
        "health model:claude-request": "OK",
    }
    assert 'text: "Hello"' in transcript.joined("generate claude-request")
    assert "upstream error (HTTP 401): Incorrect API key provided: [redacted]" in transcript.joined(
        "generate gpt-request, 401"
    )
    assert 'warpcore_requests_total{code="UNAUTHENTICATED",method="Generate",protocol="grpc"} 7.0' in transcript.joined(
        "metrics"
    )
    assert "retry_delay {\n      seconds: 7" in transcript.joined("generate gpt-env, 429")
    assert "GenerateRequest" in transcript.joined("reflection")
    assert '"level": "debug"' in transcript.stderr  # the vendor SDKs did log at DEBUG
    assert '"message": "stopped"' in transcript.stderr


@pytest.mark.parametrize("key", KEYS, ids=[key.name for key in KEYS])
def test_each_key_reached_its_upstream(run: tuple[Transcript, dict[str, list[str]]], key: Key) -> None:
    _, received = run
    vendors = [vendor for vendor, headers in received.items() if any(key.value in value for value in headers)]
    expected = {OPENAI_KEY: ["openai"], ANTHROPIC_KEY: ["anthropic"], PRELOAD_KEY: ["openai"]}
    assert vendors == expected.get(key, ["openai", "anthropic"])


@pytest.mark.parametrize("key", KEYS, ids=[key.name for key in KEYS])
def test_no_output_holds_a_key(run: tuple[Transcript, dict[str, list[str]]], key: Key) -> None:
    transcript, _ = run
    assert len(transcript.texts) > 100  # every frame, error, log, scrape and reflection answer
    assert leaks(transcript.texts, key) == []
