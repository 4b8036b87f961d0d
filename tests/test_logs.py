"""The server's log lines: a request's fields in both formats, and no per-request lines from the HTTP libraries the
SDKs use."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import openai
import pytest
from grpc._cython import cygrpc  # type: ignore[attr-defined]  # the class grpc.aio raises
from grpc_health.v1 import health_pb2, health_pb2_grpc
from huggingface_hub.utils import logging as hub_logging

from tests.conftest import AccessLines, collect, failed_stream, greedy, load_tiny, serving_doors
from tests.http_door import async_openai_client, openai_messages
from warpcore.server.core.access import log_request
from warpcore.server.core.bounds import MAX_ID_LENGTH
from warpcore.server.core.limits import Limits
from warpcore.server.core.metrics import Metrics
from warpcore.server.logs import REQUEST_FIELDS, TextFormatter, configure_logging
from warpcore.server.rpc.server import ServingOptions
from warpcore.v1 import inference_pb2 as pb
from warpcore.v1 import inference_pb2_grpc

if TYPE_CHECKING:
    from warpcore.server.doors import Doors
    from warpcore.server.rpc.server import WarpcoreServer
    from warpcore.v1.inference_pb2_grpc import InferenceServiceAsyncStub as Stub


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_an_access_line_carries_the_requests_fields(
    log_format: str, restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(log_format)
    log_request(Metrics(Limits()), "grpc", "Generate", "OK", time.monotonic(), model="tiny", prompt_tokens=3, peer="p")
    logging.getLogger("httpx2").info("HTTP Request: POST http://upstream/v1/messages")
    logging.getLogger("httpx2").warning("a library's warning still shows")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    if log_format == "json":
        entry = json.loads(lines[0])
        assert {key: entry[key] for key in ("message", "protocol", "method", "code", "model", "prompt_tokens")} == {
            "message": "request",
            "protocol": "grpc",
            "method": "Generate",
            "code": "OK",
            "model": "tiny",
            "prompt_tokens": 3,
        }
        # RFC 3339 in UTC to the millisecond (a tester's finding: local time, whole seconds, no zone).
        logged = datetime.fromisoformat(entry["time"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry["time"])
        assert abs((datetime.now(UTC) - logged).total_seconds()) < 60
    else:
        assert "INFO warpcore.access: request protocol=grpc method=Generate model=tiny code=OK duration_ms=" in lines[0]
        assert lines[0].endswith(" prompt_tokens=3 peer=p")
    assert "a library's warning still shows" in lines[1]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_logged_traceback_quoting_a_key_has_it_redacted(
    log_format: str, restored_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A vendor SDK's exception quotes what its upstream said, an echoed key included, and a traceback quotes the
    exception whole."""
    configure_logging(log_format)
    try:
        raise RuntimeError("Error code: 429 - rate limited for sk-proj-Qw7ZtLm2RbXc9VhNk4Fs")
    except RuntimeError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    # After a tab or a line break too, which JSON writes as \t and \n: a letter the pattern read as the key's start.
    logging.getLogger("warpcore.access").info("request", extra={"model": "m\tsk-proj-Zx8Yw7Vu6Ts5Rq4P"})
    logging.getLogger("warpcore.server").warning("upstream said:\nsk-proj-Mn3Lk2Jh1Gf0Ds9A")
    logged = capsys.readouterr().err
    assert "RuntimeError: Error code: 429 - rate limited for [redacted]" in logged
    for key in ("Qw7ZtLm2", "Zx8Yw7Vu", "Mn3Lk2Jh"):
        assert key not in logged


def test_the_access_log_fields_are_each_documented() -> None:
    section = (Path(__file__).resolve().parents[1] / "docs" / "deploying.md").read_text().split("## Logs")[1]
    rows = [line for line in section.split("\n## ")[0].splitlines() if line.startswith("| `")]
    documented = [name for row in rows for name in re.findall(r"`(\w+)`", row.split(" | ")[0])]
    assert sorted(documented) == sorted(REQUEST_FIELDS)


