"""The HTTP door with the official openai and anthropic SDKs, as a server serves them: a disconnect mid-stream, the
process draining on SIGTERM, health, Anthropic's model list paged, and a model found and named by its one id whatever
its spelling."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest

from tests.conftest import TINY_MODEL, serving_doors
from tests.http_door import anthropic_messages, async_anthropic_client, async_openai_client, base_url, openai_messages
from tests.http_door_support import OPENAI_MESSAGES
from tests.server_process import log_lines_until, serving_tiny
from warpcore.server.core.domain import BackendKind, LoadSpec
from warpcore.server.doors import Doors
from warpcore.server.rpc.server import ServingOptions


async def test_a_disconnect_mid_stream_frees_the_model(server_env: dict[str, str]) -> None:
    async with serving_doors(server_env) as doors:
        await doors.engine.load(LoadSpec("tiny", BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
        body = {"model": "tiny", "messages": OPENAI_MESSAGES, "max_tokens": 4000, "stream": True}
        url = f"{base_url(doors)}/v1/chat/completions"
        async with httpx2.AsyncClient() as client, client.stream("POST", url, json=body) as response:
            first = await anext(aiter(response.aiter_lines()))
        assert json.loads(first.removeprefix("data: "))["object"] == "chat.completion.chunk"
        # The handler was cancelled with its connection, and its generation with it: nothing stays in flight.
        await asyncio.wait_for(doors.engine.streams._idle.wait(), 5)
        assert doors.engine.metrics.active_streams._value.get() == 0


def http_port_of(started: list[dict[str, object]]) -> int:
    """The HTTP door's port, from the server's "serving on" line."""
    return int(str(started[-1]["message"]).split("HTTP (OpenAI, Anthropic) on 127.0.0.1:")[1].split(";")[0])


async def test_the_server_process_serves_http_and_drains_it_on_sigterm(models_path: Path, tmp_path: Path) -> None:
    async with serving_tiny(models_path, tmp_path, "--grace", "1", "--http-port", "0") as (process, started, _):
        http_port = http_port_of(started)
        body = {"model": "tiny", "messages": OPENAI_MESSAGES, "max_tokens": 32000, "stream": True}
        body["stream_options"] = {"include_usage": True}
        url = f"http://127.0.0.1:{http_port}/v1/chat/completions"
        async with httpx2.AsyncClient() as client:  # the startup models are in: the door says so
            assert (await client.get(f"http://127.0.0.1:{http_port}/health")).json() == {"status": "ok"}
        async with httpx2.AsyncClient(timeout=30) as client, client.stream("POST", url, json=body) as response:
            lines = aiter(response.aiter_lines())
            assert (await anext(lines)).startswith("data: ")
            process.send_signal(signal.SIGTERM)
            events = [json.loads(line.removeprefix("data: ")) async for line in lines if line.startswith("data: ")]
        # The generation outlived the grace: its stream ends with an error event saying why, after its usage.
        assert events[-1]["error"]["code"] == "shutting_down"
        assert (events[-2]["choices"], events[-2]["usage"]["completion_tokens"] > 0) == ([], True)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        assert process.stderr is not None
        logs = [json.loads(line) for line in (await process.stderr.read()).splitlines()]
        http_lines = [(line["method"], line["code"], line["model"]) for line in logs if line.get("protocol") == "http"]
        assert http_lines == [("/v1/chat/completions", "UNAVAILABLE", "tiny")]  # the health check is not logged


@pytest.mark.parametrize("rest_sent", [True, False], ids=["body-completed-in-the-grace", "body-never-completed"])
async def test_a_request_still_uploading_its_body_at_sigterm_is_answered(
    models_path: Path, tmp_path: Path, rest_sent: bool
) -> None:
    """In flight from its admission: the rest of its body, arriving during the drain, is read and the request
    answered (503: no new generation starts); a body that never completes is answered 503 when the grace ends. The
    door's closing dropped the rest unread, and cut the connection without an answer."""
    async with serving_tiny(models_path, tmp_path, "--grace", "1", "--http-port", "0") as (process, started, _):
        http_port = http_port_of(started)
        body = json.dumps({"model": "tiny", "messages": OPENAI_MESSAGES, "max_tokens": 4}).encode()
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", http_port)
        writer.write(f"{head}Expect: 100-continue\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")  # admitted: its body is read
        writer.write(body[:4])
        await writer.drain()
        process.send_signal(signal.SIGTERM)
        await log_lines_until(process, "shutting down")
        if rest_sent:
            writer.write(body[4:])
        status = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status.startswith(b"HTTP/1.1 503"), status
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def test_health_is_open_and_says_starting_serving_or_shutting_down(
    server_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="warpcore.access")
    token = "door-token-0123456789"
    async with serving_doors(server_env, ServingOptions(token=token)) as doors, httpx2.AsyncClient() as client:
        url = f"{base_url(doors)}/health"
        serving = await client.get(url)  # no token: probes and load balancers send none
        await doors.set_serving(False)
        starting = await client.get(url)
        await doors.set_serving(True)
        assert doors.http is not None
        doors.http.refuse_new()
        draining = await client.get(url)
        refused = await client.get(f"{base_url(doors)}/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert (serving.status_code, serving.json()) == (200, {"status": "ok"})
    assert (starting.status_code, starting.json()) == (503, {"status": "starting"})
    assert (draining.status_code, draining.json()) == (503, {"status": "shutting down"})
    assert refused.status_code == 503
    # Probes are counted (a 503 is no success there either) but not access-logged: they come every few seconds.
    assert not [record for record in caplog.records if getattr(record, "method", "") == "/health"]
    count = doors.engine.metrics.registry.get_sample_value
    for code, calls in (("OK", 1), ("UNAVAILABLE", 2)):
        assert count("warpcore_requests_total", {"method": "/health", "code": code, "protocol": "http"}) == calls


async def test_the_anthropic_model_list_pages_as_its_sdk_asks(doors: Doors) -> None:
    """`limit`, `after_id` and `before_id` page the list, and the SDK's own auto-paging walks it whole."""
    names = [f"m{n}" for n in range(5)]
    for name in names:
        await doors.engine.load(LoadSpec(name, BackendKind.LLAMA_CPP, TINY_MODEL, None, 64))
    async with async_anthropic_client(doors) as client:
        first = await client.models.list(limit=2)
        after = await client.models.list(limit=2, after_id="m1")
        before = await client.models.list(limit=2, before_id="m3")
        walked = [model.id async for model in await client.models.list(limit=2)]
        with pytest.raises(anthropic.BadRequestError):
            await client.models.list(limit=0)
        with pytest.raises(anthropic.BadRequestError):
            await client.models.list(after_id="nope")
        with pytest.raises(anthropic.BadRequestError, match="give after_id or before_id, not both"):
            await client.models.list(after_id="m0", before_id="m4")  # after_id was left out in silence
    assert ([model.id for model in first.data], first.has_more, first.last_id) == (["m0", "m1"], True, "m1")
    assert ([model.id for model in after.data], after.has_more) == (["m2", "m3"], True)
    assert ([model.id for model in before.data], before.has_more, before.first_id) == (["m1", "m2"], True, "m1")
    assert walked == names
    # Every member the SDK's type requires, by its strict reading of the raw JSON (a tester's finding: no lifecycle).
    async with httpx2.AsyncClient(base_url=base_url(doors), headers={"anthropic-version": "2023-06-01"}) as raw:
        listed = (await raw.get("/v1/models")).json()["data"]
    for entry in listed:
        anthropic.types.ModelInfo.model_validate_json(json.dumps(entry), strict=True)


async def test_a_model_is_found_by_any_spelling_of_its_file_slashes_and_all(doors: Doors) -> None:
    await doors.engine.load(LoadSpec(TINY_MODEL, BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    async with async_openai_client(doors) as client:
        for spelling in (TINY_MODEL, "hf/warpcore/tiny/tiny.gguf", "./hf/warpcore/tiny/tiny.gguf"):
            assert (await client.models.retrieve(spelling)).id == TINY_MODEL, spelling
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("hf/warpcore/tiny/other.gguf")


async def test_an_answer_names_the_model_by_its_one_id_whatever_spelling_called_it(doors: Doors) -> None:
    await doors.engine.load(LoadSpec(TINY_MODEL, BackendKind.LLAMA_CPP, TINY_MODEL, None, None))
    spelling = "./hf/warpcore/tiny//tiny.gguf"
    async with async_openai_client(doors) as client:
        completion = await client.chat.completions.create(model=spelling, messages=openai_messages(), max_tokens=2)
        chunks = await client.chat.completions.create(
            model=spelling, messages=openai_messages(), max_tokens=2, stream=True
        )
        streamed = {chunk.model async for chunk in chunks}
        response = await client.responses.create(model=spelling, input="Say hello", max_output_tokens=16)
    async with async_anthropic_client(doors) as anthropic_sdk:
        message = await anthropic_sdk.messages.create(model=spelling, messages=anthropic_messages(), max_tokens=2)
    assert (completion.model, streamed, response.model, message.model) == (
        TINY_MODEL,
        {TINY_MODEL},
        TINY_MODEL,
        TINY_MODEL,
    )
