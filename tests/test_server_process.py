"""`warpcore-server` as a real process: preloading from a config file, JSON logs, metrics, SIGTERM drain."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import TINY_MODEL, collect, greedy, rich_details
from tests.server_process import log_lines_until, one_line_failure, serving_tiny, start
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc


async def watch_status(
    watch: grpc.aio.UnaryStreamCall[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse],
) -> int:
    update = await watch.read()
    assert isinstance(update, health_pb2.HealthCheckResponse)
    return int(update.status)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_preload_serve_and_drain_on_sigterm(models_path: Path, tmp_path: Path, stop: signal.Signals) -> None:
    async with serving_tiny(models_path, tmp_path, "--grace", "1.5", "--metrics-port", "0") as (process, started, port):
        message = str(started[-1]["message"])
        metrics_port = int(message.split("; metrics on 127.0.0.1:", 1)[1].split(";")[0])  # its host too
        # And what guards the doors (a tester's finding: nothing said whether a token or TLS was in force).
        assert message.endswith("; event loop uvloop; no token, plaintext, client API settings allowed")
        # One line for the load (a tester's finding: the start wrote a second one of its own).
        loads = [str(line["message"]) for line in started if str(line["message"]).startswith("loaded ")]
        assert [re.sub(r"[\d.]+s$", "Ns", load) for load in loads] == [
            f"loaded model tiny (llama_cpp {TINY_MODEL}, 32768-token context) in Ns"
        ]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert await watch_status(watch) == health_pb2.HealthCheckResponse.SERVING
            _, result = await collect(stub.Generate(greedy("the", 5)))
            scrape = f"http://127.0.0.1:{metrics_port}/metrics"
            body = (await asyncio.to_thread(lambda: urllib.request.urlopen(scrape, timeout=5).read())).decode()
            assert 'warpcore_requests_total{code="OK",method="Generate",protocol="grpc"} 1.0' in body

            endless = stub.Generate(greedy("the", 32768))
            first = await endless.read()
            assert isinstance(first, pb.GenerateResponse)
            assert first.HasField("delta")
            process.send_signal(stop)
            # Health flips at once, before the grace period ends.
            assert await watch_status(watch) == health_pb2.HealthCheckResponse.NOT_SERVING
            frames = []
            while (frame := await endless.read()) is not grpc.aio.EOF:
                assert isinstance(frame, pb.GenerateResponse)
                frames.append(frame)
            assert frames[-1].result.finish_reason == pb.FINISH_REASON_CANCELLED
            # The drain over, the watch ends as any call then does: with a status that says to go elsewhere.
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await watch.read()
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert rich_details(ended.value)[0].reason == "SHUTTING_DOWN"
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert process.stderr is not None
        logs = started + [json.loads(line) for line in (await process.stderr.read()).splitlines()]
        generations = [line for line in logs if line.get("method") == "Generate"]
        assert generations[0]["code"] == "OK"
        assert (generations[0]["prompt_tokens"], generations[0]["completion_tokens"]) == (
            result.usage.prompt_tokens,
            result.usage.completion_tokens,
        )
        assert generations[0]["finish_reason"] == "length"
        # The stream the drain cut sent its result frame, so its call is OK: only its finish tells it was cut.
        assert (generations[1]["code"], generations[1]["finish_reason"]) == ("OK", "cancelled")
        assert generations[1]["completion_tokens"] == frames[-1].result.usage.completion_tokens > 0
        assert logs[-1]["message"] == "stopped"


@pytest.mark.parametrize(
    ("setting", "told"),
    [
        (
            'api_key = "sk-inline"',
            "api_key: keys are never written in the file; name the environment variable that holds it with api_key_env",
        ),
        # The key written where its variable's name goes.
        ('api_key_env = "sk-inline"', "api_key_env is no environment variable's name (letters, digits and _)"),
        ('api_key_env = "gsk_sk_inline"', "api_key_env names a variable (not quoted: it may be a key) that is not set"),
        ('api_key_env = "NO_SUCH_KEY"', "api_key_env names a variable NO_SUCH_KEY that is not set"),
    ],
)
async def test_bad_config_fails_fast_with_one_clear_line(
    models_path: Path, tmp_path: Path, setting: str, told: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[[models]]\nid = "gpt"\nbackend = "openai"\nmodel = "gpt-4o"\n[models.api]\n{setting}\n')
    lines = await one_line_failure(await start(models_path, "--config", str(config)))
    assert lines == [f"warpcore-server: {config}: models[0].api.{told}"]
    assert "sk-inline" not in "\n".join(lines)
    assert "gsk_sk_inline" not in "\n".join(lines)


async def test_a_startup_model_that_fails_to_load_is_named(models_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "missing.toml"
    config.write_text('[[models]]\nid = "absent"\nbackend = "llama_cpp"\nmodel = "nowhere/absent.gguf"\n')
    lines = await one_line_failure(await start(models_path, "--config", str(config)))
    assert len(lines) == 1
    assert lines[0].startswith("warpcore-server: cannot load startup model 'absent' (nowhere/absent.gguf): ")


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize(
    ("flags", "refusal"),
    [
        (("--metrics-host", "127.0.0.1", "--metrics-port"), "cannot serve metrics on"),
        (("--host", "127.0.0.1", "--port"), "cannot listen on"),  # a tester's finding: gRPC's own line, and no reason
        (("--http-host", "127.0.0.1", "--http-port"), "cannot serve the HTTP door on"),
    ],
    ids=["metrics", "gRPC", "HTTP"],
)
async def test_a_taken_port_fails_fast_with_one_clear_line(
    models_path: Path, log_format: str, flags: tuple[str, ...], refusal: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await start(models_path, *flags, str(port), "--log-format", log_format)
        lines = await one_line_failure(process)
    said = f"warpcore-server: {refusal} 127.0.0.1:{port}: Address already in use"
    assert lines == [said] if log_format == "text" else [json.loads(line)["message"] for line in lines] == [said]


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--host", "192.0.2.1"), "cannot listen on 192.0.2.1:0: Cannot assign requested address"),  # TEST-NET-1
        (("--host", "no-such-host.invalid"), "cannot listen on no-such-host.invalid:0: "),
        (("--listen", "unix:///no/such/folder/s.sock"), "cannot listen on unix:///no/such/folder/s.sock: the folder"),
    ],
    ids=["unassigned", "unresolved", "no-folder"],
)
async def test_an_address_no_socket_can_take_is_one_json_line_with_its_reason(
    models_path: Path, flags: tuple[str, ...], said: str
) -> None:
    """A tester's finding: with JSON logs, gRPC's own line (plain text, from its C core) came first, and the JSON
    line gave no reason; port 0 and names the machine does not resolve were left to gRPC."""
    process = await start(models_path, *flags, "--log-format", "json")
    lines = await one_line_failure(process)
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["message"].startswith(f"warpcore-server: {said}")


async def test_a_second_interrupt_ends_the_grace_at_once(models_path: Path, tmp_path: Path) -> None:
    async with (
        serving_tiny(models_path, tmp_path, "--grace", "120") as (process, _, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert await watch_status(watch) == health_pb2.HealthCheckResponse.SERVING
        endless = stub.Generate(greedy("the", 32768))
        assert isinstance(await endless.read(), pb.GenerateResponse)
        process.send_signal(signal.SIGINT)
        await log_lines_until(process, "shutting down")  # the first interrupt is taken: the grace has begun
        assert await watch_status(watch) == health_pb2.HealthCheckResponse.NOT_SERVING
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):  # far less than the grace
            frames = []
            while (frame := await endless.read()) is not grpc.aio.EOF:
                assert isinstance(frame, pb.GenerateResponse)
                frames.append(frame)
            assert frames[-1].result.finish_reason == pb.FINISH_REASON_CANCELLED
            assert await process.wait() == 0


async def test_asyncio_s_own_loop_serves_too_when_asked_for(models_path: Path, tmp_path: Path) -> None:
    async with serving_tiny(models_path, tmp_path, "--event-loop", "asyncio") as (process, started, port):
        assert "; event loop asyncio; " in str(started[-1]["message"])
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            text, result = await collect(inference_pb2_grpc.InferenceServiceStub(channel).Generate(greedy("the", 5)))
        assert (result.finish_reason, result.usage.completion_tokens) == (pb.FINISH_REASON_LENGTH, 5)
        assert text
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_without_uvloop_the_server_says_how_to_serve_on_asyncio(models_path: Path) -> None:
    hide_uvloop = "import sys; sys.modules['uvloop'] = None; from warpcore.server.cli import main; main()"
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", hide_uvloop, "--port", "0", "--no-default-model"),
        env={**os.environ, "MODELS_PATH": str(models_path), "PYTHONWARNINGS": "error::RuntimeWarning"},
        stderr=asyncio.subprocess.PIPE,
    )
    assert await one_line_failure(process) == [
        "warpcore-server: uvloop is not installed here; install it or use --event-loop asyncio"
    ]


async def test_a_stop_while_a_startup_model_loads_ends_the_start(models_path: Path, tmp_path: Path) -> None:
    """A startup model whose upstream never answers holds the load for its whole timeout: a SIGTERM meanwhile ends
    the start, with status 0, never reporting SERVING."""
    with socket.socket() as silent:  # accepts connections, answers nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent.setblocking(False)
        config = tmp_path / "held.toml"
        config.write_text(
            '[[models]]\nid = "gpt"\nbackend = "openai"\nmodel = "gpt-4o-mini"\n\n[models.api]\n'
            f'base_url = "http://127.0.0.1:{silent.getsockname()[1]}/v1"\napi_key_env = "WARPCORE_TEST_KEY"\n'
        )
        process = await start(models_path, "--config", str(config), "--log-format", "json", WARPCORE_TEST_KEY="sk-t")
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(60):
            connection, _ = await loop.sock_accept(silent)  # the load is under way, waiting for the upstream
        with connection:
            process.send_signal(signal.SIGTERM)
            assert process.stderr is not None
            async with asyncio.timeout(15):  # the load alone would wait 600 s
                output = await process.stderr.read()
                assert await process.wait() == 0
    messages = [json.loads(line)["message"] for line in output.decode().splitlines()]
    assert "stopped while loading the startup models" in messages
    assert messages[-1] == "stopped"
    assert not any("serving on" in message for message in messages)


async def test_a_unix_socket_a_server_listens_on_is_not_taken_over(models_path: Path, tmp_path: Path) -> None:
    """A tester's finding: a second server on the same socket path replaced the first's socket file (its clients then
    reached the newcomer, and none reached it once the newcomer stopped). A socket nobody listens on, left by a server
    that is gone, is replaced; a file that is no socket is refused too."""
    path = tmp_path / "w.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        listening.listen()
        lines = await one_line_failure(await start(models_path, "--listen", f"unix://{path}"))
        assert lines == [
            f"warpcore-server: cannot listen on unix://{path}: a server is listening there (Address already in use)"
        ]
    # Closed: the socket file stays, and nobody listens on it.
    first = await start(models_path, "--listen", f"unix://{path}", "--log-format", "json")
    try:
        await log_lines_until(first, "serving on")
    finally:
        first.terminate()
        await first.wait()
    other = tmp_path / "plain"
    other.write_text("not a socket")
    lines = await one_line_failure(await start(models_path, "--listen", f"unix://{other}"))
    said = "a file that is no socket is there; remove it or choose another"
    assert lines == [f"warpcore-server: cannot listen on unix://{other}: {said}"]


async def test_an_ipv6_host_is_listened_on(models_path: Path) -> None:
    """A tester's finding: --host ::1 was joined to its port unbracketed, which gRPC could not read."""
    process = await start(models_path, "--host", "::1", "--http-port", "0", "--log-format", "json")
    try:
        started = await log_lines_until(process, "serving on")
        assert "serving on [::1]:" in str(started[-1]["message"])
        assert "HTTP (OpenAI, Anthropic) on [::1]:" in str(started[-1]["message"])  # was ::1:46619
    finally:
        process.terminate()
        await process.wait()