def test_a_librarys_own_handler_does_not_write_its_lines_again_unformatted(
    restored_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    # huggingface_hub gives its logger a plain-text handler of its own: during a pull without a network, each of its
    # retry warnings came out twice, once not as JSON. Read at the file descriptor, where that handler writes.
    configure_logging("json")
    said = ("'[Errno -2] Name or service not known' thrown while requesting HEAD https://huggingface.co/x", "Retrying")
    hub_logging.get_logger("huggingface_hub.utils._http").warning(said[0])
    hub_logging.get_logger("huggingface_hub.file_download").warning(said[1])
    lines = capfd.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == list(said)


async def test_each_grpc_calls_line_names_its_model(stub: Stub, access_lines: AccessLines) -> None:
    await load_tiny(stub)
    await collect(stub.Generate(greedy("the world", 2)))
    await stub.CountTokens(pb.CountTokensRequest(request=greedy("the world", 2)))
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CountTokens(pb.CountTokensRequest(request=greedy("the world", 2, model_id="absent")))
    assert [await access_lines.next() for _ in range(4)] == [
        ("LoadModel", "tiny", "OK"),
        ("Generate", "tiny", "OK"),
        ("CountTokens", "tiny", "OK"),
        ("CountTokens", "absent", "NOT_FOUND"),
    ]


async def test_health_checks_are_counted_but_not_logged(
    server: WarpcoreServer, stub: Stub, access_lines: AccessLines
) -> None:
    # An orchestrator probes every few seconds: ~18 lines a minute per Pod said nothing of the calls served.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        await health.Check(health_pb2.HealthCheckRequest())
        watch = health.Watch(health_pb2.HealthCheckRequest())
        await anext(aiter(watch))
        watch.cancel()
        await stub.ListModels(pb.ListModelsRequest())
    assert await access_lines.next() == ("ListModels", "", "OK")
    count = server.engine.metrics.registry.get_sample_value
    assert count("warpcore_requests_total", {"method": "Check", "code": "OK", "protocol": "grpc"}) == 1
    assert not [record for record in access_lines.records if record.__dict__["method"] in ("Check", "Watch")]


async def test_a_call_past_its_deadline_is_logged_deadline_exceeded(stub: Stub, access_lines: AccessLines) -> None:
    """grpc cancels the handler both when the deadline passes and when the client goes: the log tells them apart."""
    await load_tiny(stub)
    assert await access_lines.next() == ("LoadModel", "tiny", "OK")
    late = stub.Generate(greedy("the world", 2000), timeout=0.2)
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        async for _ in late:
            pass
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await access_lines.next() == ("Generate", "tiny", "DEADLINE_EXCEEDED")
    gone = stub.Generate(greedy("the world", 2000))
    await anext(aiter(gone))
    gone.cancel()
    assert await access_lines.next() == ("Generate", "tiny", "CANCELLED")


async def test_a_cancel_a_moment_before_the_servers_deadline_is_the_clients_deadline(
    stub: Stub, access_lines: AccessLines
) -> None:
    """A tester's finding: queued calls whose client's deadline passed were logged CANCELLED. The client's clock
    starts before its request travels, so its deadline passes a little before the server's, and its cancel (all the
    wire tells) reaches the call while the server still counts milliseconds left."""
    await load_tiny(stub)
    assert await access_lines.next() == ("LoadModel", "tiny", "OK")
    holder = stub.Generate(greedy("the world", 2000))
    await anext(aiter(holder))  # the model's one slot is taken: the next call waits for it
    started = time.monotonic()
    queued = stub.Generate(greedy("the world", 2000), timeout=1.0)
    await queued.initial_metadata()
    await asyncio.sleep(0.97 - (time.monotonic() - started))  # the stimulus: a cancel 30 ms before the deadline
    queued.cancel()
    holder.cancel()
    ended = {await access_lines.next(), await access_lines.next()}  # the holder's may come first, OK or CANCELLED
    assert ("Generate", "tiny", "DEADLINE_EXCEEDED") in ended
    early = stub.Generate(greedy("the world", 2000), timeout=10.0)
    await anext(aiter(early))
    early.cancel()  # with nearly all its time left: the client went
    assert await access_lines.next() == ("Generate", "tiny", "CANCELLED")


@pytest.mark.parametrize("forged", ["x\n2026-12-03 10:00:00,000 INFO warpcore.access: request code=OK", "a b=c", ""])
async def test_a_callers_model_id_cannot_forge_a_text_line_or_field(
    stub: Stub, access_lines: AccessLines, forged: str
) -> None:
    # Refused as it is (no token needed to get this far), yet logged with the id the caller sent.
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.CountTokens(pb.CountTokensRequest(request=greedy("the world", 2, model_id=forged)))
    assert (await access_lines.next())[1] == forged
    line = TextFormatter().format(access_lines.records[-1])
    assert line.count("\n") == 0
    assert f" model={json.dumps(forged)} code=" in line


async def test_a_model_loads_without_llama_cpp_warnings(stub: Stub, caplog: pytest.LogCaptureFixture) -> None:
    # A warning on every load would page whoever alerts on them: llama.cpp's about the vocabulary-only model's
    # trained context (0, for it has none) was such noise.
    caplog.set_level("WARNING", logger="llama.cpp")
    await load_tiny(stub)
    assert [record.getMessage() for record in caplog.records if record.name == "llama.cpp"] == []


async def test_a_request_the_http_library_cannot_parse_is_an_access_line_that_quotes_none_of_it(
    doors: Doors, restored_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    # aiohttp refuses a header over 8190 bytes itself, and logged an ERROR whose traceback quoted the header: a
    # client's oversize credential landed in the log.
    configure_logging("json")
    assert doors.http is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", doors.http.port)
    secret = "Bearer " + "s3cret" * 2000
    writer.write(f"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: {secret}\r\n\r\n".encode())
    assert (await reader.readline()).split()[1] == b"431"
    writer.close()
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert [line for line in lines if line["logger"] == "aiohttp.server"] == []
    refused = [line for line in lines if line["logger"] == "warpcore.access"]
    assert [(line["method"], line["code"], line["protocol"]) for line in refused] == [
        ("unreadable", "INVALID_ARGUMENT", "http")
    ]
    assert refused[0]["request_id"].startswith("req_")
    assert refused[0]["model"] == ""  # as the docs' table says (a tester found it missing)
    assert not any("s3cret" in json.dumps(line) for line in lines)


def test_grpc_s_traceback_for_a_status_its_client_cancelled_is_no_error_line(
    restored_logging: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """grpc.aio's own record, as it logs it when a client cancels a call as the server sends its status: seen under
    load as an ERROR with a traceback, for a call the access log already has."""
    configure_logging("json")
    grpc_log = logging.getLogger("grpc._cython.cygrpc")
    try:
        raise cygrpc.ExecuteBatchError('Failed "execute_batch": (SendStatusFromServerOperation,)')
    except cygrpc.ExecuteBatchError:
        grpc_log.exception("ExecuteBatchError raised in core by servicer method [%s]", "/warpcore.v1/Generate")
    try:  # a servicer's own fault, of the kind grpc also raises for metadata that is not UTF-8 (a peer's doing)
        b"\xff".decode()
    except UnicodeDecodeError:
        grpc_log.exception("Unexpected [%s] raised by servicer method [%s]", "UnicodeDecodeError", "/warpcore.v1/Embed")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    assert [(line["level"], line["message"].split(" [")[0]) for line in lines] == [
        ("error", "Unexpected")  # kept, traceback and all: only what a peer caused is quiet
    ]


def test_lines_logged_while_llama_cpp_silences_the_process_s_stderr_are_kept() -> None:
    """llama-cpp-python points descriptor 2 at /dev/null while it reads a model's vocabulary (its own context manager,
    used here), and every line the server logged meanwhile was lost: access lines, the shutdown's."""
    program = (
        "import logging\n"
        "from llama_cpp._utils import suppress_stdout_stderr\n"
        "from warpcore.server.logs import configure_logging\n"
        "configure_logging('json')\n"
        "with suppress_stdout_stderr(disable=False):\n"
        "    logging.getLogger('warpcore.server').info('logged while silenced')\n"
    )
    ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert [json.loads(line)["message"] for line in ran.stderr.splitlines()] == ["logged while silenced"]


async def test_a_model_id_refused_for_its_length_is_logged_cut_short(
    server_env: dict[str, str], access_lines: AccessLines
) -> None:
    # A 3,000,000-character id made a 3 MB line on either door, over gRPC even from a caller without the token.
    huge = "Q" * 3_000_000
    async with serving_doors(server_env, ServingOptions(token="log-token-0123456789")) as doors:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{doors.grpc.port}") as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            _, refused = await failed_stream(stub.Generate(greedy("x", 2, model_id=huge)))
        assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
        async with async_openai_client(doors, "log-token-0123456789") as client:
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(model=huge, messages=openai_messages())
        lines = [await access_lines.next() for _ in range(2)]
    cut = f"{'Q' * MAX_ID_LENGTH}... (3000000 characters)"
    assert [(method, model) for method, model, _ in lines] == [("Generate", cut), ("/v1/chat/completions", cut)]
